//! `json-canonical`: the node's canonical JSON and its sha256.

use super::{BuiltinError, parse};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    document: Value,
}

pub(super) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"document": {"description": "Any JSON value."}},
        "required": ["document"],
        "additionalProperties": false
    })
}

pub(super) fn run(params: Value) -> Result<Value, BuiltinError> {
    let p: Params = parse(params)?;
    let canonical = hanzo_compute::canonical::to_string(&p.document);
    let sha256 = hex::encode(sha2::Sha256::digest(canonical.as_bytes()));
    Ok(json!({"canonical": canonical, "sha256": sha256}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_and_hashes_what_receipts_hash() {
        let doc = json!({"b": [1.0, {"z": null, "a": "é"}], "a": true});
        let out = run(json!({"document": doc})).unwrap();
        assert_eq!(out["canonical"], r#"{"a":true,"b":[1,{"a":"é","z":null}]}"#);
        assert_eq!(
            out["sha256"],
            hex::encode(sha2::Sha256::digest(hanzo_compute::canonical::to_vec(&doc)))
        );
        assert!(run(json!({})).unwrap_err().to_string().contains("document"));
    }
}
