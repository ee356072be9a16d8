//! The stdio contract (CONTRACTS §1a), shared by every runtime that runs a process or
//! a WASI command: how stdout becomes the output, and how a failure is named.

use crate::ComputeError;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// How much of a tool's log stream (stderr) a runtime keeps.
pub const LOG_CAP: usize = 1024 * 1024;

/// Where a running job's log bytes go as the tool writes them, so that they can be
/// followed live (`GET /v1/jobs/{id}/logs?follow=true`) rather than only read once the
/// job has ended.
///
/// A runtime hands it every chunk of the log stream it *keeps* (see
/// [`LogBuffer::with_sink`]), in order, so followers see exactly the stored logs and
/// never more than the cap. The default sink discards. Writing must be cheap and must
/// never block: it is called from the tasks that drain the tool's stderr, and a slow
/// sink would let the tool's pipe fill.
#[derive(Clone, Default)]
pub struct LogSink(Option<Arc<LogFn>>);

type LogFn = dyn Fn(&[u8]) + Send + Sync;

impl LogSink {
    /// A sink that calls `f` with every chunk.
    pub fn new(f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        LogSink(Some(Arc::new(f)))
    }

    /// Hands a chunk to the sink (nothing for an empty chunk or the default sink).
    pub fn write(&self, chunk: &[u8]) {
        if let Some(f) = &self.0
            && !chunk.is_empty()
        {
            f(chunk)
        }
    }

    /// Whether anything listens (the default sink does not).
    pub fn is_active(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_active() {
            "LogSink(active)"
        } else {
            "LogSink(none)"
        })
    }
}

/// A tool's log stream, bounded: the first bytes up to a cap are kept and the rest only
/// counted, because logs are for people and must never fail a job or fill the node.
/// [`finish`](LogBuffer::finish) appends a `[hanzo-node: N more bytes of logs dropped]`
/// note, which [`last_log_line`] knows to skip.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    cap: usize,
    data: Vec<u8>,
    dropped: u64,
    sink: LogSink,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new(LOG_CAP)
    }
}

impl LogBuffer {
    /// An empty buffer keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        LogBuffer {
            cap,
            data: Vec::new(),
            dropped: 0,
            sink: LogSink::default(),
        }
    }

    /// Also hands every kept chunk to `sink` as it arrives (the job's live logs).
    pub fn with_sink(mut self, sink: LogSink) -> Self {
        self.sink = sink;
        self
    }

    /// Bytes that still fit.
    pub fn room(&self) -> usize {
        self.cap.saturating_sub(self.data.len())
    }

    /// Keeps what fits of `bytes` and counts the rest.
    pub fn push(&mut self, bytes: &[u8]) {
        let keep = self.room().min(bytes.len());
        self.data.extend_from_slice(&bytes[..keep]);
        self.sink.write(&bytes[..keep]);
        self.dropped += (bytes.len() - keep) as u64;
    }

    /// Everything kept, with the note when bytes were dropped; leaves the buffer empty.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.data);
        if self.dropped > 0 {
            data.extend_from_slice(
                format!("\n[hanzo-node: {} more bytes of logs dropped]\n", self.dropped).as_bytes(),
            );
            self.dropped = 0;
        }
        data
    }
}

/// A successful tool's stdout: exactly one JSON document.
pub fn parse_output(stdout: &[u8]) -> Result<Value, ComputeError> {
    let text = std::str::from_utf8(stdout)
        .map_err(|_| ComputeError::ToolFailed("the tool's output is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(ComputeError::ToolFailed(
            "the tool exited 0 but wrote no output".into(),
        ));
    }
    serde_json::from_str(text.trim())
        .map_err(|e| ComputeError::ToolFailed(format!("the tool's output is not one JSON document: {e}")))
}

/// The last non-empty line of a log stream: by convention, the error message. Lines
/// the node itself added (`[hanzo-node: ...]`) are skipped.
pub fn last_log_line(logs: &[u8]) -> Option<String> {
    String::from_utf8_lossy(logs)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("[hanzo-node:"))
        .map(|l| l.trim().to_string())
}

/// The error of a tool that exited with `code`: the `error` field of its stdout when
/// it wrote `{"error": "..."}`, else the last line of its stderr.
pub fn failure(code: i64, stdout: &[u8], stderr: &[u8]) -> ComputeError {
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(stdout)
        && let Some(Value::String(msg)) = m.get("error")
    {
        return ComputeError::ToolFailed(format!("exited with code {code}: {msg}"));
    }
    let why = last_log_line(stderr).unwrap_or_else(|| "no message".into());
    ComputeError::ToolFailed(format!("exited with code {code}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn the_sink_sees_exactly_the_kept_bytes_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut b =
            LogBuffer::new(5).with_sink(LogSink::new(move |c| s.lock().unwrap().extend_from_slice(c)));
        b.push(b"abc");
        b.push(b"defg");
        b.push(b"hij");
        assert_eq!(&*seen.lock().unwrap(), b"abcde");
        let kept = b.finish();
        assert!(
            kept.starts_with(b"abcde\n[hanzo-node: 5 more bytes"),
            "{}",
            String::from_utf8_lossy(&kept)
        );
    }

    #[test]
    fn output_is_one_json_document() {
        assert_eq!(
            parse_output(b" {\"a\":1}\n").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert!(parse_output(b"").unwrap_err().to_string().contains("no output"));
        assert!(
            parse_output(b"{} {}")
                .unwrap_err()
                .to_string()
                .contains("one JSON document")
        );
    }

    #[test]
    fn logs_keep_the_start_and_note_the_rest() {
        let mut l = LogBuffer::new(4);
        l.push(b"abcdef");
        l.push(b"g");
        let out = String::from_utf8(l.finish()).unwrap();
        assert_eq!(out, "abcd\n[hanzo-node: 3 more bytes of logs dropped]\n");
        assert_eq!(last_log_line(out.as_bytes()).as_deref(), Some("abcd"));
    }

    #[test]
    fn failures_prefer_the_error_field() {
        assert_eq!(
            failure(1, br#"{"error":"quota"}"#, b"noise\n"),
            ComputeError::ToolFailed("exited with code 1: quota".into())
        );
        assert_eq!(
            failure(
                2,
                b"",
                b"one\ntwo\n\n[hanzo-node: 5 more bytes of logs dropped]\n"
            ),
            ComputeError::ToolFailed("exited with code 2: two".into())
        );
    }
}
