//! The stdio contract: params on stdin, one JSON document on stdout, the exit code as verdict.

use std::io::{Read, Write};

use serde_json::{Map, Value};

use crate::def::{ToolDef, select};

/// What one stdio invocation prints and how it exits; [`stdio_main`] performs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioOutcome {
    /// The single line written to stdout (without the trailing newline).
    pub stdout: String,
    /// The line written to stderr, present on failure: hosts read the last stderr line as the
    /// error message.
    pub stderr: Option<String>,
    /// The process exit code: 0 for success, 1 for a tool failure.
    pub exit_code: i32,
}

impl StdioOutcome {
    fn failure(message: &str) -> Self {
        let mut map = Map::with_capacity(1);
        map.insert("error".into(), Value::String(message.to_string()));
        StdioOutcome {
            stdout: Value::Object(map).to_string(),
            stderr: Some(one_line(message)),
            exit_code: 1,
        }
    }
}

/// Runs the tool `function` selects (see [`select`](crate::select)) on `input` and reports
/// what the process should print.
///
/// Success prints the output as compact JSON, so it is one line. Failure prints
/// `{"error": message}` to stdout *and* the message as a stderr line: the node reads either,
/// and a person running the command by hand sees the reason.
pub fn run_stdio(tools: &[&ToolDef], function: Option<&str>, input: &[u8]) -> StdioOutcome {
    let result = select(tools, function).and_then(|tool| tool.call(input));
    match result {
        Ok(output) => StdioOutcome {
            stdout: output.to_string(),
            stderr: None,
            exit_code: 0,
        },
        Err(message) => StdioOutcome::failure(&message),
    }
}

/// Hosts take the *last* stderr line as the error message, so a multi-line message would be
/// cut to its tail; keep it whole on one line.
fn one_line(message: &str) -> String {
    message.lines().collect::<Vec<_>>().join(" ")
}

/// Performs the stdio contract for `tools` and exits; `export!`'s `hanzo_main` calls this.
pub fn stdio_main(tools: &[&ToolDef]) -> ! {
    install_panic_hook();
    let function = std::env::var("HANZO_FUNCTION").ok();
    let mut input = Vec::new();
    let outcome = match std::io::stdin().lock().read_to_end(&mut input) {
        Ok(_) => run_stdio(tools, function.as_deref(), &input),
        Err(e) => StdioOutcome::failure(&format!("cannot read params from stdin: {e}")),
    };
    emit(&outcome)
}

fn emit(outcome: &StdioOutcome) -> ! {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{}", outcome.stdout).and_then(|()| stdout.flush());
    if let Some(line) = &outcome.stderr {
        eprintln!("{line}");
    }
    match written {
        Ok(()) => std::process::exit(outcome.exit_code),
        Err(e) => {
            // The output is lost (closed pipe, full disk): success can no longer be claimed.
            eprintln!("cannot write output to stdout: {e}");
            std::process::exit(1)
        }
    }
}

/// A panicking tool is a failed tool: report it under the same contract as a returned error
/// instead of the default hook's multi-line text and exit code 101.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        emit(&StdioOutcome::failure(&panic_message(info)))
    }));
}

/// One-line description of a panic: `tool panicked at FILE:LINE: MESSAGE`.
pub(crate) fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    let location = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    one_line(&format!("tool panicked{location}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Doubles a number.
    #[crate::tool]
    fn double(n: f64) -> f64 {
        n * 2.0
    }

    #[crate::tool]
    fn fail(_params: Value) -> Result<(), String> {
        Err("first line\nsecond line".into())
    }

    const TOOLS: [&ToolDef; 2] = [&__hanzo_tool_double, &__hanzo_tool_fail];

    #[test]
    fn success_is_one_line_and_exit_zero() {
        let out = run_stdio(&TOOLS, Some("double"), b"21");
        assert_eq!(out.stdout, "42.0");
        assert_eq!(out.stderr, None);
        assert_eq!(out.exit_code, 0);
        // Unset and `run` both pick the first tool when none is called `run`.
        assert_eq!(run_stdio(&TOOLS, None, b"1").stdout, "2.0");
        assert_eq!(run_stdio(&TOOLS, Some("run"), b"1").stdout, "2.0");
    }

    #[test]
    fn failure_goes_to_stdout_and_last_stderr_line() {
        let out = run_stdio(&TOOLS, Some("fail"), b"{}");
        assert_eq!(out.exit_code, 1);
        let doc: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(doc, json!({"error": "first line\nsecond line"}));
        assert_eq!(out.stderr.as_deref(), Some("first line second line"));
        assert!(!out.stdout.contains('\n'));
    }

    #[test]
    fn unknown_function_lists_the_available_ones() {
        let out = run_stdio(&TOOLS, Some("triple"), b"1");
        assert_eq!(out.exit_code, 1);
        assert_eq!(
            out.stderr.as_deref(),
            Some("unknown function `triple`; available: double, fail")
        );
    }

    #[test]
    fn invalid_params() {
        let out = run_stdio(&TOOLS, Some("double"), br#""two""#);
        assert_eq!(out.exit_code, 1);
        assert!(
            out.stderr
                .unwrap()
                .starts_with("invalid params: invalid type: string"),
            "{}",
            out.stdout
        );
    }
}
