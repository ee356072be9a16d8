//! The stdio contract (CONTRACTS §1a), shared by every runtime that runs a process or
//! a WASI command: how stdout becomes the output, and how a failure is named.

use crate::ComputeError;
use serde_json::Value;

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
