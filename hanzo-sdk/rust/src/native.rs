//! The native cdylib ABI (every non-wasm target): the seed's `execute_tool` symbol.
//!
//! ```c
//! char *execute_tool(const uint8_t *params_ptr, size_t params_len);
//! void  hanzo_free_result(char *result);
//! ```
//!
//! `execute_tool` reads the UTF-8 JSON params at `[params_ptr, params_ptr + params_len)`,
//! runs the tool named by the `HANZO_FUNCTION` environment variable (default `run`, see
//! [`select`](crate::select)) and returns a NUL-terminated UTF-8 JSON envelope,
//! `{"ok": output}` or `{"error": "message"}`: the exports ABI's envelope (CONTRACTS §1b).
//! The string belongs to the library; give it back with `hanzo_free_result`, never `free`.
//!
//! hanzo-node loads such a library only inside a sandboxed helper process (its `native`
//! runtime), never into the node itself; the helper is also where a crash ends.
//!
//! Like [`abi`](crate::abi) on wasm, nothing here is `#[no_mangle]`: `export!` emits the two
//! symbols in the tool crate, outside binary targets.

use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::def::{ToolDef, envelope, select};

/// Body of the `execute_tool` export.
///
/// A panic is caught and answered as `{"error": "tool panicked: ..."}`: unwinding out of an
/// `extern "C"` function would abort the host process.
///
/// # Safety
/// `[ptr, ptr + len)` must be readable (or `len` 0, in which case `ptr` may be null).
pub unsafe fn execute_tool(tools: &[&ToolDef], ptr: *const u8, len: usize) -> *mut c_char {
    let input: &[u8] = if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    };
    let function = std::env::var("HANZO_FUNCTION").ok();
    let result = catch_unwind(AssertUnwindSafe(|| {
        select(tools, function.as_deref()).and_then(|tool| tool.call(input))
    }))
    .unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-string panic payload");
        Err(format!("tool panicked: {message}"))
    });
    into_c_string(envelope(result))
}

/// Hands `bytes` to the host as a NUL-terminated string.
fn into_c_string(bytes: Vec<u8>) -> *mut c_char {
    // serde_json escapes U+0000 as `\u0000`, so the envelope never holds a NUL byte; should
    // that ever change, answer with an error rather than a truncated document.
    CString::new(bytes)
        .unwrap_or_else(|_| {
            CString::new(envelope(Err("the envelope holds a NUL byte".into())))
                .expect("a fixed message has no NUL byte")
        })
        .into_raw()
}

/// Body of the `hanzo_free_result` export.
///
/// # Safety
/// `ptr` must be null or a pointer returned by this library's `execute_tool`, freed once.
pub unsafe fn free_result(ptr: *mut c_char) {
    if !ptr.is_null() {
        // SAFETY: the caller promises it came from `CString::into_raw` above.
        drop(unsafe { CString::from_raw(ptr) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::ffi::CStr;

    /// Doubles a number.
    #[crate::tool]
    fn double(n: f64) -> f64 {
        n * 2.0
    }

    #[crate::tool]
    fn boom(_params: Value) -> Value {
        panic!("on purpose")
    }

    fn call(tools: &[&ToolDef], params: &[u8]) -> Value {
        // SAFETY: a live slice; the result is freed below, once.
        unsafe {
            let p = execute_tool(tools, params.as_ptr(), params.len());
            let v = serde_json::from_slice(CStr::from_ptr(p).to_bytes()).unwrap();
            free_result(p);
            v
        }
    }

    #[test]
    fn envelopes_and_caught_panics() {
        // HANZO_FUNCTION is unset in the test process: the first tool answers.
        assert_eq!(call(&[&__hanzo_tool_double], b"21"), json!({"ok": 42.0}));
        let e = call(&[&__hanzo_tool_double], b"\"x\"");
        assert!(e["error"].as_str().unwrap().starts_with("invalid params"), "{e}");
        let e = call(&[&__hanzo_tool_boom], b"{}");
        assert_eq!(e, json!({"error": "tool panicked: on purpose"}));
        // SAFETY: null is allowed with length 0; freeing null is a no-op.
        unsafe {
            let p = execute_tool(&[&__hanzo_tool_double], std::ptr::null(), 0);
            let v: Value = serde_json::from_slice(CStr::from_ptr(p).to_bytes()).unwrap();
            assert!(v["error"].as_str().unwrap().starts_with("invalid params"), "{v}");
            free_result(p);
            free_result(std::ptr::null_mut());
        }
    }
}
