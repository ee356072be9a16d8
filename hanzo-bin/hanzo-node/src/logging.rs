//! The node's own log lines: `tracing` events from every crate, written to stderr by
//! one subscriber installed here (the libraries only emit).
//!
//! - Filtering is `RUST_LOG`'s syntax (`info`, `hanzo_api=debug,warn`); when `RUST_LOG`
//!   is unset, `-v`/`-q` move the level of the node's own crates from the command's
//!   default (info for `serve`, warn for one-shot commands, whose stderr is for people
//!   and for the tool's logs), and dependencies stay at warn until `-vv`.
//! - The format is `text` (a timestamp, the level, the target, the message and its
//!   fields) or `json` (one object a line: `timestamp`, `level`, `target`, `fields`
//!   flattened), from `--log-format`, else `[node] log_format`.
//!
//! The contract's stderr lines (`error: ...`, the tool's escaped logs) are written
//! directly, never through here: a log filter must not hide an error.

use hanzo_compute::ComputeError;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The node's crates, whose level `-v`/`-q` moves.
const OWN_CRATES: &[&str] = &[
    "hanzo_node",
    "hanzo_api",
    "hanzo_compute",
    "hanzo_scheduler",
    "hanzo_jobstore",
    "hanzo_wasm_runtime",
    "hanzo_docker_runtime",
    "hanzo_k8s_runtime",
    "hanzo_sandbox",
    "hanzo_deno_runtime",
    "hanzo_python_runtime",
    "hanzo_go_runtime",
    "hanzo_mcp",
    "hanzo_native_runtime",
    "hanzo_network",
    "hanzo_placement",
];

/// How the log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: `2026-12-06T01:02:03.456Z  INFO hanzo_api: request method=GET ...`.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

impl std::str::FromStr for Format {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(ComputeError::invalid(format!(
                "node.log_format: invalid value '{other}' (expected text or json)"
            ))),
        }
    }
}

/// The filter directives when `RUST_LOG` is not set: `default` is the command's level
/// for the node's crates (0 = error .. 4 = trace), moved by `verbose - quiet`.
pub fn directives(default: i32, verbose: u8, quiet: u8) -> String {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let own = (default + i32::from(verbose) - i32::from(quiet)).clamp(0, 4) as usize;
    // Dependencies (hyper, kube, bollard) say little worth reading until asked twice.
    let deps = if verbose >= 2 { own.clamp(1, 2) } else { own.min(1) };
    let mut d = vec![LEVELS[deps].to_string()];
    d.extend(OWN_CRATES.iter().map(|c| format!("{c}={}", LEVELS[own])));
    // rmcp logs an MCP server's misbehaviour (a broken pipe, a flood) as errors of
    // its own; the job's error already says what the server did.
    if verbose < 2 {
        d.push("rmcp=off".into());
    }
    d.join(",")
}

/// Installs the subscriber. `RUST_LOG` wins over `-v`/`-q` when it is set; a malformed
/// one is a usage error naming it.
pub fn init(format: Format, default: i32, verbose: u8, quiet: u8) -> Result<(), ComputeError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::builder()
            .parse(&spec)
            .map_err(|e| ComputeError::invalid(format!("RUST_LOG: invalid filter '{spec}': {e}")))?,
        _ => EnvFilter::new(directives(default, verbose, quiet)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        Format::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    // Only fails when a subscriber is already set (never, in this binary).
    installed.map_err(ComputeError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_moves_the_nodes_crates_and_dependencies_follow_late() {
        assert!(directives(2, 0, 0).starts_with("warn,hanzo_node=info,"));
        assert!(directives(1, 0, 0).starts_with("warn,hanzo_node=warn,"));
        assert!(directives(2, 1, 0).starts_with("warn,hanzo_node=debug,"));
        assert!(directives(2, 2, 0).starts_with("info,hanzo_node=trace,"));
        assert!(directives(2, 0, 1).starts_with("warn,hanzo_node=warn,"));
        assert!(directives(2, 0, 5).starts_with("error,hanzo_node=error,"));
        for c in OWN_CRATES {
            assert!(directives(2, 0, 0).contains(&format!("{c}=info")));
        }
    }
}
