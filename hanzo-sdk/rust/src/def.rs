//! What a tool is at run time, independent of how it is invoked (exports ABI or stdio).

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// One tool as `#[tool]` describes it: enough to document it and to call it with raw params.
///
/// Built by the `#[tool]` attribute as a constant; gathered by `export!`.
#[derive(Clone, Copy)]
pub struct ToolDef {
    /// The function name: the WASM export name and the `HANZO_FUNCTION` value that selects it.
    pub name: &'static str,
    /// The function's doc comment, trimmed.
    pub description: &'static str,
    /// Builds the JSON Schema of the params the tool accepts.
    pub input_schema: fn() -> Value,
    /// Builds the JSON Schema of the output the tool returns on success.
    pub output_schema: fn() -> Value,
    /// Parses raw UTF-8 JSON params, runs the tool and returns its output or error message.
    pub dispatch: fn(&[u8]) -> Result<Value, String>,
    /// Does what `dispatch` does, but answers the exports-ABI envelope, written straight
    /// from the tool's output type: no `Value` tree is built on the way out.
    pub respond: fn(&[u8]) -> Vec<u8>,
}

impl ToolDef {
    /// Runs the tool on raw params bytes.
    pub fn call(&self, params: &[u8]) -> Result<Value, String> {
        (self.dispatch)(params)
    }

    /// Runs the tool and encodes the exports-ABI envelope (`{"ok": ..}` or `{"error": ..}`).
    pub fn envelope(&self, params: &[u8]) -> Vec<u8> {
        (self.respond)(params)
    }

    /// The tool's schema document: `{"name", "description", "input", "output"}`.
    pub fn schema_document(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("name".into(), self.name.into());
        doc.insert("description".into(), self.description.into());
        doc.insert("input".into(), (self.input_schema)());
        doc.insert("output".into(), (self.output_schema)());
        Value::Object(doc)
    }
}

impl std::fmt::Debug for ToolDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolDef")
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// The document `hanzo_schema` returns for a module exporting `tools`: the first (default)
/// tool's document at the top level, plus `"functions"` holding every tool's document, so
/// hosts that only know the single-tool shape still read it.
pub fn schema_document(tools: &[&ToolDef]) -> Value {
    let mut doc = match tools.first() {
        Some(first) => first.schema_document(),
        None => Value::Object(Map::new()),
    };
    let functions = tools.iter().map(|t| t.schema_document()).collect();
    if let Value::Object(map) = &mut doc {
        map.insert("functions".into(), Value::Array(functions));
    }
    doc
}

/// Picks the tool to run for a requested function name.
///
/// No name means `run`. `run` names the tool called `run`, or, when there is none, the first
/// tool: the node passes `run` when the user named no function, so a module whose tools have
/// other names still answers it.
pub fn select<'a>(tools: &[&'a ToolDef], function: Option<&str>) -> Result<&'a ToolDef, String> {
    let name = function.filter(|f| !f.is_empty()).unwrap_or("run");
    if let Some(tool) = tools.iter().find(|t| t.name == name) {
        return Ok(tool);
    }
    if name == "run" {
        return tools
            .first()
            .copied()
            .ok_or_else(|| "this module exports no tools".to_string());
    }
    let available: Vec<&str> = tools.iter().map(|t| t.name).collect();
    Err(format!(
        "unknown function `{name}`; available: {}",
        available.join(", ")
    ))
}

/// Encodes the exports-ABI envelope for a tool result.
pub fn envelope(result: Result<Value, String>) -> Vec<u8> {
    match result {
        Ok(output) => ok_envelope(&output, 0),
        Err(message) => error_envelope(&message),
    }
}

/// Bytes reserved for an output before it is written, at most: enough that a typical small
/// output is written without the buffer growing, never so much that a tool given large
/// params and answering little holds a second copy of their size (the guest's memory limit
/// counts it).
const PRESIZE_MAX: usize = 4096;

/// `{"ok": output}`, written straight from the output's own `Serialize`, in one buffer
/// presized for about `size_hint` bytes of output (the params' length is a good guess for
/// the many tools that answer about what they were given).
///
/// Going through a `serde_json::Value` first, as this did once, built the whole output
/// twice over: a tree, then its text. An output that cannot be written as JSON (a map
/// with non-string keys) answers `{"error": "invalid output: ..."}`, as before. Keys are
/// written in the type's own order rather than sorted: the host parses the envelope and
/// sorts them itself.
pub fn ok_envelope<T: Serialize + ?Sized>(output: &T, size_hint: usize) -> Vec<u8> {
    const OPEN: &[u8] = br#"{"ok":"#;
    let mut out = Vec::with_capacity(OPEN.len() + size_hint.min(PRESIZE_MAX) + 1);
    out.extend_from_slice(OPEN);
    match serde_json::to_writer(&mut out, output) {
        Ok(()) => {
            out.push(b'}');
            out
        }
        Err(e) => error_envelope(&invalid_output(&e)),
    }
}

/// `{"error": message}`.
pub fn error_envelope(message: &str) -> Vec<u8> {
    const OPEN: &[u8] = br#"{"error":"#;
    let mut out = Vec::with_capacity(OPEN.len() + message.len() + 3);
    out.extend_from_slice(OPEN);
    // Writing a `str` into a `Vec` cannot fail.
    serde_json::to_writer(&mut out, message).expect("a string always serialises");
    out.push(b'}');
    out
}

/// Parses raw params into the tool's input type.
///
/// Empty (or all-whitespace) input stands for "no params" and is read as `{}`, so a tool
/// invoked by hand with nothing on stdin behaves like one given an empty object.
pub fn parse_params<T: DeserializeOwned>(input: &[u8]) -> Result<T, String> {
    let input: &[u8] = if input.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        input
    };
    serde_json::from_slice(input).map_err(|e| format!("invalid params: {e}"))
}

/// Converts a tool's output into JSON.
pub fn to_output<T: Serialize + ?Sized>(output: &T) -> Result<Value, String> {
    serde_json::to_value(output).map_err(|e| invalid_output(&e))
}

/// The error of an output that has no JSON form, whichever way it was being written.
fn invalid_output(e: &serde_json::Error) -> String {
    format!("invalid output: {e}")
}

/// JSON Schema (draft 2020-12) of `T` as params are deserialised into it.
pub fn input_schema<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// JSON Schema (draft 2020-12) of `T` as outputs are serialised from it.
pub fn output_schema<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    struct AddParams {
        a: i64,
        b: i64,
    }

    #[derive(Serialize, JsonSchema)]
    struct Sum {
        sum: i64,
    }

    /// Adds two integers.
    ///
    /// Overflow is an error.
    #[crate::tool]
    fn add(params: AddParams) -> Result<Sum, String> {
        params
            .a
            .checked_add(params.b)
            .map(|sum| Sum { sum })
            .ok_or_else(|| "overflow".to_string())
    }

    /// Returns params unchanged.
    #[crate::tool]
    fn echo(params: Value) -> Value {
        params
    }

    #[crate::tool]
    fn r#type(params: Value) -> std::io::Result<String> {
        match params {
            Value::String(s) => Ok(s),
            _ => Err(std::io::Error::other("want a string")),
        }
    }

    fn tools() -> [&'static ToolDef; 3] {
        [&__hanzo_tool_add, &__hanzo_tool_echo, &__hanzo_tool_type]
    }

    fn envelope_json(tool: &ToolDef, params: &str) -> Value {
        serde_json::from_slice(&tool.envelope(params.as_bytes())).unwrap()
    }

    #[test]
    fn definition_carries_name_and_doc_comment() {
        assert_eq!(__hanzo_tool_add.name, "add");
        assert_eq!(
            __hanzo_tool_add.description,
            "Adds two integers.\n\nOverflow is an error."
        );
        // Raw identifiers lose their `r#`: the export name is what hosts call.
        assert_eq!(__hanzo_tool_type.name, "type");
        assert_eq!(__hanzo_tool_type.description, "");
    }

    #[test]
    fn ok_and_error_envelopes() {
        let add = &__hanzo_tool_add;
        assert_eq!(envelope_json(add, r#"{"a":2,"b":3}"#), json!({"ok": {"sum": 5}}));
        assert_eq!(
            envelope_json(add, &format!(r#"{{"a":{},"b":1}}"#, i64::MAX)),
            json!({"error": "overflow"})
        );
        assert_eq!(
            envelope_json(&__hanzo_tool_type, "42"),
            json!({"error": "want a string"})
        );
        assert_eq!(envelope_json(&__hanzo_tool_type, r#""x""#), json!({"ok": "x"}));
        // The envelope is compact JSON: hosts may compare bytes.
        assert_eq!(
            __hanzo_tool_echo.envelope(br#"{ "k" : [1, 2] }"#),
            br#"{"ok":{"k":[1,2]}}"#
        );
    }

    #[test]
    fn invalid_params_are_reported_not_panicked() {
        let add = &__hanzo_tool_add;
        let err = add.call(b"{not json").unwrap_err();
        assert!(err.starts_with("invalid params: "), "{err}");
        let err = add.call(br#"{"a":1}"#).unwrap_err();
        assert!(err.contains("missing field `b`"), "{err}");
        let err = add.call(b"\xff\xfe").unwrap_err();
        assert!(err.starts_with("invalid params: "), "{err}");
    }

    #[test]
    fn empty_params_mean_empty_object() {
        assert_eq!(__hanzo_tool_echo.call(b"").unwrap(), json!({}));
        assert_eq!(__hanzo_tool_echo.call(b" \n").unwrap(), json!({}));
        assert_eq!(__hanzo_tool_echo.call(b"null").unwrap(), Value::Null);
    }

    #[test]
    fn schema_documents() {
        let doc = __hanzo_tool_add.schema_document();
        assert_eq!(doc["name"], "add");
        assert_eq!(doc["input"]["type"], "object");
        assert_eq!(doc["input"]["required"], json!(["a", "b"]));
        // The output schema is `O`'s, not `Result<O, E>`'s.
        assert_eq!(doc["output"]["title"], "Sum");
        assert_eq!(doc["output"]["properties"]["sum"]["type"], "integer");
        // `Value` accepts anything: a schema without constraints.
        let any = &__hanzo_tool_echo.schema_document()["input"];
        assert_eq!(any["title"], "AnyValue");
        assert!(any.get("type").is_none(), "{any}");

        let all = schema_document(&tools());
        assert_eq!(all["name"], "add");
        let names: Vec<&str> = all["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["add", "echo", "type"]);
        assert_eq!(schema_document(&[]), json!({"functions": []}));
    }

    #[test]
    fn selection_rules() {
        let tools = tools();
        assert_eq!(select(&tools, Some("echo")).unwrap().name, "echo");
        // No tool is called `run`: both "unset" and "run" mean the first tool.
        assert_eq!(select(&tools, None).unwrap().name, "add");
        assert_eq!(select(&tools, Some("")).unwrap().name, "add");
        assert_eq!(select(&tools, Some("run")).unwrap().name, "add");
        assert_eq!(
            select(&tools, Some("nope")).unwrap_err(),
            "unknown function `nope`; available: add, echo, type"
        );
        assert!(select(&[], None).is_err());
    }

    #[test]
    fn a_tool_named_run_is_the_default() {
        /// The real `run`.
        #[crate::tool]
        fn run(_params: Value) -> &'static str {
            "run"
        }
        let tools = [&__hanzo_tool_add, &__hanzo_tool_run];
        assert_eq!(select(&tools, None).unwrap().name, "run");
        assert_eq!(select(&tools, Some("run")).unwrap().name, "run");
    }

    #[test]
    fn the_envelope_is_written_from_the_output_type_and_agrees_with_dispatch() {
        /// Fields out of alphabetical order, a map with integer keys.
        #[derive(Serialize, JsonSchema)]
        struct Out {
            zeta: u8,
            alpha: std::collections::BTreeMap<u8, &'static str>,
        }
        #[crate::tool]
        fn typed(_params: Value) -> Out {
            Out {
                zeta: 1,
                alpha: [(2, "two")].into(),
            }
        }
        #[crate::tool]
        fn bad_output(_params: Value) -> std::collections::BTreeMap<(u8, u8), u8> {
            [((1, 2), 3)].into()
        }
        // Written straight from the type: its own field order, integer keys as strings.
        assert_eq!(
            __hanzo_tool_typed.envelope(b"{}"),
            br#"{"ok":{"zeta":1,"alpha":{"2":"two"}}}"#
        );
        // An output that is not JSON fails as it did through a `Value`.
        let bad = envelope_json(&__hanzo_tool_bad_output, "{}");
        assert!(
            bad["error"].as_str().unwrap().starts_with("invalid output: "),
            "{bad}"
        );
        // Whatever the path, the envelope holds what `call` returns.
        let big = format!(r#"{{"s":"{}","n":[1.5,-2,1e300]}}"#, "x".repeat(3 * PRESIZE_MAX));
        let cases: [(&ToolDef, &str); 8] = [
            (&__hanzo_tool_add, r#"{"a":2,"b":3}"#),
            (&__hanzo_tool_add, r#"{"a":1}"#),
            (&__hanzo_tool_add, "{not json"),
            (&__hanzo_tool_echo, r#"{"b":[1,{"c":"\u00e9\n"}],"a":null}"#),
            (&__hanzo_tool_echo, &big),
            (&__hanzo_tool_echo, ""),
            (&__hanzo_tool_type, r#""x""#),
            (&__hanzo_tool_typed, "{}"),
        ];
        for (tool, params) in cases {
            let expected = match tool.call(params.as_bytes()) {
                Ok(output) => json!({ "ok": output }),
                Err(message) => json!({ "error": message }),
            };
            assert_eq!(envelope_json(tool, params), expected, "{} {params}", tool.name);
        }
    }

    #[test]
    fn unserialisable_output_is_an_error() {
        use std::collections::BTreeMap;
        let mut map = BTreeMap::new();
        map.insert((1, 2), "tuple keys are not JSON object keys");
        let err = to_output(&map).unwrap_err();
        assert!(err.starts_with("invalid output: "), "{err}");
    }
}
