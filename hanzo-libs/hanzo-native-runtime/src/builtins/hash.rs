//! `hash`: SHA-2 digests and HMACs.

use super::{BuiltinError, invalid, parse};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
enum Algorithm {
    #[serde(rename = "sha224")]
    Sha224,
    #[default]
    #[serde(rename = "sha256")]
    Sha256,
    #[serde(rename = "sha384")]
    Sha384,
    #[serde(rename = "sha512")]
    Sha512,
    #[serde(rename = "sha512-224")]
    Sha512_224,
    #[serde(rename = "sha512-256")]
    Sha512_256,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha224 => "sha224",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha512_224 => "sha512-224",
            Algorithm::Sha512_256 => "sha512-256",
        }
    }

    fn digest(self, key: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
        // HMAC block sizes: 64 bytes for the SHA-256 family, 128 for the SHA-512 family.
        match (self, key) {
            (Algorithm::Sha224, None) => sha2::Sha224::digest(data).to_vec(),
            (Algorithm::Sha256, None) => sha2::Sha256::digest(data).to_vec(),
            (Algorithm::Sha384, None) => sha2::Sha384::digest(data).to_vec(),
            (Algorithm::Sha512, None) => sha2::Sha512::digest(data).to_vec(),
            (Algorithm::Sha512_224, None) => sha2::Sha512_224::digest(data).to_vec(),
            (Algorithm::Sha512_256, None) => sha2::Sha512_256::digest(data).to_vec(),
            (Algorithm::Sha224, Some(k)) => hmac::<sha2::Sha224>(64, k, data),
            (Algorithm::Sha256, Some(k)) => hmac::<sha2::Sha256>(64, k, data),
            (Algorithm::Sha384, Some(k)) => hmac::<sha2::Sha384>(128, k, data),
            (Algorithm::Sha512, Some(k)) => hmac::<sha2::Sha512>(128, k, data),
            (Algorithm::Sha512_224, Some(k)) => hmac::<sha2::Sha512_224>(128, k, data),
            (Algorithm::Sha512_256, Some(k)) => hmac::<sha2::Sha512_256>(128, k, data),
        }
    }
}

/// HMAC (RFC 2104) over a hash with the given block size.
fn hmac<D: Digest>(block: usize, key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > block {
        D::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(block, 0);
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = D::new().chain_update(pad(0x36)).chain_update(data).finalize();
    D::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    algorithm: Algorithm,
    text: Option<String>,
    base64: Option<String>,
    key: Option<String>,
    #[serde(default)]
    encoding: Encoding,
}

pub(super) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "algorithm": {"enum": ["sha224", "sha256", "sha384", "sha512", "sha512-224", "sha512-256"], "default": "sha256"},
            "text": {"type": "string", "description": "The data as text (hashed as UTF-8)."},
            "base64": {"type": "string", "description": "The data as base64 (standard alphabet, padding optional)."},
            "key": {"type": "string", "description": "An HMAC key (UTF-8): computes HMAC-<algorithm> instead of the plain digest."},
            "encoding": {"enum": ["hex", "base64"], "default": "hex"}
        },
        "oneOf": [{"required": ["text"]}, {"required": ["base64"]}],
        "additionalProperties": false
    })
}

pub(super) fn run(params: Value) -> Result<Value, BuiltinError> {
    let p: Params = parse(params)?;
    let data = match (p.text, p.base64) {
        (Some(t), None) => t.into_bytes(),
        (None, Some(b)) => super::encoding::lenient(false)
            .decode(b.trim())
            .map_err(|e| invalid(format!("base64: {e}")))?,
        _ => return Err(invalid("give exactly one of 'text' and 'base64'")),
    };
    let digest = p.algorithm.digest(p.key.as_deref().map(str::as_bytes), &data);
    let encoded = match p.encoding {
        Encoding::Hex => hex::encode(&digest),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(&digest),
    };
    Ok(json!({
        "algorithm": p.algorithm.name(),
        "hmac": p.key.is_some(),
        "digest": encoded,
        "bytes": data.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(params: Value) -> String {
        run(params).unwrap()["digest"].as_str().unwrap().to_string()
    }

    #[test]
    fn known_vectors() {
        // FIPS 180-2 "abc".
        assert_eq!(
            digest(json!({"text": "abc"})),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(digest(json!({"text": "abc", "algorithm": "sha512"})).starts_with("ddaf35a193617aba"));
        // RFC 4231 test case 2.
        assert_eq!(
            digest(json!({"text": "what do ya want for nothing?", "key": "Jefe"})),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(
            digest(json!({"text": "what do ya want for nothing?", "key": "Jefe", "algorithm": "sha512"}))
                .starts_with("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554")
        );
        // Base64 input and output.
        assert_eq!(
            digest(json!({"base64": "YWJj", "encoding": "base64"})),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }
}
