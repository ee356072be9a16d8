//! Canonical JSON (RFC 8785 style): object keys sorted by UTF-16 code units, no
//! insignificant whitespace, numbers in their shortest round-trip form.
//!
//! Hashes and signatures are taken over this form so that two nodes that serialise
//! the same value differently (key order, `1.0` vs `1`) still agree on the bytes.
//! One deliberate departure from RFC 8785: integers beyond 2^53 are written exactly
//! rather than rounded through an IEEE double, because rounding would make two
//! different inputs hash the same.

use serde_json::Value;

/// The canonical form of `value` as a string.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out);
    out
}

/// The canonical form of `value` as bytes.
pub fn to_vec(value: &Value) -> Vec<u8> {
    to_string(value).into_bytes()
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(f) = n.as_f64() {
                // ECMAScript Number.prototype.toString, as RFC 8785 requires.
                out.push_str(ryu_js::Buffer::new().format(f));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785 orders keys by their UTF-16 code units, which differs from
            // byte order only for characters outside the Basic Multilingual Plane.
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes exactly what RFC 8785 asks: '"', '\\', and control
    // characters (as \b \f \n \r \t or lower-case \u00xx), nothing else.
    out.push_str(&serde_json::to_string(s).expect("a string always serialises"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": [ true, null ], "c": {"z":1,"y":2} }"#).unwrap();
        assert_eq!(to_string(&v), r#"{"a":[true,null],"b":1,"c":{"y":2,"z":1}}"#);
    }

    #[test]
    fn numbers_take_their_shortest_form() {
        assert_eq!(to_string(&json!(1.0)), "1");
        assert_eq!(to_string(&json!(-0.0)), "0");
        assert_eq!(to_string(&json!(1e21)), "1e+21");
        assert_eq!(to_string(&json!(0.1)), "0.1");
        assert_eq!(to_string(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(to_string(&json!(-5)), "-5");
    }

    #[test]
    fn strings_escape_only_what_they_must() {
        assert_eq!(to_string(&json!("é\n\u{1f}\"/")), "\"é\\n\\u001f\\\"/\"");
    }

    #[test]
    fn keys_sort_by_utf16_units() {
        // U+1F600 (surrogates D83D..) sorts before U+FB01 in UTF-16, after it in UTF-8.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(to_string(&v), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }
}
