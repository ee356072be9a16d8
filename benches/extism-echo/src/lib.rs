//! The Extism counterpart of `examples/rust/echo`'s `run`: it parses the JSON input
//! and serialises it back, so it does the same JSON work as our echo (which parses the
//! params into a `Value` and writes them into its `{"ok": ...}` envelope).

use extism_pdk::*;

/// Returns its JSON input unchanged, after a full parse.
#[plugin_fn]
pub fn run(input: String) -> FnResult<String> {
    let value: serde_json::Value = serde_json::from_str(&input)?;
    Ok(serde_json::to_string(&value)?)
}
