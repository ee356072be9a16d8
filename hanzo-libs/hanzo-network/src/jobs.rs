//! `/hanzo/jobs/3`: job requests on one long-lived stream per peer.
//!
//! A submitter opens one stream to each executor it uses and sends every job request
//! to it on that stream; the executor answers each on the same stream, in any order.
//! Each message (a request or an answer) goes in one or more frames:
//!
//! ```text
//! u32 (big-endian): top bit set when more frames of this message follow; the rest,
//!                   the length of what follows (8 + the chunk)
//! u64 (big-endian): the request id, chosen by the submitter, echoed in the answer
//! chunk:            the next bytes of the message: a JobRequest (submitter to
//!                   executor) or a JobResponse (back), CBOR
//! ```
//!
//! This node writes messages over 64 KiB in chunks, at most 4 messages taking turns,
//! so that a large answer (up to 24 MiB) does not hold up the small ones behind it; a
//! reader reassembles at most 4 messages begun at once.
//!
//! Why not libp2p's request-response: it opens a yamux stream per request, negotiates
//! the protocol on it, and passes each request and answer through the swarm's task
//! and the connection handler. Measured on this machine (two processes, noise +
//! yamux on loopback, 600 B requests, 1.5 KB answers), a request cost its sender 58
//! µs of CPU with 4 in flight and 39 with 32; on one held stream it cost 13 and 8,
//! and the round trip was 300 µs against 90. Here requests and answers go between
//! the caller's task and the stream's, never through the event loop.
//!
//! What a peer can make this node do here is bounded as before:
//! - a message is read only up to its cap (a request 2 MiB, an answer 24 MiB), each
//!   frame's length checked before its bytes are read; a request over it is refused
//!   and the stream closed, an answer over it fails the link's pending requests; at
//!   most 4 messages are being reassembled per stream;
//! - a request that does not decode is refused and costs its sender reputation;
//! - requests take a token from the peer's bucket (`max_requests_per_peer_per_sec`);
//! - a stream holds at most [`IN_FLIGHT`] requests being answered ("busy" past it),
//!   a peer at most [`STREAMS_PER_PEER`] streams, and the node's queue of requests
//!   ([`crate::Inbound`]) is bounded ("busy" when full);
//! - a frame that starts must arrive, and a message must be taken by the peer, within
//!   [`REQUEST_TIMEOUT`] (of being queued), or the stream is closed: a peer that
//!   trickles or stops reading holds a stream's buffers for that long, no longer.

use crate::NetworkError;
use crate::behaviour::REQUEST_TIMEOUT;
use crate::client::{Inbound, Metrics};
use crate::event_loop::Command;
use crate::peers::Conduct;
use crate::protocol::{JobRequest, JobResponse, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// The job protocol's name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new(crate::protocol::JOBS_PROTOCOL);

/// Requests one inbound stream has being answered at once; past it a request is
/// refused "busy". An `Await` is held up to a heartbeat, so a submitter following many
/// jobs on one peer needs a slot for each.
pub(crate) const IN_FLIGHT: usize = 64;
/// Of those, what this node keeps in flight to one peer (the rest wait their turn).
pub(crate) const IN_FLIGHT_OUT: usize = 48;
/// Requests waiting for a slot to one peer; past it a request fails at once.
const MAX_WAITING: usize = 4096;
/// Inbound streams one peer may hold open at once (one is what a node uses; a
/// reconnection overlaps the old one briefly).
pub(crate) const STREAMS_PER_PEER: usize = 4;
/// The frame header: the length (and the "more" flag), then the request id.
const HEADER: usize = 12;
/// The length word's top bit: more chunks of this message follow.
const MORE: u32 = 1 << 31;
/// The most bytes of one message a frame carries when this node writes it: a large
/// answer goes out in chunks, interleaved with the others, so it does not hold them up.
const CHUNK: usize = 64 * 1024;
/// Messages interleaved at once on a stream (written, or being reassembled); a peer
/// that starts more than this many before ending one has broken the framing.
const INTERLEAVED: usize = 4;
/// A link with no request in flight this long is closed.
const LINK_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a frame's header: `None` at a clean end of the stream (between frames), else
/// the id, the chunk's length and whether more chunks follow. Waiting for a frame has
/// no limit; once its first byte came, the rest of the header must follow within
/// [`REQUEST_TIMEOUT`].
async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u64, u64, bool)>> {
    let mut h = [0u8; HEADER];
    let mut got = 0;
    let mut deadline = None;
    while got < HEADER {
        let read = r.read(&mut h[got..]);
        let n = match deadline {
            None => read.await?,
            Some(d) => tokio::time::timeout_at(d, read)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??,
        };
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + REQUEST_TIMEOUT);
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let len = u64::from(word & !MORE);
    let id = u64::from_be_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
    if len < 8 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of length {len}, shorter than its id"),
        ));
    }
    Ok(Some((id, len - 8, word & MORE != 0)))
}

/// Why a stream's messages could not be read.
enum ReadError {
    /// The stream failed or ended mid-frame.
    Io(std::io::Error),
    /// A frame's rest did not arrive within [`REQUEST_TIMEOUT`].
    Slow,
    /// This message would be over the cap: its id.
    TooLarge(u64),
    /// More messages begun than [`INTERLEAVED`].
    TooMany,
}

/// Messages reassembled from the chunks of a stream, each at most `max` bytes, at most
/// [`INTERLEAVED`] begun at once (so at most that many times `max` held per stream).
struct Assembler {
    max: u64,
    partial: HashMap<u64, Vec<u8>>,
}

impl Assembler {
    fn new(max: u64) -> Self {
        Assembler {
            max,
            partial: HashMap::new(),
        }
    }

    /// The next whole message, its id and bytes; `None` at a clean end of the stream.
    /// A chunk's size is checked against the cap before it is read, and the buffer
    /// grows as bytes arrive (a header alone does not make this node allocate).
    async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Option<(u64, Vec<u8>)>, ReadError> {
        loop {
            let Some((id, len, more)) = read_header(r).await.map_err(ReadError::Io)? else {
                return Ok(None);
            };
            let have = self.partial.get(&id).map_or(0, |p| p.len() as u64);
            if have + len > self.max {
                return Err(ReadError::TooLarge(id));
            }
            if more && !self.partial.contains_key(&id) && self.partial.len() >= INTERLEAVED {
                return Err(ReadError::TooMany);
            }
            // Read into a buffer of the chunk's own: futures' `read_to_end` zeroes all of
            // a buffer's spare room each call, which on a message's growing buffer made
            // reading one of 20 MiB take seconds.
            let mut chunk = Vec::with_capacity(len.min(CHUNK as u64) as usize);
            tokio::time::timeout(REQUEST_TIMEOUT, r.take(len).read_to_end(&mut chunk))
                .await
                .map_err(|_| ReadError::Slow)?
                .map_err(ReadError::Io)?;
            if (chunk.len() as u64) < len {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let buf = match self.partial.remove(&id) {
                Some(mut buf) => {
                    buf.extend_from_slice(&chunk);
                    buf
                }
                None => chunk,
            };
            if !more {
                return Ok(Some((id, buf)));
            }
            self.partial.insert(id, buf);
        }
    }
}

/// A message waiting to be written: when it was queued, its id, its bytes.
type Queued = (Instant, u64, Vec<u8>);

/// Writes the messages from `queue` until it closes, each in chunks of at most
/// [`CHUNK`] bytes, up to [`INTERLEAVED`] messages taking turns, so a large one does not
/// hold up the small ones queued behind it. A flush goes out when no more is ready
/// (messages ready together go out together). Each message must be taken by the peer
/// within [`REQUEST_TIMEOUT`] of being queued: a peer that reads slowly enough to hold
/// one back longer ends the stream. Only [`INTERLEAVED`] messages are taken from the
/// queue at a time, so a slow peer pushes back on whoever queues for it.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut w: W,
    mut queue: mpsc::Receiver<Queued>,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    let mut turns: std::collections::VecDeque<(Instant, u64, Vec<u8>, usize)> = Default::default();
    loop {
        if turns.is_empty() {
            match queue.recv().await {
                Some((at, id, body)) => turns.push_back((at, id, body, 0)),
                None => break,
            }
        }
        while turns.len() < INTERLEAVED {
            match queue.try_recv() {
                Ok((at, id, body)) => turns.push_back((at, id, body, 0)),
                Err(_) => break,
            }
        }
        let Some((at, id, body, from)) = turns.pop_front() else {
            continue;
        };
        let deadline = tokio::time::Instant::from_std(at + REQUEST_TIMEOUT);
        let to = (from + CHUNK).min(body.len());
        let more = to < body.len();
        let mut word = (8 + to - from) as u32;
        if more {
            word |= MORE;
        }
        let mut frame = Vec::with_capacity(HEADER + to - from);
        frame.extend_from_slice(&word.to_be_bytes());
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&body[from..to]);
        tokio::time::timeout_at(deadline, w.write_all(&frame))
            .await
            .map_err(|_| timed_out())??;
        if more {
            turns.push_back((at, id, body, to));
        }
        if queue.is_empty() {
            tokio::time::timeout_at(deadline, w.flush())
                .await
                .map_err(|_| timed_out())??;
        }
    }
    let _ = w.close().await;
    Ok(())
}

/// A per-peer token bucket: `rate` requests a second, bursts of `rate`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the job streams and the event loop share: counters, rate buckets, and when
/// each peer last made or answered a request.
pub(crate) struct Shared {
    rate: f64,
    buckets: Mutex<HashMap<PeerId, Bucket>>,
    used: Mutex<HashMap<PeerId, Instant>>,
    requests_in: AtomicU64,
    requests_refused: AtomicU64,
    malformed_requests: AtomicU64,
    inbound_failures: AtomicU64,
    requests_out: AtomicU64,
    outbound_failures: AtomicU64,
    payload_bytes_in: AtomicU64,
    payload_bytes_out: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Shared {
    pub(crate) fn new(max_requests_per_peer_per_sec: u32) -> Self {
        Shared {
            rate: f64::from(max_requests_per_peer_per_sec),
            buckets: Mutex::default(),
            used: Mutex::default(),
            requests_in: AtomicU64::new(0),
            requests_refused: AtomicU64::new(0),
            malformed_requests: AtomicU64::new(0),
            inbound_failures: AtomicU64::new(0),
            requests_out: AtomicU64::new(0),
            outbound_failures: AtomicU64::new(0),
            payload_bytes_in: AtomicU64::new(0),
            payload_bytes_out: AtomicU64::new(0),
        }
    }

    /// Takes a token from the peer's bucket (shared by every protocol); false when it
    /// is empty.
    pub(crate) fn admit(&self, peer: PeerId) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(peer).or_insert(Bucket {
            tokens: self.rate,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops a gone peer's bucket.
    pub(crate) fn forget(&self, peer: &PeerId) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(peer);
    }

    fn used(&self, peer: PeerId) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Instant::now());
    }

    /// The peers that made or answered a job request since the last call, and when.
    pub(crate) fn take_used(&self) -> HashMap<PeerId, Instant> {
        std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds the job streams' counters to the event loop's.
    pub(crate) fn add_to(&self, m: &mut Metrics) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        m.requests_in += get(&self.requests_in);
        m.requests_refused += get(&self.requests_refused);
        m.malformed_requests += get(&self.malformed_requests);
        m.inbound_failures += get(&self.inbound_failures);
        m.requests_out += get(&self.requests_out);
        m.outbound_failures += get(&self.outbound_failures);
        m.payload_bytes_in += get(&self.payload_bytes_in);
        m.payload_bytes_out += get(&self.payload_bytes_out);
    }
}

/// Payload bytes an offer carries (its spec), for the metrics.
fn request_payload(r: &JobRequest) -> u64 {
    match r {
        JobRequest::Offer(o) => o.spec.len() as u64,
        _ => 0,
    }
}

/// Payload bytes a result carries, for the metrics.
pub(crate) fn response_payload(r: &JobResponse) -> u64 {
    match r {
        // A short job's result comes with its acceptance: counted as any result.
        JobResponse::Finished(f) | JobResponse::Accepted { result: Some(f), .. } => {
            (f.output.as_ref().map_or(0, String::len)
                + f.logs.len()
                + f.receipt.as_ref().map_or(0, String::len)) as u64
        }
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------
// The submitter's side: one link per peer.

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<JobResponse, NetworkError>>>>;

/// What a link's caller and its stream task share: the requests waiting for answers,
/// the next request id, and whether the stream is gone.
#[derive(Default)]
struct LinkState {
    pending: Pending,
    next_id: AtomicU64,
    dead: AtomicBool,
}

/// One stream to a peer, with the requests waiting for their answers on it.
struct Link {
    frames: mpsc::Sender<Queued>,
    state: Arc<LinkState>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// The links of this node to its peers, shared by every [`crate::Client`] clone.
pub(crate) struct Links {
    opener: crate::streams::Opener,
    commands: mpsc::WeakSender<Command>,
    shared: Arc<Shared>,
    links: Mutex<HashMap<PeerId, Arc<tokio::sync::OnceCell<Arc<Link>>>>>,
}

impl Links {
    pub(crate) fn new(
        opener: crate::streams::Opener,
        commands: mpsc::WeakSender<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        Links {
            opener,
            commands,
            shared,
            links: Mutex::default(),
        }
    }

    /// The counters and buckets the links share with the event loop.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Whether any request to `peer` is waiting for its answer (its connection is not
    /// idle).
    pub(crate) fn busy(&self, peer: &PeerId) -> bool {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.get(peer).and_then(|cell| cell.get()).is_some_and(|l| {
            !l.state.dead.load(Ordering::Relaxed)
                && !l
                    .state
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty()
        })
    }

    /// Sends a job request to `peer` and waits for the answer, opening the stream (and
    /// dialling the peer at the addresses it advertised) when there is none.
    pub(crate) async fn call(&self, peer: PeerId, request: JobRequest) -> Result<JobResponse, NetworkError> {
        let r = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let link = self.link(peer).await?;
            link.call(peer, &self.shared, request).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(NetworkError::Timeout {
                peer: peer.to_string(),
            })
        });
        if r.is_err() {
            add(&self.shared.outbound_failures, 1);
        }
        r
    }

    async fn link(&self, peer: PeerId) -> Result<Arc<Link>, NetworkError> {
        loop {
            let cell = {
                let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
                links.entry(peer).or_default().clone()
            };
            let opened = cell.get_or_try_init(|| self.open(peer)).await;
            match opened {
                Ok(link) if !link.state.dead.load(Ordering::Relaxed) => return Ok(link.clone()),
                // A link that died: forget it (unless another caller already did) and
                // open another.
                Ok(_) => self.forget(peer, &cell),
                // The cell stays, empty: callers waiting on it try again on the same
                // cell, one at a time, rather than each opening a stream of its own.
                Err(e) => return Err(e),
            }
        }
    }

    fn forget(&self, peer: PeerId, cell: &Arc<tokio::sync::OnceCell<Arc<Link>>>) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if links.get(&peer).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            links.remove(&peer);
        }
    }

    async fn open(&self, peer: PeerId) -> Result<Arc<Link>, NetworkError> {
        // The event loop dials the addresses the peer advertised when it is not
        // connected (the stream behaviour alone would dial by peer id, without them).
        let (reply, dialled) = oneshot::channel();
        self.commands
            .upgrade()
            .ok_or(NetworkError::Stopped)?
            .send(Command::Connect { peer, reply })
            .await
            .map_err(|_| NetworkError::Stopped)?;
        dialled.await.map_err(|_| NetworkError::Stopped)??;
        let stream = self.opener.open(peer).await.map_err(|e| unreachable(&peer, &e))?;
        let (reader, writer) = stream.split();
        let (frames, outgoing) = mpsc::channel(IN_FLIGHT_OUT);
        let state = Arc::new(LinkState::default());
        tokio::spawn(follow_link(
            peer,
            reader,
            writer,
            outgoing,
            state.clone(),
            self.shared.clone(),
        ));
        Ok(Arc::new(Link {
            frames,
            state,
            slots: Arc::new(Semaphore::new(IN_FLIGHT_OUT)),
            waiting: AtomicUsize::new(0),
        }))
    }
}

impl Link {
    async fn call(
        &self,
        peer: PeerId,
        shared: &Shared,
        request: JobRequest,
    ) -> Result<JobResponse, NetworkError> {
        let permit = {
            // Counted while waiting for a slot, whatever ends the wait (a caller that
            // gives up is dropped here).
            let Some(_waiting) = Waiting::enter(&self.waiting) else {
                return Err(unreachable(
                    &peer,
                    &format!("{MAX_WAITING} requests are already waiting for it"),
                ));
            };
            self.slots.acquire().await
        };
        let _permit = permit.map_err(|_| NetworkError::Stopped)?;
        let body = cbor4ii::serde::to_vec(Vec::new(), &request).map_err(|e| NetworkError::Invalid {
            what: "job request".into(),
            value: String::new(),
            why: format!("cannot encode it: {e}"),
        })?;
        let id = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.state
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        // Whatever ends this call (an answer, the link's death, the caller's timeout),
        // the entry goes.
        let _entry = Entry {
            pending: &self.state.pending,
            id,
        };
        if self.state.dead.load(Ordering::Relaxed)
            || self.frames.send((Instant::now(), id, body)).await.is_err()
        {
            return Err(unreachable(&peer, &"the connection closed"));
        }
        add(&shared.requests_out, 1);
        add(&shared.payload_bytes_out, request_payload(&request));
        shared.used(peer);
        rx.await
            .unwrap_or_else(|_| Err(unreachable(&peer, &"the connection closed")))
    }
}

/// A caller waiting for a slot on a link, counted until it has one or gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_WAITING).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Removes a request's entry from its link's pending map when the call ends.
struct Entry<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Runs one link: writes its requests, reads the answers and hands each to its
/// caller. When either side fails, every pending caller gets the error and the link
/// is dead (the next request opens another).
async fn follow_link(
    peer: PeerId,
    mut reader: futures::io::ReadHalf<Stream>,
    writer: futures::io::WriteHalf<Stream>,
    outgoing: mpsc::Receiver<Queued>,
    state: Arc<LinkState>,
    shared: Arc<Shared>,
) {
    let LinkState {
        pending,
        next_id,
        dead,
    } = &*state;
    let read = read_answers(peer, &mut reader, pending, next_id, &shared);
    let write = async {
        write_frames(writer, outgoing)
            .await
            .map_err(|e| unreachable(&peer, &e))?;
        Err::<(), _>(unreachable(&peer, &"the link closed"))
    };
    // A link with nothing in flight for LINK_IDLE closes (its stream would keep the
    // connection open for good); the next request opens another.
    let idle = async {
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(LINK_IDLE / 4).await;
            if !pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= LINK_IDLE {
                return;
            }
        }
    };
    let why: NetworkError = tokio::select! {
        e = read => e,
        r = write => match r { Err(e) => e, Ok(()) => unreachable(&peer, &"the link closed") },
        () = idle => unreachable(&peer, &"the link was idle"),
    };
    dead.store(true, Ordering::Relaxed);
    tracing::debug!(%peer, error = %why, "job stream to a peer ended");
    let waiting: Vec<_> = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, tx)| tx)
        .collect();
    for tx in waiting {
        let _ = tx.send(Err(why.clone()));
    }
}

/// Reads a link's answers and hands each to its caller, until the stream fails: why.
async fn read_answers(
    peer: PeerId,
    reader: &mut futures::io::ReadHalf<Stream>,
    pending: &Pending,
    next_id: &AtomicU64,
    shared: &Shared,
) -> NetworkError {
    let mut messages = Assembler::new(MAX_RESPONSE_BYTES);
    loop {
        let (id, body) = match messages.next(reader).await {
            Ok(Some(m)) => m,
            Ok(None) => return unreachable(&peer, &"the peer closed the stream"),
            Err(ReadError::Io(e)) => return unreachable(&peer, &e),
            Err(ReadError::Slow) => {
                return NetworkError::Timeout {
                    peer: peer.to_string(),
                };
            }
            Err(ReadError::TooLarge(_)) => {
                return NetworkError::Malformed {
                    peer: peer.to_string(),
                    why: format!("a reply over {MAX_RESPONSE_BYTES} bytes"),
                };
            }
            Err(ReadError::TooMany) => {
                return NetworkError::Malformed {
                    peer: peer.to_string(),
                    why: format!("more than {INTERLEAVED} replies begun at once"),
                };
            }
        };
        let response: JobResponse = match cbor4ii::serde::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return NetworkError::Malformed {
                    peer: peer.to_string(),
                    why: format!("a reply that does not decode: {e}"),
                };
            }
        };
        // An id never sent is a lie (or lost framing): the link goes. An answer to a
        // request whose caller gave up is dropped.
        if id >= next_id.load(Ordering::Relaxed) {
            return NetworkError::Malformed {
                peer: peer.to_string(),
                why: format!("an answer to request {id}, never sent"),
            };
        }
        add(&shared.payload_bytes_in, response_payload(&response));
        let waiting = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        if let Some(tx) = waiting {
            shared.used(peer);
            let _ = tx.send(Ok(response));
        }
    }
}

fn unreachable(peer: &PeerId, why: &dyn std::fmt::Display) -> NetworkError {
    NetworkError::Unreachable {
        peer: peer.to_string(),
        why: why.to_string(),
    }
}

// ---------------------------------------------------------------------------------
// The executor's side: streams from peers.

/// Where the answer to a peer's job request goes ([`crate::Client::respond_job`]).
/// Dropped unanswered, it answers `Refused` (the peer's request fails at once rather
/// than at its timeout).
#[derive(Debug)]
pub struct JobReply {
    id: u64,
    answers: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    answered: bool,
    /// The request's slot on its stream, freed with the answer.
    _slot: OwnedSemaphorePermit,
}

impl JobReply {
    /// Sends the answer (it fails only when the peer's stream is gone, and then the
    /// peer's request has failed on its side).
    pub(crate) async fn send(mut self, response: JobResponse) {
        let body = match cbor4ii::serde::to_vec(Vec::new(), &response) {
            Ok(b) if b.len() as u64 <= MAX_RESPONSE_BYTES => b,
            // Over what any peer reads: the request fails here, not the peer's link.
            Ok(b) => return self.refuse_now(&format!("an answer of {} bytes, over the cap", b.len())),
            Err(e) => return self.refuse_now(&format!("cannot encode the answer: {e}")),
        };
        self.answered = true;
        let payload = response_payload(&response);
        if self.answers.send((Instant::now(), self.id, body)).await.is_err() {
            add(&self.shared.inbound_failures, 1);
        } else {
            add(&self.shared.payload_bytes_out, payload);
        }
    }

    fn refuse_now(mut self, why: &str) {
        self.answered = true;
        refuse(&self.answers, self.id, why);
    }
}

impl Drop for JobReply {
    fn drop(&mut self) {
        if !self.answered {
            refuse(&self.answers, self.id, "the node did not answer");
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// Queues a refusal without waiting: when the stream's queue is full, the peer is
/// not reading its answers, and its stream is closed by the write timeout anyway.
fn refuse(answers: &mpsc::Sender<Queued>, id: u64, reason: &str) {
    let r = JobResponse::Refused {
        reason: reason.to_string(),
    };
    if let Ok(body) = cbor4ii::serde::to_vec(Vec::new(), &r) {
        let _ = answers.try_send((Instant::now(), id, body));
    }
}

/// Accepts job streams from peers, at most [`STREAMS_PER_PEER`] each, and serves each
/// on a task of its own.
pub(crate) async fn accept(
    mut incoming: mpsc::Receiver<(PeerId, Stream)>,
    inbound: mpsc::Sender<Inbound>,
    commands: mpsc::WeakSender<Command>,
    shared: Arc<Shared>,
) {
    let open: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    while let Some((peer, stream)) = incoming.recv().await {
        {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            let n = open.entry(peer).or_default();
            if *n >= STREAMS_PER_PEER {
                tracing::debug!(%peer, "job stream refused: {STREAMS_PER_PEER} open already");
                continue;
            }
            *n += 1;
        }
        let counted = Counted {
            open: open.clone(),
            peer,
        };
        let (inbound, commands, shared) = (inbound.clone(), commands.clone(), shared.clone());
        tokio::spawn(async move {
            let _counted = counted;
            serve(peer, stream, inbound, commands, shared).await;
        });
    }
}

/// A peer's open job stream, counted until its task ends (however it ends).
struct Counted {
    open: Arc<Mutex<HashMap<PeerId, usize>>>,
    peer: PeerId,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// Serves one stream: each request read, checked (size, form, rate, room) and handed
/// to the node with a [`JobReply`], or refused on the spot.
async fn serve(
    peer: PeerId,
    stream: Stream,
    inbound: mpsc::Sender<Inbound>,
    commands: mpsc::WeakSender<Command>,
    shared: Arc<Shared>,
) {
    let (mut reader, writer) = stream.split();
    let (answers, outgoing) = mpsc::channel::<Queued>(IN_FLIGHT + 1);
    let mut writing = tokio::spawn(write_frames(writer, outgoing));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let malformed = |why: String| {
        add(&shared.malformed_requests, 1);
        tracing::debug!(%peer, why, "malformed request");
        if let Some(commands) = commands.upgrade() {
            let _ = commands.try_send(Command::Report {
                peer,
                conduct: Conduct::Bad,
            });
        }
        format!("malformed: {why}")
    };
    let mut messages = Assembler::new(MAX_REQUEST_BYTES);
    loop {
        // A writer that failed (the peer stopped taking answers) ends the stream: both
        // halves go, and nothing more is read from it.
        let next = tokio::select! {
            m = messages.next(&mut reader) => m,
            _ = &mut writing => {
                tracing::debug!(%peer, "job stream closed: the peer did not take its answers in time");
                return;
            }
        };
        let (id, body) = match next {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(ReadError::TooLarge(id)) => {
                // The rest of the message is not read: the answer goes out and the
                // stream is closed behind it.
                add(&shared.requests_in, 1);
                refuse(
                    &answers,
                    id,
                    &malformed(format!("a request over {MAX_REQUEST_BYTES} bytes")),
                );
                break;
            }
            Err(ReadError::TooMany) => {
                malformed(format!("more than {INTERLEAVED} requests begun at once"));
                break;
            }
            Err(ReadError::Slow) => {
                add(&shared.inbound_failures, 1);
                tracing::debug!(%peer, "a request not sent within {REQUEST_TIMEOUT:?}: stream closed");
                break;
            }
            Err(ReadError::Io(e)) => {
                add(&shared.inbound_failures, 1);
                tracing::debug!(%peer, error = %e, "job stream from a peer failed");
                break;
            }
        };
        add(&shared.requests_in, 1);
        shared.used(peer);
        // Past the peer's rate, a request is refused before it is decoded.
        if !shared.admit(peer) {
            add(&shared.requests_refused, 1);
            refuse(&answers, id, "rate limited");
            continue;
        }
        let request: JobRequest = match cbor4ii::serde::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                refuse(
                    &answers,
                    id,
                    &malformed(format!("a request that does not decode: {e}")),
                );
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            add(&shared.requests_refused, 1);
            refuse(&answers, id, "busy");
            continue;
        };
        let channel = JobReply {
            id,
            answers: answers.clone(),
            shared: shared.clone(),
            answered: false,
            _slot: slot,
        };
        if let Err(mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back)) = inbound
            .try_send(Inbound::Job {
                peer,
                request,
                channel,
            })
        {
            add(&shared.requests_refused, 1);
            if let Inbound::Job { channel, .. } = back {
                channel.refuse_now("busy");
            }
        }
    }
    // Answers still owed go out on the writer until the last reply is dropped.
    drop(answers);
    let _ = writing.await;
}
