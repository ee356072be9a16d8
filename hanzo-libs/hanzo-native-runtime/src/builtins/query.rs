//! `json-query`: JSON Pointer (RFC 6901) and a small path syntax.
//!
//! Path syntax (jq/JSONPath-like): an optional leading `$`, then steps:
//! `.name` or `["any key"]` (a member), `[N]` (an element; negative counts from the end),
//! `[a:b]` (a slice, either bound optional), `.*` or `[*]` (every element or member value),
//! and `..step` (the step applied to the value and all its descendants: `..id` finds every
//! `id` at any depth). A first bare name needs no dot (`items[0]`). `.` alone is the
//! document. A missing member or index matches nothing; it is not an error.

use super::{BuiltinError, invalid, parse};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    document: Value,
    query: String,
}

pub(super) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "document": {"description": "The JSON document to query."},
            "query": {
                "type": "string",
                "description": "A JSON Pointer ('' or starting with '/': '/items/0/name') or a path \
                                ('.items[*].name', '..id', '[\"a b\"]', '.list[1:3]', '.list[-1]', '.')."
            }
        },
        "required": ["document", "query"],
        "additionalProperties": false
    })
}

pub(super) fn run(params: Value) -> Result<Value, BuiltinError> {
    let p: Params = parse(params)?;
    let matches: Vec<Value> = if p.query.is_empty() || p.query.starts_with('/') {
        pointer(&p.document, &p.query)?.into_iter().cloned().collect()
    } else {
        let steps = parse_path(&p.query).map_err(|e| invalid(format!("query '{}': {e}", p.query)))?;
        evaluate(&p.document, &steps).into_iter().cloned().collect()
    };
    Ok(json!({"count": matches.len(), "matches": matches}))
}

/// RFC 6901, with its escapes checked (serde_json's `pointer` takes `~2` literally).
fn pointer<'a>(doc: &'a Value, ptr: &str) -> Result<Option<&'a Value>, BuiltinError> {
    let mut cur = doc;
    if ptr.is_empty() {
        return Ok(Some(cur));
    }
    for raw in ptr[1..].split('/') {
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '~' {
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => {
                        return Err(invalid(format!(
                            "JSON Pointer '{ptr}': '~' must be followed by 0 or 1"
                        )));
                    }
                }
            } else {
                token.push(c);
            }
        }
        let next = match cur {
            Value::Object(m) => m.get(&token),
            // RFC 6901: an array index is digits without a leading zero (or "-", past the end).
            Value::Array(a)
                if token == "0" || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit())) =>
            {
                token.parse::<usize>().ok().and_then(|i| a.get(i))
            }
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Wildcard,
    Recurse(Box<Step>),
}

fn parse_path(q: &str) -> Result<Vec<Step>, String> {
    let s: Vec<char> = q.trim().chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    if s.first() == Some(&'$') {
        i = 1;
    }
    if i == s.len() {
        return if i == 1 {
            Ok(steps)
        } else {
            Err("empty query".into())
        };
    }
    // `.` alone: the document.
    if s[i..] == ['.'] {
        return Ok(steps);
    }
    // A first bare name.
    if s[i] != '.' && s[i] != '[' {
        let (name, next) = name(&s, i)?;
        steps.push(Step::Key(name));
        i = next;
    }
    while i < s.len() {
        match s[i] {
            '.' if s.get(i + 1) == Some(&'.') => {
                let (step, next) = member_or_bracket(&s, i + 2)?;
                steps.push(Step::Recurse(Box::new(step)));
                i = next;
            }
            '.' => {
                let (step, next) = member_or_bracket(&s, i + 1)?;
                steps.push(step);
                i = next;
            }
            '[' => {
                let (step, next) = bracket(&s, i)?;
                steps.push(step);
                i = next;
            }
            c => return Err(format!("unexpected '{c}' at position {i}")),
        }
    }
    Ok(steps)
}

/// After a dot: `*`, a name, or a bracket (`..[0]`).
fn member_or_bracket(s: &[char], i: usize) -> Result<(Step, usize), String> {
    match s.get(i) {
        Some('*') => Ok((Step::Wildcard, i + 1)),
        Some('[') => bracket(s, i),
        Some(_) => name(s, i).map(|(n, next)| (Step::Key(n), next)),
        None => Err("a name must follow '.'".into()),
    }
}

fn name(s: &[char], i: usize) -> Result<(String, usize), String> {
    let end = (i..s.len())
        .find(|&j| matches!(s[j], '.' | '[' | ']'))
        .unwrap_or(s.len());
    if end == i {
        return Err(format!("a name is missing at position {i}"));
    }
    Ok((s[i..end].iter().collect(), end))
}

/// `[*]`, `["key"]`, `['key']`, `[N]`, `[a:b]`; `i` is at the `[`.
fn bracket(s: &[char], i: usize) -> Result<(Step, usize), String> {
    let start = i + 1;
    match s.get(start) {
        Some(q @ ('"' | '\'')) => {
            let mut key = String::new();
            let mut j = start + 1;
            loop {
                match s.get(j) {
                    None => return Err("unterminated string".into()),
                    Some('\\') => {
                        let c = s.get(j + 1).ok_or("unterminated string")?;
                        key.push(*c);
                        j += 2;
                    }
                    Some(c) if c == q => break,
                    Some(c) => {
                        key.push(*c);
                        j += 1;
                    }
                }
            }
            if s.get(j + 1) != Some(&']') {
                return Err(format!("expected ']' at position {}", j + 1));
            }
            Ok((Step::Key(key), j + 2))
        }
        _ => {
            let end = (start..s.len()).find(|&j| s[j] == ']').ok_or("missing ']'")?;
            let inner: String = s[start..end].iter().collect();
            let inner = inner.trim();
            let int = |t: &str| -> Result<Option<i64>, String> {
                let t = t.trim();
                if t.is_empty() {
                    Ok(None)
                } else {
                    t.parse().map(Some).map_err(|_| format!("'{t}' is not an index"))
                }
            };
            let step = if inner == "*" {
                Step::Wildcard
            } else if let Some((a, b)) = inner.split_once(':') {
                Step::Slice(int(a)?, int(b)?)
            } else {
                Step::Index(int(inner)?.ok_or("empty brackets")?)
            };
            Ok((step, end + 1))
        }
    }
}

fn evaluate<'a>(doc: &'a Value, steps: &[Step]) -> Vec<&'a Value> {
    let mut cur = vec![doc];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            apply(step, v, &mut next);
        }
        cur = next;
    }
    cur
}

fn resolve(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { len + i } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

fn apply<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) {
    match (step, v) {
        (Step::Key(k), Value::Object(m)) => out.extend(m.get(k)),
        (Step::Index(i), Value::Array(a)) => out.extend(resolve(*i, a.len()).map(|i| &a[i])),
        (Step::Slice(from, to), Value::Array(a)) => {
            let len = a.len() as i64;
            let clamp = |x: i64| (if x < 0 { len + x } else { x }).clamp(0, len) as usize;
            let from = from.map(clamp).unwrap_or(0);
            let to = to.map(clamp).unwrap_or(a.len());
            if from < to {
                out.extend(&a[from..to]);
            }
        }
        (Step::Wildcard, Value::Array(a)) => out.extend(a),
        (Step::Wildcard, Value::Object(m)) => out.extend(m.values()),
        (Step::Recurse(inner), _) => {
            let mut stack = vec![v];
            while let Some(node) = stack.pop() {
                apply(inner, node, out);
                // Push children in reverse so that matches come out in document order.
                match node {
                    Value::Array(a) => stack.extend(a.iter().rev()),
                    Value::Object(m) => stack.extend(m.values().rev()),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(doc: &Value, query: &str) -> Value {
        run(json!({"document": doc, "query": query})).unwrap()["matches"].clone()
    }

    #[test]
    fn paths_and_pointers() {
        let doc = json!({
            "items": [{"name": "a", "id": 1}, {"name": "b", "id": 2, "sub": {"id": 3}}, {"id": 4}],
            "a b": {"c/d": 5, "t~": 6},
        });
        assert_eq!(q(&doc, ".items[*].name"), json!(["a", "b"]));
        assert_eq!(q(&doc, "$.items[-1].id"), json!([4]));
        assert_eq!(q(&doc, "items[0]"), json!([{"name": "a", "id": 1}]));
        assert_eq!(q(&doc, ".items[1:].id"), json!([2, 4]));
        assert_eq!(q(&doc, "..id"), json!([1, 2, 3, 4]));
        assert_eq!(q(&doc, r#"["a b"]['c/d']"#), json!([5]));
        assert_eq!(q(&doc, ".items[9]"), json!([]));
        assert_eq!(q(&doc, ".").as_array().unwrap().len(), 1);
        assert_eq!(q(&doc, "/items/1/sub/id"), json!([3]));
        assert_eq!(q(&doc, "/a b/c~1d"), json!([5]));
        assert_eq!(q(&doc, "/a b/t~0"), json!([6]));
        assert_eq!(q(&doc, "/items/01"), json!([]));
        assert_eq!(q(&doc, "").as_array().unwrap()[0], doc);
        for bad in [".items[", ".items[x]", "..", ".a.", "/a~2", "[\"open", "a]"] {
            let e = run(json!({"document": doc, "query": bad})).unwrap_err();
            assert!(matches!(e, BuiltinError::InvalidParams(_)), "{bad}: {e:?}");
        }
    }
}
