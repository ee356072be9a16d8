//! `base64`: encode and decode.

use super::{BuiltinError, invalid, parse};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::{Value, json};

/// An engine that writes padding when `pad` and accepts input with or without it.
pub(super) fn engine(url_safe: bool, pad: bool) -> GeneralPurpose {
    let alphabet = if url_safe {
        &base64::alphabet::URL_SAFE
    } else {
        &base64::alphabet::STANDARD
    };
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(pad)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// A decoder that accepts padded and unpadded input.
pub(super) fn lenient(url_safe: bool) -> GeneralPurpose {
    engine(url_safe, true)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    encode: Option<String>,
    decode: Option<String>,
    #[serde(default)]
    url_safe: bool,
    #[serde(default = "yes")]
    padding: bool,
}

fn yes() -> bool {
    true
}

pub(super) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "encode": {"type": "string", "description": "Text to encode (as UTF-8)."},
            "decode": {"type": "string", "description": "Base64 to decode; padding optional, surrounding whitespace ignored."},
            "url_safe": {"type": "boolean", "default": false, "description": "Use the URL-safe alphabet (- and _)."},
            "padding": {"type": "boolean", "default": true, "description": "Pad encoded output with '='."}
        },
        "oneOf": [{"required": ["encode"]}, {"required": ["decode"]}],
        "additionalProperties": false
    })
}

pub(super) fn run(params: Value) -> Result<Value, BuiltinError> {
    let p: Params = parse(params)?;
    match (p.encode, p.decode) {
        (Some(text), None) => Ok(json!({
            "base64": engine(p.url_safe, p.padding).encode(text.as_bytes()),
            "bytes": text.len(),
        })),
        (None, Some(b64)) => {
            let data = lenient(p.url_safe)
                .decode(b64.trim())
                .map_err(|e| invalid(format!("base64: {e}")))?;
            Ok(json!({
                "bytes": data.len(),
                "hex": hex::encode(&data),
                // Binary data is not text; say so rather than replace bytes.
                "text": String::from_utf8(data).ok(),
            }))
        }
        _ => Err(invalid("give exactly one of 'encode' and 'decode'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_alphabets() {
        let e = run(json!({"encode": "héllo?>"})).unwrap();
        assert_eq!(e["base64"], "aMOpbGxvPz4=");
        let u = run(json!({"encode": "héllo?>", "url_safe": true, "padding": false})).unwrap();
        assert_eq!(u["base64"], "aMOpbGxvPz4");
        let d = run(json!({"decode": "aMOpbGxvPz4"})).unwrap();
        assert_eq!(d["text"], "héllo?>");
        let bin = run(json!({"decode": "/w=="})).unwrap();
        assert_eq!(bin, json!({"bytes": 1, "hex": "ff", "text": null}));
        assert!(
            run(json!({"decode": "!!"}))
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        assert!(run(json!({})).is_err());
        assert!(run(json!({"encode": "a", "decode": "YQ=="})).is_err());
    }
}
