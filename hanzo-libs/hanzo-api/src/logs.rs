//! A job's logs: stored (`GET /v1/jobs/{id}/logs`) and followed live as server-sent
//! events (`?follow=true`).
//!
//! Every job the API hands to the scheduler carries a [`LogSink`] that appends to a
//! [`Live`] buffer here. Runtimes hand the sink exactly the bytes of the log stream they
//! keep (at most [`LOG_CAP`]), so a follower sees what will be stored, never more. The
//! buffer lives from submission until the job's end is committed to the store
//! ([`LiveLogs::close`], called by the hooks); a follower arriving after that reads the
//! store instead. Because the end is committed before the buffer goes, a follower never
//! falls between the two.
//!
//! The stream is one `log` event per line (`data:` the line, lossily UTF-8, `id:` the
//! byte offset just past it), then one `end` event with the job's final status. A
//! client that reconnects with `Last-Event-ID` resumes at that offset, which is what
//! browsers' `EventSource` does by itself.
//!
//! Followers are bounded node-wide ([`MAX_FOLLOWERS`]), per client address
//! ([`FollowLimits::per_client`]: one client cannot take every place) and in time
//! ([`FollowLimits::max_duration`]): a stream open that long ends with a `timeout` event
//! `{"id", "offset", "message"}`, and the client may reconnect with `Last-Event-ID`.
//! A client that stops reading stops its stream being polled, so the time bound cannot
//! end that one; the per-client cap bounds what such clients hold.

use crate::State;
use crate::error::ApiError;
use crate::routes::schemas::{ErrorReply, LogEvent};
use crate::routes::{Segment, flag, query, read_store};
use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use hanzo_compute::stdio::{LOG_CAP, LogSink};
use hanzo_jobstore::JobRecord;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// A line longer than this is sent in pieces, so that a tool printing one endless
/// line is still followed as it goes.
const MAX_LINE: usize = 64 * 1024;

/// How often a follower re-reads the store for a job that has no live buffer and has
/// not ended (only possible for a job that never went through this API's scheduler).
const POLL: Duration = Duration::from_millis(500);

/// Events a follower prepares ahead of the client. A client that stops reading stops
/// the stream being polled, so this (not the log's size) bounds what one follower holds:
/// a tool writing a megabyte of line ends must not become a million queued events.
const BATCH: usize = 64;

/// Bytes read from the live buffer at a time, under its lock.
const CHUNK: usize = 16 * 1024;

/// Followers at once, node-wide. Each may hold a copy of a finished job's stored log
/// (at most 1 MiB) while it sends it: 64 bound that to 64 MiB.
pub(crate) const MAX_FOLLOWERS: usize = 64;

/// How many log streams one client may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowLimits {
    /// Streams open at once from one client address (`[node] api_log_followers_per_client`).
    pub per_client: usize,
    /// How long one stream stays open (`[node] api_log_follow_max_secs`).
    pub max_duration: Duration,
}

impl Default for FollowLimits {
    fn default() -> Self {
        FollowLimits {
            per_client: 8,
            max_duration: Duration::from_secs(3600),
        }
    }
}

/// The live log buffers of the jobs between submission and end.
pub(crate) struct LiveLogs {
    jobs: Mutex<HashMap<String, Arc<Live>>>,
    followers: Arc<Semaphore>,
    /// Open streams per client address.
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Default for LiveLogs {
    fn default() -> Self {
        LiveLogs {
            jobs: Mutex::default(),
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
            per_client: Arc::default(),
        }
    }
}

/// One client's place among its [`FollowLimits::per_client`] streams, given back on drop.
struct ClientPlace {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl ClientPlace {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, client: IpAddr, max: usize) -> Option<ClientPlace> {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(client).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientPlace {
            counts: counts.clone(),
            client,
        })
    }
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.client);
            }
        }
    }
}

/// One job's log so far.
pub(crate) struct Live {
    buf: Mutex<LiveBuf>,
    /// Bumped on every append and at the end; followers wait on it.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct LiveBuf {
    data: Vec<u8>,
    done: bool,
}

impl Live {
    fn append(&self, chunk: &[u8]) {
        {
            let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
            // Runtimes never pass the cap; this only keeps a faulty one from growing
            // the node without bound.
            let room = LOG_CAP.saturating_sub(b.data.len());
            let n = room.min(chunk.len());
            b.data.extend_from_slice(&chunk[..n]);
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Up to `max` bytes from `offset` on, and whether the job has ended.
    fn read_from(&self, offset: usize, max: usize) -> (Vec<u8>, bool) {
        let b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let rest = b.data.get(offset..).unwrap_or_default();
        (rest[..rest.len().min(max)].to_vec(), b.done)
    }

    /// Whether the byte before `offset` is a `\r` (a resumed stream must then not
    /// take a `\n` at `offset` for an empty line).
    fn cr_before(&self, offset: usize) -> bool {
        let b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        offset.checked_sub(1).and_then(|i| b.data.get(i)) == Some(&b'\r')
    }
}

impl LiveLogs {
    /// The sink for a job's logs; the job's buffer is created on first use.
    pub(crate) fn open(&self, id: &str) -> LogSink {
        let live = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.entry(id.to_string())
                .or_insert_with(|| {
                    Arc::new(Live {
                        buf: Mutex::new(LiveBuf::default()),
                        changed: watch::Sender::new(0),
                    })
                })
                .clone()
        };
        LogSink::new(move |chunk| live.append(chunk))
    }

    fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Ends a job's live log: followers drain it and then read the end from the store.
    /// Call only once the job's end is committed there.
    pub(crate) fn close(&self, id: &str) {
        let live = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Some(live) = live {
            live.buf.lock().unwrap_or_else(|p| p.into_inner()).done = true;
            live.changed.send_modify(|v| *v += 1);
        }
    }

    /// How many jobs have a live buffer (for tests and metrics).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The job's logs (its stderr, bounded). As text by default; with `follow=true` (or
/// `Accept: text/event-stream`) as server-sent events that follow the job until it
/// ends: one `log` event per line, `id` the byte offset past it, then an `end` event
/// `{"id", "status", "error"}`. `Last-Event-ID` resumes from an offset. A stream open
/// longer than the node's limit (`[node] api_log_follow_max_secs`) ends with a `timeout`
/// event `{"id", "offset", "message"}` instead; reconnect from `offset` to go on.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path, description = "The job id"),
        ("follow" = Option<bool>, Query, description = "Stream as server-sent events until the job ends")),
    responses((status = 200, description = "The logs as text, or with follow=true an event stream",
            content((String = "text/plain"), (LogEvent = "text/event-stream"))),
        (status = 400, description = "invalid_input: a bad query parameter or Last-Event-ID", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply),
        (status = 429, description = "too_many_followers: the node's or this client's limit of log followers is reached", body = ErrorReply)))]
pub(crate) async fn job_logs(
    AxState(state): AxState<Arc<State>>,
    Segment(id): Segment,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    if let Some(k) = q.keys().find(|k| *k != "follow") {
        return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
    }
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !(flag(&q, "follow")? || wants_events) {
        let key = id.clone();
        let logs = read_store(&state, move |s| s.logs(&key))
            .await?
            .ok_or_else(|| ApiError::not_found(format!("id: no job {id}")))?;
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], logs).into_response());
    }
    let offset = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid("Last-Event-ID: expected a byte offset"))?,
    };
    // 404 now rather than an empty stream. A job with a live buffer exists; one without
    // must be in the store.
    let live = state.hooks.live.get(&id);
    let key = id.clone();
    if live.is_none() && read_store(&state, move |s| s.get_summary(&key)).await?.is_none() {
        return Err(ApiError::not_found(format!("id: no job {id}")));
    }
    // One token is shared by every client, so a client is its address. Without
    // connection info (a router served without it) every client counts as one.
    let client = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ConnectInfo(a))| {
        a.ip()
    });
    let client_place = ClientPlace::take(&state.hooks.live.per_client, client, state.follow.per_client)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_followers",
                format!(
                    "{} log streams are open from {client}, this node's limit per client; close one",
                    state.follow.per_client
                ),
            )
        })?;
    let permit = state
        .hooks
        .live
        .followers
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_followers",
                format!("{MAX_FOLLOWERS} log streams are open on this node; try again later"),
            )
        })?;
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let mut lines = Lines::at(offset as u64);
    lines.after_cr = match &live {
        Some(l) => l.cr_before(offset),
        None => {
            let key = id.clone();
            let stored = read_store(&state, move |s| s.logs(&key)).await.ok().flatten();
            offset.checked_sub(1).and_then(|i| stored?.get(i).copied()) == Some(b'\r')
        }
    };
    let follow_limits = state.follow;
    let follow = Follow {
        state,
        id,
        rx: live.as_ref().map(|l| l.changed.subscribe()),
        live,
        offset,
        lines,
        queue: VecDeque::new(),
        stored: None,
        ended: false,
        deadline: tokio::time::Instant::now() + capped_duration(&follow_limits),
        _permit: permit,
        _client: client_place,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        f.next().await.map(|e| (Ok::<_, Infallible>(e), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// One follower's place in a job's log.
struct Follow {
    state: Arc<State>,
    id: String,
    live: Option<Arc<Live>>,
    rx: Option<watch::Receiver<u64>>,
    /// Bytes of the log consumed so far.
    offset: usize,
    lines: Lines,
    queue: VecDeque<Event>,
    /// Once the job has ended: its record and stored log, sent from `offset` on.
    stored: Option<(JobRecord, Vec<u8>)>,
    ended: bool,
    /// When the stream ends with a `timeout` event.
    deadline: tokio::time::Instant,
    /// This follower's place among the node's [`MAX_FOLLOWERS`].
    _permit: OwnedSemaphorePermit,
    /// And among its client's [`FollowLimits::per_client`].
    _client: ClientPlace,
}

/// The stream's time limit; a huge configured value saturates instead of overflowing.
fn capped_duration(limits: &FollowLimits) -> Duration {
    limits
        .max_duration
        .min(Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Follow {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            if tokio::time::Instant::now() >= self.deadline {
                self.timeout();
                continue;
            }
            let deadline = self.deadline;
            // advance() only awaits a change of the live buffer or a poll pause, with
            // its state updated before: dropping it there loses nothing.
            tokio::select! {
                () = self.advance() => {}
                () = tokio::time::sleep_until(deadline) => self.timeout(),
            }
        }
    }

    /// Ends the stream at the follow time limit, saying where to resume.
    fn timeout(&mut self) {
        // An unfinished line is not sent: the offset points at its start, so a resumed
        // stream sends it whole.
        let data = json!({
            "id": self.id,
            "offset": self.lines.start,
            "message": "the log stream reached this node's time limit (node.api_log_follow_max_secs); \
                reconnect with Last-Event-ID set to offset to go on",
        });
        self.queue.push_back(
            Event::default()
                .event("timeout")
                .id(self.lines.start.to_string())
                .data(data.to_string()),
        );
        self.ended = true;
    }

    /// Queues what is new, at most [`BATCH`] events, or waits for something to be.
    async fn advance(&mut self) {
        if let Some((record, logs)) = &self.stored {
            // The job has ended: the rest of the stored log (which may end with a note
            // the runtime added at the end, bytes dropped past the cap), then `end`.
            let rest = logs.get(self.offset..).unwrap_or_default();
            let used = self.lines.feed(rest, &mut self.queue, BATCH);
            self.offset += used;
            if used == rest.len() {
                let end = json!({"id": record.id, "status": record.status, "error": record.error});
                self.end(end);
            }
            return;
        }
        if let (Some(live), Some(rx)) = (&self.live, &mut self.rx) {
            rx.borrow_and_update();
            let (new, done) = live.read_from(self.offset, CHUNK);
            let used = self.lines.feed(&new, &mut self.queue, BATCH);
            self.offset += used;
            if used < new.len() || new.len() == CHUNK {
                // More is there already: the client takes what is queued first.
                return;
            }
            if done {
                self.live = None;
                self.rx = None;
            } else if new.is_empty() && rx.changed().await.is_err() {
                // The buffer went without `close` (cannot happen): use the store.
                self.live = None;
                self.rx = None;
            }
            return;
        }
        // No live buffer (any more): the store has the job.
        let key = self.id.clone();
        match read_store(&self.state, move |s| s.get_summary(&key)).await {
            Ok(Some(r)) if r.status.is_terminal() => {
                let key = self.id.clone();
                let logs = read_store(&self.state, move |s| s.logs(&key))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                self.stored = Some((r, logs));
            }
            Ok(Some(_)) => {
                // Not ended, no buffer: it was submitted before this node started (or
                // the buffer is being made). Look again shortly.
                if let Some(live) = self.state.hooks.live.get(&self.id) {
                    self.rx = Some(live.changed.subscribe());
                    self.live = Some(live);
                } else {
                    tokio::time::sleep(POLL).await;
                }
            }
            Ok(None) => self.end(
                json!({"id": self.id, "status": "unknown", "error": "the job is no longer in the store"}),
            ),
            Err(e) => self.end(json!({"id": self.id, "status": "unknown", "error": e.message})),
        }
    }

    fn end(&mut self, data: serde_json::Value) {
        self.lines.flush(&mut self.queue);
        self.queue
            .push_back(Event::default().event("end").data(data.to_string()));
        self.ended = true;
    }
}

/// Splits the byte stream into `log` events, one per line. Line ends are `\n`, `\r\n`
/// or `\r`, as in the event-stream format itself, so no event's data can contain one.
struct Lines {
    /// The offset of the first byte of `pending`.
    start: u64,
    pending: Vec<u8>,
    /// The last line ended with `\r`: a `\n` right after it belongs to that end.
    after_cr: bool,
}

impl Lines {
    fn at(offset: u64) -> Self {
        Lines {
            start: offset,
            pending: Vec::new(),
            after_cr: false,
        }
    }

    /// Turns `bytes` into events until `out` holds `max`; returns the bytes used.
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<Event>, max: usize) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            if out.len() >= max {
                return i;
            }
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                self.start += 1;
                continue;
            }
            self.pending.push(b);
            if b == b'\n' || b == b'\r' {
                self.emit(out);
                self.after_cr = b == b'\r';
            } else if self.pending.len() >= MAX_LINE {
                self.emit(out);
            }
        }
        bytes.len()
    }

    fn emit(&mut self, out: &mut VecDeque<Event>) {
        let end = self.start + self.pending.len() as u64;
        let text = String::from_utf8_lossy(&self.pending);
        let line = text.trim_end_matches(['\n', '\r']);
        out.push_back(Event::default().event("log").id(end.to_string()).data(line));
        self.start = end;
        self.pending.clear();
    }

    /// Sends an unfinished last line.
    fn flush(&mut self, out: &mut VecDeque<Event>) {
        if !self.pending.is_empty() {
            self.emit(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut l = Lines::at(0);
        let mut q = VecDeque::new();
        for c in chunks {
            assert_eq!(l.feed(c, &mut q, usize::MAX), c.len());
        }
        l.flush(&mut q);
        q.into_iter().map(|e| format!("{e:?}")).collect()
    }

    #[test]
    fn lines_split_on_every_kind_of_line_end_across_chunks() {
        let got = lines(&[b"one\ntw", b"o\r", b"\nthree\rfour"]);
        assert_eq!(got.len(), 4, "{got:#?}");
        for (e, (text, id)) in got
            .iter()
            .zip([("one", 4), ("two", 8), ("three", 15), ("four", 19)])
        {
            assert!(e.contains(&format!("data: {text}\\n")), "{e}");
            assert!(e.contains(&format!("id: {id}\\n")), "{e}");
        }
    }

    #[test]
    fn feeding_stops_at_the_batch_and_says_how_far_it_got() {
        let mut l = Lines::at(0);
        let mut q = VecDeque::new();
        let crs = vec![b'\r'; 1000];
        assert_eq!(l.feed(&crs, &mut q, BATCH), BATCH);
        assert_eq!(q.len(), BATCH);
        q.clear();
        assert_eq!(l.feed(&crs[BATCH..], &mut q, BATCH), BATCH);
    }

    #[test]
    fn an_endless_line_is_sent_in_pieces() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        assert_eq!(lines(&[&big]).len(), 3);
    }

    #[test]
    fn a_sink_feeds_the_buffer_until_close() {
        let logs = LiveLogs::default();
        let sink = logs.open("j");
        sink.write(b"hello\n");
        let live = logs.get("j").unwrap();
        assert_eq!(live.read_from(0, 99), (b"hello\n".to_vec(), false));
        assert_eq!(live.read_from(2, 99), (b"llo\n".to_vec(), false));
        assert_eq!(live.read_from(2, 2), (b"ll".to_vec(), false));
        assert_eq!(live.read_from(99, 99), (Vec::new(), false));
        // A second open of the same id (a duplicate) shares the buffer.
        logs.open("j").write(b"more\r");
        assert_eq!(live.read_from(6, 99).0, b"more\r");
        assert!(live.cr_before(11) && !live.cr_before(10) && !live.cr_before(0));
        logs.close("j");
        assert_eq!(logs.len(), 0);
        assert!(live.read_from(0, 99).1);
    }
}
