//! CBOR on the wire, with a request that does not decode delivered as such rather
//! than dropped.
//!
//! libp2p's stock CBOR codec fails the stream when a request does not decode or is
//! over its size, and the request-response behaviour then forgets it without telling
//! anyone: the sender of garbage pays nothing. Here a request is read to at most its
//! cap plus one byte, and anything that is not a well-formed request of the protocol
//! becomes [`Decoded::Malformed`]: the node answers it with a refusal and lowers the
//! sender's reputation. Responses stay strict: a reply this node cannot read fails
//! the request (`InvalidData`), which the submitter treats as a failed attempt.

use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::{Serialize, de::DeserializeOwned};
use std::io;
use std::marker::PhantomData;

/// A request as read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// A well-formed request.
    Ok(T),
    /// Not a request of the protocol, or over the size cap; why.
    Malformed(String),
}

/// The codec of `/hanzo/modules/1`.
pub struct Cbor<Req, Resp> {
    max_request: u64,
    max_response: u64,
    phantom: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Cbor<Req, Resp> {
    /// Requests of at most `max_request` bytes, responses of at most `max_response`.
    pub fn new(max_request: u64, max_response: u64) -> Self {
        Cbor {
            max_request,
            max_response,
            phantom: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for Cbor<Req, Resp> {
    fn clone(&self) -> Self {
        Cbor::new(self.max_request, self.max_response)
    }
}

/// Reads at most `max + 1` bytes; `None` when there were more than `max`.
async fn read_capped<T: AsyncRead + Unpin + Send>(io: &mut T, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    io.take(max + 1).read_to_end(&mut buf).await?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

impl<Req, Resp> libp2p::request_response::Codec for Cbor<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Send + Serialize + DeserializeOwned,
{
    type Protocol = StreamProtocol;
    type Request = Decoded<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Decoded<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let Some(buf) = read_capped(io, self.max_request).await? else {
            return Ok(Decoded::Malformed(format!(
                "a request over {} bytes",
                self.max_request
            )));
        };
        Ok(match cbor4ii::serde::from_slice(&buf) {
            Ok(r) => Decoded::Ok(r),
            Err(e) => Decoded::Malformed(format!("a request that does not decode: {e}")),
        })
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let Some(buf) = read_capped(io, self.max_response).await? else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a reply over {} bytes", self.max_response),
            ));
        };
        cbor4ii::serde::from_slice(&buf).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a reply that does not decode: {e}"),
            )
        })
    }

    async fn write_request<T>(&mut self, _: &Self::Protocol, io: &mut T, req: Decoded<Req>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let Decoded::Ok(req) = req else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a malformed request is never sent",
            ));
        };
        let data = cbor4ii::serde::to_vec(Vec::new(), &req).map_err(io::Error::other)?;
        io.write_all(&data).await
    }

    async fn write_response<T>(&mut self, _: &Self::Protocol, io: &mut T, resp: Resp) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let data = cbor4ii::serde::to_vec(Vec::new(), &resp).map_err(io::Error::other)?;
        io.write_all(&data).await
    }
}
