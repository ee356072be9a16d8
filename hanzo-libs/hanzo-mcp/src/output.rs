//! An MCP tool result as a job's output (CONTRACTS §9), and the identity a receipt
//! names as `code_hash`.

use hanzo_compute::ComputeError;
use hanzo_compute::receipt::hash_json;
use rmcp::model::{CallToolResult, Tool};
use serde_json::{Value, json};

/// The job's output: `structuredContent` when present, else the single text item
/// parsed as JSON, else `{"content": [...]}`; a result with `isError` is a tool failure
/// carrying the result's text.
pub(crate) fn to_output(result: CallToolResult) -> Result<Value, ComputeError> {
    if result.is_error.unwrap_or(false) {
        let text = texts(&result).join("\n");
        let why = if text.trim().is_empty() {
            match &result.structured_content {
                Some(v) => v.to_string(),
                None => "the tool reported an error and said nothing more".into(),
            }
        } else {
            text
        };
        return Err(ComputeError::ToolFailed(clean(&why, MAX_ERROR_TEXT)));
    }
    if let Some(v) = result.structured_content {
        return Ok(v);
    }
    if let [only] = result.content.as_slice()
        && let Some(t) = only.as_text()
        && let Ok(v) = serde_json::from_str::<Value>(&t.text)
    {
        return Ok(v);
    }
    let content = serde_json::to_value(&result.content)
        .map_err(|e| ComputeError::internal(format!("an MCP result's content: {e}")))?;
    Ok(json!({ "content": content }))
}

fn texts(result: &CallToolResult) -> Vec<String> {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

/// A server's words as they may appear in a job's error or a registered tool: no
/// control characters (a terminal would obey them) and at most `max` bytes.
pub(crate) fn clean(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" [...]");
    }
    out
}

/// The most of a server's text kept in an error message.
pub(crate) const MAX_ERROR_TEXT: usize = 4096;

/// What the server says it is (its `serverInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerIdentity {
    pub name: String,
    pub version: String,
}

/// The receipt's `code_hash` of a call: sha256 of the canonical JSON of what ran,
/// which is the server (a stdio server's program bytes and arguments, or an HTTP
/// server's URL), what it says it is (name and version), and the tool as it described
/// itself (name and input schema). A server that changes any of these changes the hash.
pub(crate) fn code_hash(server: &Value, identity: &ServerIdentity, tool: &Tool) -> String {
    hash_json(&json!({
        "mcp": server,
        "server_info": { "name": identity.name, "version": identity.version },
        "tool": { "name": tool.name, "input_schema": Value::Object((*tool.input_schema).clone()) },
    }))
}

/// The `code_hash` of a call whose server never finished its handshake: the server
/// as started and the tool asked for (its identity and schema are unknown).
pub(crate) fn start_hash(server: &Value, tool: &str) -> String {
    hash_json(&json!({ "mcp": server, "server_info": null, "tool": { "name": tool } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock;

    #[test]
    fn structured_content_first_then_one_json_text_then_the_content() {
        let mut r = CallToolResult::success(vec![ContentBlock::text("ignored")]);
        r.structured_content = Some(json!({"a": 1}));
        assert_eq!(to_output(r).unwrap(), json!({"a": 1}));
        let r = CallToolResult::success(vec![ContentBlock::text(r#"{"b": [2]}"#)]);
        assert_eq!(to_output(r).unwrap(), json!({"b": [2]}));
        let r = CallToolResult::success(vec![ContentBlock::text("plain words")]);
        assert_eq!(
            to_output(r).unwrap(),
            json!({"content": [{"type": "text", "text": "plain words"}]})
        );
        let r = CallToolResult::success(vec![ContentBlock::text("1"), ContentBlock::text("2")]);
        assert_eq!(to_output(r).unwrap()["content"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_servers_words_lose_their_control_characters_and_their_length() {
        assert_eq!(clean("a\u{1b}[2Jb\nc", 100), "a\u{fffd}[2Jb\nc");
        assert_eq!(clean("ééé", 3), "é [...]");
    }

    #[test]
    fn is_error_is_a_tool_failure_with_the_text() {
        let r = CallToolResult::error(vec![ContentBlock::text("no such timezone: Mars/Olympus")]);
        let e = to_output(r).unwrap_err();
        assert_eq!(
            e,
            ComputeError::ToolFailed("no such timezone: Mars/Olympus".into())
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn the_code_hash_changes_with_the_server_its_version_and_the_schema() {
        let schema = |t: &str| {
            let v = json!({"type": "object", "properties": {"x": {"type": t}}});
            std::sync::Arc::new(v.as_object().unwrap().clone())
        };
        let tool = Tool::new("t", "d", schema("string"));
        let id = ServerIdentity {
            name: "s".into(),
            version: "1".into(),
        };
        let base = code_hash(&json!("a"), &id, &tool);
        assert_eq!(base, code_hash(&json!("a"), &id, &tool));
        assert_ne!(base, code_hash(&json!("b"), &id, &tool));
        let v2 = ServerIdentity {
            version: "2".into(),
            ..id.clone()
        };
        assert_ne!(base, code_hash(&json!("a"), &v2, &tool));
        assert_ne!(
            base,
            code_hash(&json!("a"), &id, &Tool::new("t", "d", schema("number")))
        );
    }
}
