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
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

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
    // At the dependencies' level (a one-shot command's default, warn), the node's crates
    // need no directive of their own: sixteen fewer to parse at every start.
    if own != deps {
        d.extend(OWN_CRATES.iter().map(|c| format!("{c}={}", LEVELS[own])));
    }
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
    let filter: Box<dyn Filter<Registry> + Send + Sync> = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => FilterExt::boxed(
            EnvFilter::builder()
                .parse(&spec)
                .map_err(|e| ComputeError::invalid(format!("RUST_LOG: invalid filter '{spec}': {e}")))?,
        ),
        // Our own directives are targets and levels only, which `Targets` reads: every
        // one-shot command pays this at start, and EnvFilter's parser (built for span
        // and field directives) took ~75 µs of a `run` that is ~1.5 ms over the
        // process floor.
        _ => FilterExt::boxed(
            directives(default, verbose, quiet)
                .parse::<Targets>()
                .map_err(ComputeError::internal)?,
        ),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match format {
        Format::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        Format::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    // Only fails when a subscriber is already set (never, in this binary).
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(ComputeError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_directives_are_what_targets_reads() {
        use tracing::Level;
        // Whether `target` logs at `level` and not one step more verbose.
        fn at(t: &Targets, target: &str, level: Level, finer: Option<Level>) -> bool {
            t.would_enable(target, &level) && finer.is_none_or(|f| !t.would_enable(target, &f))
        }
        let t: Targets = directives(2, 0, 0).parse().unwrap();
        assert!(at(&t, "hanzo_node::serve", Level::INFO, Some(Level::DEBUG)));
        assert!(at(
            &t,
            "hanzo_wasm_runtime::exec",
            Level::INFO,
            Some(Level::DEBUG)
        ));
        assert!(at(&t, "hyper::proto", Level::WARN, Some(Level::INFO)));
        assert!(!t.would_enable("rmcp::service", &Level::ERROR));
        let t: Targets = directives(1, 0, 1).parse().unwrap();
        assert!(at(&t, "hanzo_api", Level::ERROR, Some(Level::WARN)));
        // A one-shot command's default: the node's crates at warn, as everything else.
        let t: Targets = directives(1, 0, 0).parse().unwrap();
        assert!(at(&t, "hanzo_wasm_runtime::exec", Level::WARN, Some(Level::INFO)));
        assert!(at(&t, "hyper::proto", Level::WARN, Some(Level::INFO)));
        assert!(!t.would_enable("rmcp::service", &Level::ERROR));
        let t: Targets = directives(2, 2, 0).parse().unwrap();
        assert!(at(&t, "hanzo_compute", Level::TRACE, None));
        assert!(at(&t, "bollard::docker", Level::INFO, Some(Level::DEBUG)));
        assert!(t.would_enable("rmcp::service", &Level::INFO));
    }

    #[test]
    fn verbosity_moves_the_nodes_crates_and_dependencies_follow_late() {
        assert!(directives(2, 0, 0).starts_with("warn,hanzo_node=info,"));
        assert_eq!(directives(1, 0, 0), "warn,rmcp=off");
        assert!(directives(2, 1, 0).starts_with("warn,hanzo_node=debug,"));
        assert!(directives(2, 2, 0).starts_with("info,hanzo_node=trace,"));
        assert_eq!(directives(2, 0, 1), "warn,rmcp=off");
        assert_eq!(directives(2, 0, 5), "error,rmcp=off");
        for c in OWN_CRATES {
            assert!(directives(2, 0, 0).contains(&format!("{c}=info")));
        }
    }
}
