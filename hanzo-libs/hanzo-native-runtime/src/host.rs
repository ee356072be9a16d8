//! The tool-host helper: the process, inside the sandbox, that loads a cdylib or runs a
//! built-in tool. The node never loads a tool library into itself: a library's constructors
//! and its `execute_tool` are arbitrary native code that could crash the node, corrupt its
//! memory or read its keys. Here they run in a throw-away process under every limit of the
//! job, and a crash is only that job's failure.
//!
//! Invocation: `<helper> [TOOL_HOST_SUBCOMMAND] cdylib <library>` or
//! `... builtin <name>`; params on stdin, `HANZO_FUNCTION` in the environment (the
//! sandbox's stdio contract). The helper itself follows CONTRACTS §1a, with one addition
//! the runtime relies on: exit code 2 means the job's input was bad (a library that cannot
//! be loaded or lacks `execute_tool`, an unknown built-in, params a built-in rejects).

use crate::builtins::{self, BuiltinError};
use serde_json::Value;
use std::ffi::{CStr, CString, OsString, c_char, c_void};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Exit code: success, the output is on stdout.
const OK: i32 = 0;
/// Exit code: the tool ran and failed.
const FAILED: i32 = 1;
/// Exit code: bad input (unloadable library, unknown built-in, rejected params).
pub(crate) const BAD_INPUT: i32 = 2;

/// `execute_tool(params_ptr, params_len) -> char*` (see the crate docs for the ABI).
type ExecuteTool = unsafe extern "C" fn(*const u8, usize) -> *mut c_char;
/// `hanzo_free_result(char*)`.
type FreeResult = unsafe extern "C" fn(*mut c_char);

/// Where the helper writes its one output document.
struct Output(std::fs::File);

impl Output {
    /// Stdout as it is (built-ins: no foreign code runs).
    fn stdout() -> Option<Output> {
        // SAFETY: fcntl on fd 1 has no memory effects; a failure is reported as -1.
        let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        // SAFETY: `fd` is a fresh descriptor we own.
        (fd >= 0).then(|| Output(unsafe { std::fs::File::from(OwnedFd::from_raw_fd(fd)) }))
    }

    /// Keeps a private copy of stdout and points fd 1 at stderr, so that whatever a
    /// library prints (`println!`, `printf`) lands in the job's logs instead of corrupting
    /// its output document. A hostile library can still find the copy; it only forges its
    /// own job's output, which it could return anyway.
    fn guarded() -> Option<Output> {
        let out = Output::stdout()?;
        // SAFETY: dup2 between two descriptors of this process.
        if unsafe { libc::dup2(2, 1) } < 0 {
            return None;
        }
        Some(out)
    }

    fn emit(mut self, result: Result<Value, (i32, String)>) -> i32 {
        let (doc, code) = match result {
            Ok(v) => (v, OK),
            Err((code, msg)) => {
                // The last stderr line is the message (§1a); keep it on one line.
                eprintln!("{}", msg.lines().collect::<Vec<_>>().join(" "));
                (serde_json::json!({ "error": msg }), code)
            }
        };
        let mut line = doc.to_string();
        line.push('\n');
        match self.0.write_all(line.as_bytes()).and_then(|()| self.0.flush()) {
            Ok(()) => code,
            Err(e) => {
                eprintln!("cannot write the output: {e}");
                FAILED
            }
        }
    }
}

fn usage() -> i32 {
    eprintln!("usage: hanzo-tool-host cdylib <library.so> | builtin <name> (params JSON on stdin)");
    BAD_INPUT
}

/// The tool-host helper's `main`: `args` are the arguments after the program name and
/// after [`TOOL_HOST_SUBCOMMAND`](crate::TOOL_HOST_SUBCOMMAND) when present, i.e.
/// `["cdylib", path]` or `["builtin", name]`. Reads params on stdin, writes the output
/// document on stdout, returns the exit code: 0 success, 1 tool failure, 2 bad input.
///
/// Meant to run only inside the sandbox, started by [`NativeRuntime`](crate::NativeRuntime);
/// the caller should `std::process::exit` with the result at once.
pub fn tool_host_main(args: Vec<OsString>) -> i32 {
    let args: Vec<OsString> = match args.first() {
        Some(a) if a.as_bytes() == crate::TOOL_HOST_SUBCOMMAND.as_bytes() => args[1..].to_vec(),
        _ => args,
    };
    let [mode, target] = args.as_slice() else {
        return usage();
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("cannot read params from stdin: {e}");
        return FAILED;
    }
    match mode.as_bytes() {
        b"builtin" => {
            let Some(out) = Output::stdout() else {
                eprintln!("no stdout");
                return FAILED;
            };
            let name = target.to_string_lossy();
            out.emit(builtins::call(&name, &input).map_err(|e| match e {
                BuiltinError::InvalidParams(_) => (BAD_INPUT, e.to_string()),
                BuiltinError::Failed(_) => (FAILED, e.to_string()),
            }))
        }
        b"cdylib" => {
            let Some(out) = Output::guarded() else {
                eprintln!("cannot set up stdout");
                return FAILED;
            };
            let result = run_cdylib(target, input);
            out.emit(result)
        }
        _ => usage(),
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: checked non-null above.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn symbol(lib: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `lib` is a live handle from dlopen; `name` is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// Loads the library, calls `execute_tool` once, and decodes its envelope.
fn run_cdylib(path: &OsString, mut params: Vec<u8>) -> Result<Value, (i32, String)> {
    let bad = |m: String| Err((BAD_INPUT, m));
    let Ok(cpath) = CString::new(path.as_bytes()) else {
        return bad("the library path holds a NUL byte".into());
    };
    // RTLD_NOW: an unresolved symbol is a load error now, not a crash mid-call.
    // SAFETY: loading runs the library's constructors: arbitrary code, which is exactly
    // why this happens in a sandboxed process of its own.
    let lib = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if lib.is_null() {
        return bad(format!("cannot load the library: {}", dlerror()));
    }
    let Some(execute) = symbol(lib, c"execute_tool") else {
        return bad(
            "the library does not export execute_tool(params_ptr, params_len) (see the native runtime's ABI)"
                .into(),
        );
    };
    // SAFETY: the ABI fixes the symbol's type; a library that lies about it is its own
    // job's crash, contained by this process.
    let execute: ExecuteTool = unsafe { std::mem::transmute::<*mut c_void, ExecuteTool>(execute) };
    let free: Option<FreeResult> = symbol(lib, c"hanzo_free_result")
        // SAFETY: as above.
        .map(|p| unsafe { std::mem::transmute::<*mut c_void, FreeResult>(p) });
    let len = params.len();
    // A NUL after the params (not counted in params_len) lets C code treat them as a string.
    params.push(0);
    // SAFETY: `params` holds `len` readable bytes (plus the NUL) and outlives the call.
    let ret = unsafe { execute(params.as_ptr(), len) };
    if ret.is_null() {
        return Err((FAILED, "execute_tool returned a null pointer".into()));
    }
    // SAFETY: the ABI promises a NUL-terminated string; one that is not ends this process
    // at worst (a fault reading past it), not the node.
    let envelope = unsafe { CStr::from_ptr(ret) }.to_bytes().to_vec();
    if let Some(free) = free {
        // SAFETY: `ret` came from this library's execute_tool and is freed once.
        unsafe { free(ret) };
    }
    decode_envelope(&envelope)
}

/// `{"ok": output}` → the output; `{"error": message}` → a tool failure; anything else is a
/// tool failure that says what was wrong.
fn decode_envelope(bytes: &[u8]) -> Result<Value, (i32, String)> {
    let invalid = |why: &str| {
        Err((
            FAILED,
            format!("execute_tool returned an invalid envelope: {why}"),
        ))
    };
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(bytes) else {
        return invalid("not a JSON object");
    };
    if m.len() != 1 {
        return invalid("expected exactly one key, \"ok\" or \"error\"");
    }
    if let Some(v) = m.remove("ok") {
        return Ok(v);
    }
    match m.remove("error") {
        Some(Value::String(s)) => Err((FAILED, s)),
        Some(other) => Err((FAILED, other.to_string())),
        None => invalid("expected exactly one key, \"ok\" or \"error\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(
            decode_envelope(br#"{"ok":{"a":1}}"#),
            Ok(serde_json::json!({"a": 1}))
        );
        assert_eq!(decode_envelope(br#"{"ok":null}"#), Ok(Value::Null));
        assert_eq!(
            decode_envelope(br#"{"error":"boom"}"#),
            Err((FAILED, "boom".into()))
        );
        assert_eq!(
            decode_envelope(br#"{"error":{"code":7}}"#),
            Err((FAILED, r#"{"code":7}"#.into()))
        );
        for bad in [
            &b"nope"[..],
            b"[]",
            b"{}",
            br#"{"ok":1,"error":"x"}"#,
            br#"{"result":1}"#,
        ] {
            let e = decode_envelope(bad).unwrap_err();
            assert_eq!(e.0, FAILED);
            assert!(e.1.contains("invalid envelope"), "{}", e.1);
        }
    }
}
