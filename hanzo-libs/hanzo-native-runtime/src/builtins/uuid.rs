//! `uuid`: random version 4 UUIDs.

use super::{BuiltinError, invalid, parse};
use serde::Deserialize;
use serde_json::{Value, json};

/// Enough for any batch a caller needs; more is a params error, not a memory test.
const MAX_COUNT: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    uppercase: bool,
}

fn one() -> usize {
    1
}

pub(super) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": 1},
            "uppercase": {"type": "boolean", "default": false}
        },
        "additionalProperties": false
    })
}

fn format(b: [u8; 16], upper: bool) -> String {
    let h = hex::encode(b);
    let s = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    if upper { s.to_uppercase() } else { s }
}

pub(super) fn run(params: Value) -> Result<Value, BuiltinError> {
    let p: Params = parse(params)?;
    if p.count == 0 || p.count > MAX_COUNT {
        return Err(invalid(format!("count must be between 1 and {MAX_COUNT}")));
    }
    let mut uuids = Vec::with_capacity(p.count);
    for _ in 0..p.count {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| BuiltinError::Failed(format!("no randomness: {e}")))?;
        b[6] = (b[6] & 0x0f) | 0x40; // version 4
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        uuids.push(format(b, p.uppercase));
    }
    Ok(json!({"uuids": uuids}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_variant_bits() {
        let out = run(json!({"count": 50})).unwrap();
        let all: Vec<&str> = out["uuids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(all.len(), 50);
        let unique: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(unique.len(), 50);
        for u in all {
            assert_eq!(u.len(), 36);
            assert_eq!(&u[14..15], "4");
            assert!("89ab".contains(&u[19..20]), "{u}");
        }
        assert!(run(json!({"count": 0})).is_err());
        assert!(run(json!({"count": MAX_COUNT + 1})).is_err());
    }
}
