//! The node's built-in tools: small, genuinely useful functions compiled into the node's
//! binary. They still run like any other tool: in the tool-host helper, in the sandbox,
//! under every limit of the job (never in the node's own process), with `builtin:<name>`
//! as the SOURCE.

mod canonical;
mod encoding;
mod hash;
mod query;
mod uuid;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A built-in tool, as `hanzo-node runtimes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuiltinInfo {
    /// The name: run it as SOURCE `builtin:<name>`.
    pub name: &'static str,
    /// What it does, in a sentence or two.
    pub description: &'static str,
    /// JSON Schema (draft 2020-12) of its params.
    pub input_schema: Value,
}

/// Why a built-in produced no output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BuiltinError {
    /// The params do not fit the tool's schema, or a value in them is malformed (bad
    /// base64, a query that does not parse): the job's fault, exit code 2.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The tool ran and failed (e.g. no randomness available).
    #[error("{0}")]
    Failed(String),
}

type Call = fn(Value) -> Result<Value, BuiltinError>;

struct Builtin {
    name: &'static str,
    description: &'static str,
    schema: fn() -> Value,
    call: Call,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "hash",
        description: "SHA-2 digest (sha224, sha256, sha384, sha512, sha512-224, sha512-256) of text \
                      or base64 data, or its HMAC with a key; hex or base64 output.",
        schema: hash::schema,
        call: hash::run,
    },
    Builtin {
        name: "json-query",
        description: "Query a JSON document with a JSON Pointer (`/items/0/name`) or a path \
                      (`.items[*].name`, `..id`, `[\"a b\"]`, `[1:3]`, `[-1]`); returns every match.",
        schema: query::schema,
        call: query::run,
    },
    Builtin {
        name: "base64",
        description: "Encode text to base64 or decode base64 (standard or URL-safe alphabet, \
                      padded or not) to text and hex.",
        schema: encoding::schema,
        call: encoding::run,
    },
    Builtin {
        name: "json-canonical",
        description: "The canonical form (RFC 8785 style: sorted keys, no whitespace) of a JSON \
                      document and its sha256, as the node hashes params and outputs in receipts.",
        schema: canonical::schema,
        call: canonical::run,
    },
    Builtin {
        name: "uuid",
        description: "Random (version 4) UUIDs from the operating system's randomness.",
        schema: uuid::schema,
        call: uuid::run,
    },
];

/// Every built-in tool, with its description and params schema.
pub fn builtins() -> Vec<BuiltinInfo> {
    BUILTINS
        .iter()
        .map(|b| BuiltinInfo {
            name: b.name,
            description: b.description,
            input_schema: (b.schema)(),
        })
        .collect()
}

/// Whether `name` is a built-in tool.
pub(crate) fn exists(name: &str) -> bool {
    BUILTINS.iter().any(|b| b.name == name)
}

/// The names, for messages.
pub(crate) fn names() -> String {
    BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
}

/// Runs built-in `name` on raw params bytes (empty means `{}`). Called in the helper only.
pub(crate) fn call(name: &str, input: &[u8]) -> Result<Value, BuiltinError> {
    let b = BUILTINS.iter().find(|b| b.name == name).ok_or_else(|| {
        BuiltinError::InvalidParams(format!("unknown built-in tool '{name}' (built-ins: {})", names()))
    })?;
    let params: Value = if input.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(input).map_err(|e| BuiltinError::InvalidParams(format!("not JSON: {e}")))?
    };
    (b.call)(params)
}

/// Deserialises params into a tool's typed params.
fn parse<T: DeserializeOwned>(params: Value) -> Result<T, BuiltinError> {
    serde_json::from_value(params).map_err(|e| BuiltinError::InvalidParams(e.to_string()))
}

fn invalid(msg: impl Into<String>) -> BuiltinError {
    BuiltinError::InvalidParams(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_has_an_object_schema_and_rejects_junk() {
        let all = builtins();
        assert_eq!(all.len(), BUILTINS.len());
        for b in &all {
            assert_eq!(b.input_schema["type"], "object", "{}", b.name);
            assert!(!b.description.is_empty());
            let e = call(b.name, b"[1,2").unwrap_err();
            assert!(matches!(e, BuiltinError::InvalidParams(_)), "{}: {e:?}", b.name);
            let e = call(b.name, br#"{"no_such_field": 1}"#).unwrap_err();
            assert!(e.to_string().contains("no_such_field"), "{}: {e}", b.name);
        }
        assert!(
            call("nope", b"{}")
                .unwrap_err()
                .to_string()
                .contains("hash, json-query")
        );
    }
}
