//! Where a job's params come from: `--params JSON`, `--params-file PATH`, `-` for
//! either meaning stdin, or, with neither flag, stdin when it is a pipe or a file
//! (`echo '{"n": 3}' | hanzo-node run ...`, `... < params.json`, as `docker run -i` and
//! wasmtime read it). Nothing else is read implicitly: not a terminal (a forgotten
//! `--params` must not hang the command), not a socket (what supervisors and Node's
//! `child_process` hand a child, often never closed), not /dev/null. An empty stdin
//! with neither flag means `{}`. A script that runs the CLI inside `while read ...; do`
//! or from a pipe it never closes should pass `--params` (or `< /dev/null`), as it
//! would for `ssh` or `docker run -i`.

use hanzo_compute::ComputeError;
use serde_json::{Value, json};
use std::io::{IsTerminal, Read};
use std::path::Path;

/// The most params the CLI reads, from a file or stdin: the node's own cap on a job
/// request is far below it; this only keeps a runaway pipe from filling memory.
const MAX_PARAMS_BYTES: u64 = 256 << 20;

/// The params the flags ask for.
pub fn resolve(params: Option<&str>, file: Option<&Path>) -> Result<Value, ComputeError> {
    match (params, file) {
        (Some("-"), _) => from_stdin("--params -", false),
        (Some(text), _) => parse(text, "--params"),
        (None, Some(p)) if p == Path::new("-") => from_stdin("--params-file -", false),
        (None, Some(path)) => {
            let what = format!("--params-file {}", path.display());
            let file = std::fs::File::open(path)
                .map_err(|e| ComputeError::invalid(format!("cannot read {what}: {e}")))?;
            let text = read_capped(file, &what)?;
            parse(&text, &what)
        }
        (None, None) if stdin_is_piped() => from_stdin("the params on stdin", true),
        (None, None) => Ok(json!({})),
    }
}

/// Whether stdin is a pipe or a regular file (what `|` and `<` give a command).
fn stdin_is_piped() -> bool {
    use std::os::unix::fs::FileTypeExt;
    if std::io::stdin().is_terminal() {
        return false;
    }
    // fstat(0) through /proc: the magic link resolves to the descriptor's own file.
    std::fs::metadata("/proc/self/fd/0").is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_file())
}

fn from_stdin(what: &str, empty_is_none: bool) -> Result<Value, ComputeError> {
    let text = read_capped(std::io::stdin().lock(), what)?;
    if text.trim().is_empty() {
        return if empty_is_none {
            Ok(json!({}))
        } else {
            Err(ComputeError::invalid(format!("{what}: stdin is empty")))
        };
    }
    parse(&text, what)
}

fn read_capped(r: impl Read, what: &str) -> Result<String, ComputeError> {
    let mut bytes = Vec::new();
    r.take(MAX_PARAMS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ComputeError::invalid(format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > MAX_PARAMS_BYTES {
        return Err(ComputeError::invalid(format!(
            "{what} is more than the {MAX_PARAMS_BYTES} bytes the CLI reads"
        )));
    }
    String::from_utf8(bytes).map_err(|_| ComputeError::invalid(format!("{what} is not UTF-8 text")))
}

fn parse(text: &str, what: &str) -> Result<Value, ComputeError> {
    serde_json::from_str(text).map_err(|e| ComputeError::invalid(format!("{what} is not valid JSON: {e}")))
}
