//! Conformance tool for hanzo-node runtimes: each function exercises one part of the contract.
//!
//! | function | params | result |
//! |---|---|---|
//! | `run` | anything | the params, unchanged |
//! | `fail` | anything | always the error `requested failure` |
//! | `spin` | `{"iterations"?: u64}` | busy arithmetic; without `iterations`, forever (timeouts, fuel) |
//! | `grow` | `{"max_mb"?: u64, "chunk_kb"?: u64}` | allocates and keeps memory; without `max_mb`, until the memory limit |
//! | `big_output` | `{"bytes": N}` | a string of exactly N bytes (output caps) |
//! | `log` | `{"message": string}` | writes the message to stderr, returns `{"logged": true}` |
//! | `panic` | `{"message"?: string}` | panics: a trap in the WASM module, exit code 1 as a command |
//!
//! Built for `wasm32-wasip1`, `echo.wasm` is the exports-ABI module and `echo-cmd.wasm` the
//! WASI command; `HANZO_FUNCTION` picks the function of the command.

use std::hint::black_box;

use hanzo_tool::{Value, tool};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Returns its params unchanged.
#[tool]
pub fn run(params: Value) -> Value {
    params
}

/// Always fails with the error "requested failure".
#[tool]
pub fn fail(_params: Value) -> Result<Value, String> {
    Err("requested failure".to_string())
}

/// Params of `spin`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SpinParams {
    /// Loop iterations to run; absent means loop forever.
    #[serde(default)]
    pub iterations: Option<u64>,
}

/// Result of a bounded `spin`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SpinResult {
    /// Iterations completed.
    pub iterations: u64,
    /// The arithmetic's result, so the work is observable; 53 bits, so every JSON reader
    /// holds it exactly.
    pub checksum: u64,
}

/// Burns CPU: runs a multiply-xorshift loop `iterations` times, or forever when `iterations`
/// is absent (for wall-clock timeout and fuel tests).
#[tool]
pub fn spin(params: SpinParams) -> SpinResult {
    let limit = params.iterations.unwrap_or(u64::MAX);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut done: u64 = 0;
    // `done < u64::MAX` is the "forever" case: at one iteration per nanosecond it would take
    // centuries. `black_box` hides the state from the optimiser each round, so it can neither
    // fold the arithmetic nor prove the loop side-effect free and delete it.
    while done < limit {
        state = black_box(state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        state ^= state >> 29;
        done += 1;
    }
    SpinResult {
        iterations: done,
        checksum: state & ((1 << 53) - 1),
    }
}

/// Params of `grow`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct GrowParams {
    /// Stop after holding this many MiB; absent means never stop.
    #[serde(default)]
    pub max_mb: Option<u64>,
    /// Size of each allocation in KiB (default 1024).
    #[serde(default)]
    pub chunk_kb: Option<u64>,
}

/// Result of a bounded `grow`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GrowResult {
    /// Bytes held when the tool stopped.
    pub allocated_bytes: u64,
}

/// Allocates memory in chunks and keeps all of it alive, up to `max_mb` MiB or, without it,
/// until allocation fails (for memory-limit tests: under a limit the module traps).
#[tool]
pub fn grow(params: GrowParams) -> Result<GrowResult, String> {
    let chunk = params.chunk_kb.unwrap_or(1024).saturating_mul(1024);
    if chunk == 0 {
        return Err("chunk_kb must be at least 1".to_string());
    }
    let chunk = usize::try_from(chunk).map_err(|_| "chunk_kb is too large".to_string())?;
    let limit = params.max_mb.map_or(u64::MAX, |mb| mb.saturating_mul(1 << 20));
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut allocated: u64 = 0;
    while allocated < limit {
        // Non-zero bytes touch every page: an allocator cannot hand out lazily zeroed memory,
        // so native runs commit the memory too.
        let block = black_box(vec![0xa5_u8; chunk]);
        allocated += block.len() as u64;
        held.push(block);
    }
    black_box(&held);
    Ok(GrowResult {
        allocated_bytes: allocated,
    })
}

/// Params of `big_output`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BigOutputParams {
    /// Length of the returned string in bytes.
    pub bytes: u64,
}

/// Returns a string of exactly `bytes` ASCII bytes (for output-size limit tests).
#[tool]
pub fn big_output(params: BigOutputParams) -> Result<String, String> {
    let len = usize::try_from(params.bytes)
        .map_err(|_| format!("cannot build {} bytes on this platform", params.bytes))?;
    // A repeating alphabet rather than one letter, so a truncated output is recognisable.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    let mut text = String::new();
    text.try_reserve_exact(len)
        .map_err(|e| format!("cannot allocate {len} bytes: {e}"))?;
    text.extend(ALPHABET.iter().cycle().take(len).map(|&b| b as char));
    Ok(text)
}

/// Params of `log`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct LogParams {
    /// The line written to stderr.
    pub message: String,
}

/// Result of `log`.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Logged {
    /// Always true.
    pub logged: bool,
}

/// Writes `message` to stderr, the tool's log stream, and returns `{"logged": true}`.
#[tool]
pub fn log(params: LogParams) -> Logged {
    eprintln!("{}", params.message);
    Logged { logged: true }
}

/// Params of `panic`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct PanicParams {
    /// The panic message (default "requested panic").
    #[serde(default)]
    pub message: Option<String>,
}

/// Panics with `message`: on wasm the call traps (panics abort there); the stdio command
/// reports it as a failure with exit code 1.
#[tool]
pub fn panic(params: PanicParams) -> Logged {
    let message = params.message.as_deref().unwrap_or("requested panic");
    panic!("{message}")
}

hanzo_tool::export!(run, fail, spin, grow, big_output, log, panic);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, params: Value) -> Result<Value, String> {
        let tool = hanzo_tool::select(hanzo_tools(), Some(name))?;
        tool.call(params.to_string().as_bytes())
    }

    #[test]
    fn exports_in_order() {
        let names: Vec<&str> = hanzo_tools().iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            ["run", "fail", "spin", "grow", "big_output", "log", "panic"]
        );
    }

    #[test]
    fn echo_returns_params_unchanged() {
        let params = json!({"a": [1, 2.5, null, true], "b": {"c": "ü"}});
        assert_eq!(call("run", params.clone()).unwrap(), params);
        assert_eq!(call("run", json!("just a string")).unwrap(), "just a string");
        // The envelope wraps the same value.
        let envelope = hanzo_tools()[0].envelope(br#"{"x":1}"#);
        assert_eq!(envelope, br#"{"ok":{"x":1}}"#);
    }

    #[test]
    fn fail_fails() {
        assert_eq!(call("fail", json!({})).unwrap_err(), "requested failure");
        assert_eq!(
            __hanzo_tool_fail.envelope(b"{}"),
            br#"{"error":"requested failure"}"#
        );
    }

    #[test]
    fn bounded_spin_is_deterministic() {
        let a = call("spin", json!({"iterations": 1000})).unwrap();
        let b = call("spin", json!({"iterations": 1000})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["iterations"], 1000);
        assert_ne!(
            a["checksum"],
            call("spin", json!({"iterations": 999})).unwrap()["checksum"]
        );
        assert_eq!(call("spin", json!({"iterations": 0})).unwrap()["iterations"], 0);
    }

    #[test]
    fn bounded_grow_holds_what_it_reports() {
        let out = call("grow", json!({"max_mb": 3, "chunk_kb": 512})).unwrap();
        assert_eq!(out["allocated_bytes"], 3 << 20);
        assert!(call("grow", json!({"chunk_kb": 0})).is_err());
    }

    #[test]
    fn big_output_has_exact_length() {
        for n in [0_usize, 1, 26, 27, 100_000] {
            let out = call("big_output", json!({ "bytes": n })).unwrap();
            let text = out.as_str().unwrap();
            assert_eq!(text.len(), n);
            assert!(text.starts_with(&"abcdefghijklmnopqrstuvwxyz"[..n.min(26)]));
        }
        let err = call("big_output", json!({})).unwrap_err();
        assert!(err.contains("missing field `bytes`"), "{err}");
    }

    #[test]
    fn log_reports_logged() {
        assert_eq!(
            call("log", json!({"message": "hello from the test"})).unwrap(),
            json!({"logged": true})
        );
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn panic_panics() {
        let _ = call("panic", json!({"message": "boom"}));
    }

    #[test]
    fn schema_lists_every_function() {
        let doc = hanzo_tool::schema_document(hanzo_tools());
        assert_eq!(doc["name"], "run");
        assert_eq!(doc["description"], "Returns its params unchanged.");
        assert_eq!(doc["functions"].as_array().unwrap().len(), 7);
        assert_eq!(doc["functions"][4]["input"]["required"], json!(["bytes"]));
    }
}
