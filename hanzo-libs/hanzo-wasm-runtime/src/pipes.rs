//! The guest's stdout and stderr: in memory, and bounded.
//!
//! A guest controls how much it writes, so neither stream may grow without bound in
//! the node: stdout (a WASI command's output) stops the guest with an output-limit
//! error once it passes the cap; the log stream keeps its first bytes and drops the
//! rest, because logs are for people and must never fail a job.

use bytes::Bytes;
use hanzo_compute::stdio::{LogBuffer, LogSink};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Raised inside the guest when it writes past the output cap.
#[derive(Debug, thiserror::Error)]
#[error("the tool wrote more than {cap} bytes of output")]
pub(crate) struct OutputLimitHit {
    pub(crate) cap: usize,
}

/// What happens when a write would pass the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Trap the guest with [`OutputLimitHit`].
    Trap,
    /// Keep what fits, count the rest as dropped.
    Truncate,
}

/// A bounded in-memory stream shared by clones.
#[derive(Debug, Clone)]
pub(crate) struct BoundedPipe {
    cap: usize,
    overflow: Overflow,
    buf: Arc<Mutex<LogBuffer>>,
}

impl BoundedPipe {
    pub(crate) fn new(cap: usize, overflow: Overflow) -> Self {
        BoundedPipe {
            cap,
            overflow,
            buf: Arc::new(Mutex::new(LogBuffer::new(cap))),
        }
    }

    /// Also hands every kept chunk to `sink` as the guest writes it (the job's live
    /// logs).
    pub(crate) fn with_sink(self, sink: LogSink) -> Self {
        {
            let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
            *b = std::mem::take(&mut *b).with_sink(sink);
        }
        self
    }

    /// Appends `bytes`, or reports that the cap was passed (in `Trap` mode).
    fn push(&self, bytes: &[u8]) -> Result<usize, OutputLimitHit> {
        let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        if self.overflow == Overflow::Trap && bytes.len() > b.room() {
            return Err(OutputLimitHit { cap: self.cap });
        }
        b.push(bytes);
        Ok(bytes.len())
    }

    /// Everything written, with a note when bytes were dropped.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).finish()
    }
}

impl IsTerminal for BoundedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for BoundedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes)
            .map(|_| ())
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always grant a full chunk: the cap is checked in `write`, where passing it
        // traps the guest instead of silently telling it to retry forever.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for BoundedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.push(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::StorageFull, e)),
        )
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_mode_refuses_past_the_cap() {
        let p = BoundedPipe::new(4, Overflow::Trap);
        assert!(p.push(b"abc").is_ok());
        assert!(p.push(b"de").is_err());
        assert_eq!(p.take(), b"abc");
    }

    #[test]
    fn truncate_mode_keeps_the_start_and_says_so() {
        let p = BoundedPipe::new(4, Overflow::Truncate);
        p.push(b"abcdef").unwrap();
        let out = String::from_utf8(p.take()).unwrap();
        assert!(out.starts_with("abcd\n[hanzo-node: 2 more bytes"), "{out}");
    }
}
