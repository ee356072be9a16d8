//! The model: one OpenAI-compatible chat-completions request and its reply.
//!
//! The wire format is the one OpenAI, Ollama (`/v1`), llama.cpp's `llama-server` and
//! vLLM share (docs/agents.md names the references read). Where they differ, the
//! request takes the common ground and the reply reader accepts every variant:
//! - `max_tokens`, not `max_completion_tokens` (Ollama reads only the former);
//! - no `tool_choice` (the default is `auto` once tools are given, and vLLM refuses
//!   an explicit `auto` unless started with `--enable-auto-tool-choice`);
//! - a tool call is a non-empty `message.tool_calls`, whatever `finish_reason` says;
//! - `arguments` is a JSON string, but an object is taken too, and a missing call id
//!   gets one of ours;
//! - an error body's `error` may be an object (its `code` a string, a number or
//!   null) or a bare string.
//!
//! The endpoint is not trusted: its reply is read up to a byte budget before it is
//! parsed, and nothing it says reaches a message unbounded or with control characters.

use hanzo_compute::{ComputeError, LimitKind};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

/// The longest error text of the endpoint's that a message quotes.
const MAX_QUOTED: usize = 300;

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call's id, echoed in the tool message that answers it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them (JSON text, not yet checked).
    pub arguments: String,
}

/// The model's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Its text (the answer, when it calls no tool).
    pub content: Option<String>,
    /// The tools it asks for, in order.
    pub calls: Vec<ToolCall>,
    /// Tokens, as the endpoint counted them (0 when it did not say).
    pub prompt_tokens: u64,
    /// Tokens of the reply.
    pub completion_tokens: u64,
}

impl Reply {
    /// The assistant message that goes back into the conversation: the calls as the
    /// endpoint will read them (ids filled in, arguments as JSON text).
    pub fn message(&self) -> Value {
        let mut m = json!({"role": "assistant", "content": self.content});
        if !self.calls.is_empty() {
            m["tool_calls"] = self
                .calls
                .iter()
                .map(|c| {
                    // Arguments that are not JSON go back as `{}`: OpenAI would take
                    // them as written, but Ollama refuses the whole conversation; the
                    // tool message that answers the call says what was wrong.
                    let arguments = if serde_json::from_str::<Value>(&c.arguments).is_ok() {
                        c.arguments.as_str()
                    } else {
                        "{}"
                    };
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": arguments}})
                })
                .collect();
        }
        m
    }
}

/// What one request is made of.
pub struct Request<'a> {
    /// `<endpoint>/chat/completions`.
    pub url: &'a str,
    /// The bearer key, if any.
    pub key: Option<&'a str>,
    /// The body: model, messages, tools, sampling options.
    pub body: &'a Value,
    /// The agent's deadline.
    pub deadline: Instant,
    /// The most bytes of reply read.
    pub max_reply: usize,
}

/// Posts `req` and reads the reply; every failure is named as the contract's exit
/// codes want it (unreachable 4, a refused key 2, a malformed reply 1).
pub async fn complete(
    client: &reqwest::Client,
    req: Request<'_>,
    turn: usize,
) -> Result<Reply, ComputeError> {
    let remaining = req.deadline.saturating_duration_since(Instant::now());
    let mut builder = client
        .post(req.url)
        .timeout(remaining)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(serde_json::to_vec(req.body).map_err(ComputeError::internal)?);
    if let Some(key) = req.key {
        builder = builder.bearer_auth(key);
    }
    let mut response = builder.send().await.map_err(|e| transport(req.url, &e))?;
    let status = response.status();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > req.max_reply {
                    return Err(ComputeError::LimitExceeded {
                        limit: LimitKind::Memory,
                        detail: format!(
                            "the model's reply to request {turn} passed {} bytes, what the agent's memory limit leaves",
                            req.max_reply
                        ),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(transport(req.url, &e)),
        }
    }
    if !status.is_success() {
        return Err(refused(status.as_u16(), &body, req.url, req.key));
    }
    parse_reply(&body, turn)
}

/// A transport failure: the deadline (a limit), or an endpoint that could not be
/// reached or broke off (unavailable, exit 4).
fn transport(url: &str, e: &reqwest::Error) -> ComputeError {
    if e.is_timeout() {
        return ComputeError::LimitExceeded {
            limit: LimitKind::Timeout,
            detail: "the agent's timeout passed while the model was answering".into(),
        };
    }
    // reqwest's own message is "error sending request"; its source says why.
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = s.to_string();
        source = s.source();
    }
    ComputeError::Unavailable(format!(
        "the model endpoint {url} is unreachable: {}",
        clean(&why)
    ))
}

/// An error status, named for what the caller can do about it.
fn refused(status: u16, body: &[u8], url: &str, key: Option<&str>) -> ComputeError {
    let mut said = error_text(body);
    // An endpoint (or a proxy before it) may quote the key it refused; the message
    // ends up in the job's record and the receipt.
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        said = said.replace(key, "[the key]");
        // Quoted cut short (`sk-abc...`): no prefix of 8 characters or more survives.
        for n in (8..key.len()).rev() {
            if let Some(prefix) = key.get(..n)
                && said.contains(prefix)
            {
                said = said.replace(prefix, "[the key]");
            }
        }
    }
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    match status {
        401 | 403 => ComputeError::invalid(format!(
            "the model endpoint refused the key ({status}{}){said}; check api_key_env",
            if status == 401 {
                " Unauthorized"
            } else {
                " Forbidden"
            }
        )),
        404 => ComputeError::invalid(format!(
            "the model endpoint answered 404 (no such model, or {url} is not a chat-completions route){said}"
        )),
        408 | 429 | 500..=599 => {
            ComputeError::Unavailable(format!("the model endpoint is unavailable ({status}){said}"))
        }
        _ => ComputeError::ToolFailed(format!("the model endpoint refused the request ({status}){said}")),
    }
}

/// The message of an error body in any of the shapes servers use.
fn error_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("error") {
            Some(Value::Object(e)) => e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| Value::Object(e.clone()).to_string()),
            Some(Value::String(s)) => s.clone(),
            _ => v
                .get("message")
                .or_else(|| v.get("detail"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_default(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    clean(&text)
}

/// One line, no control characters, at most [`MAX_QUOTED`] characters: the endpoint's
/// words reach the operator's terminal and logs.
pub fn clean(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() || invisible(c) { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if one.chars().count() > MAX_QUOTED {
        let cut: String = one.chars().take(MAX_QUOTED).collect();
        format!("{cut}...")
    } else {
        one
    }
}

/// Format characters that reorder or hide text on a terminal (bidi overrides and
/// isolates, zero-width characters, the byte-order mark).
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn malformed(turn: usize, why: impl std::fmt::Display) -> ComputeError {
    ComputeError::ToolFailed(format!("malformed reply from the model (request {turn}): {why}"))
}

/// Reads a chat-completions reply.
pub fn parse_reply(body: &[u8], turn: usize) -> Result<Reply, ComputeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(turn, format!("not JSON: {e}")))?;
    let message = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("message"))
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(turn, "no choices[0].message"))?;
    let content = match message.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // Content parts: the text ones, joined.
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        Some(other) => return Err(malformed(turn, format!("content is {}", kind(other)))),
    };
    let mut calls = Vec::new();
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, c) in list.iter().enumerate() {
                calls.push(tool_call(c, i, turn)?);
            }
        }
        Some(other) => return Err(malformed(turn, format!("tool_calls is {}", kind(other)))),
    }
    let usage = v.get("usage").and_then(Value::as_object);
    let count = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    Ok(Reply {
        content,
        calls,
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
    })
}

fn tool_call(c: &Value, i: usize, turn: usize) -> Result<ToolCall, ComputeError> {
    let f = c
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(turn, format!("tool_calls[{i}] has no function")))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| malformed(turn, format!("tool_calls[{i}] has no function name")))?;
    let arguments = match f.get("arguments") {
        // Servers replaying an empty string refuse it (Ollama): an empty call is `{}`.
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(obj @ Value::Object(_)) => obj.to_string(),
        Some(other) => {
            return Err(malformed(
                turn,
                format!("tool_calls[{i}].function.arguments is {}", kind(other)),
            ));
        }
    };
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("call_{turn}_{i}"));
    Ok(ToolCall {
        id,
        name: name.to_string(),
        arguments,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The request body.
pub fn body(file: &hanzo_compute::agent::AgentFile, messages: &[Value], tools: &[Value]) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), json!(file.model));
    b.insert("messages".into(), Value::Array(messages.to_vec()));
    // Some servers refuse an empty list: no tools, no key.
    if !tools.is_empty() {
        b.insert("tools".into(), Value::Array(tools.to_vec()));
    }
    if let Some(t) = file.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(m) = file.max_tokens {
        b.insert("max_tokens".into(), json!(m));
    }
    b.insert("stream".into(), json!(false));
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_in_every_servers_shape() {
        // OpenAI / Ollama /v1: arguments as a string, finish_reason tool_calls.
        let r = parse_reply(
            br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"sum","arguments":"{\"a\":1}"}}]},
                "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            1,
        )
        .unwrap();
        assert_eq!(r.calls[0].name, "sum");
        assert_eq!(r.calls[0].arguments, r#"{"a":1}"#);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (7, 3));
        assert_eq!(r.message()["tool_calls"][0]["id"], "call_1");
        // Arguments as an object, no id, "stop" though it calls a tool, no usage.
        let r = parse_reply(
            br#"{"choices":[{"message":{"content":"","tool_calls":[{"function":{"name":"sum","arguments":{"a":2}}}]},
                "finish_reason":"stop"}]}"#,
            2,
        )
        .unwrap();
        assert_eq!(r.calls[0].arguments, r#"{"a":2}"#);
        assert_eq!(r.calls[0].id, "call_2_0");
        assert_eq!(r.prompt_tokens, 0);
        // A final answer in content parts.
        let r = parse_reply(
            br#"{"choices":[{"message":{"content":[{"type":"text","text":"4"},{"type":"text","text":"2"}]}}]}"#,
            3,
        )
        .unwrap();
        assert_eq!(r.content.as_deref(), Some("42"));
        assert!(r.calls.is_empty());
    }

    #[test]
    fn malformed_replies_are_named() {
        for (body, needle) in [
            (&b"<html>"[..], "not JSON"),
            (br#"{"choices":[]}"#, "choices[0]"),
            (
                br#"{"choices":[{"message":{"content":5}}]}"#,
                "content is a number",
            ),
            (
                br#"{"choices":[{"message":{"tool_calls":{}}}]}"#,
                "tool_calls is an object",
            ),
            (
                br#"{"choices":[{"message":{"tool_calls":[{"function":{}}]}}]}"#,
                "no function name",
            ),
            (
                br#"{"choices":[{"message":{"tool_calls":[{"function":{"name":"a","arguments":3}}]}}]}"#,
                "arguments is a number",
            ),
        ] {
            let e = parse_reply(body, 4).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn error_bodies_in_every_shape() {
        assert_eq!(
            error_text(br#"{"error":{"message":"bad key","type":"x","code":"invalid_api_key"}}"#),
            "bad key"
        );
        assert_eq!(error_text(br#"{"error":{"message":"m","code":401}}"#), "m");
        assert_eq!(error_text(br#"{"error":"Unauthorized"}"#), "Unauthorized");
        assert_eq!(error_text(b"plain\ntext\x1b[31m"), "plain text [31m");
        assert_eq!(refused(401, b"{}", "u", None).exit_code(), 2);
        assert_eq!(refused(404, b"{}", "u", None).exit_code(), 2);
        assert_eq!(refused(503, b"{}", "u", None).exit_code(), 4);
        assert_eq!(refused(429, b"{}", "u", None).exit_code(), 4);
        assert_eq!(refused(400, b"{}", "u", None).exit_code(), 1);
        assert!(clean(&"x".repeat(1000)).len() < 400);
        assert_eq!(clean("a\u{202E}b\u{200B}c"), "a b c");
        // A key the endpoint quotes back, whole or cut, is not repeated.
        let key = "sk-secret-0123456789";
        let e = refused(
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-secret-0123456789"}}"#,
            "u",
            Some(key),
        );
        assert!(!e.to_string().contains("sk-secret"), "{e}");
        let e = refused(
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-secre**********"}}"#,
            "u",
            Some(key),
        );
        assert!(!e.to_string().contains("sk-secre"), "{e}");
    }
}
