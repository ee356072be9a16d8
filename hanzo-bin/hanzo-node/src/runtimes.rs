//! `hanzo-node runtimes`: each runtime, whether it is available, its version, and how
//! it honours each limit (CONTRACTS §2: never claim a limit that is not enforced).

use crate::node::Node;
use hanzo_compute::{LimitKind, RuntimeKind};
use std::path::Path;

pub async fn list(config: Option<&Path>, as_json: bool, verbose: bool) -> anyhow::Result<u8> {
    let node = Node::build(config, None, false).await?;
    let mut rows = Vec::new();
    for kind in RuntimeKind::ALL {
        let mut row = node
            .compute
            .runtime_report(kind, || node.unavailable_reason(kind))
            .await;
        if kind == RuntimeKind::Native {
            // The built-in tools, run as `hanzo-node run native builtin:<name>`.
            row["builtins"] = serde_json::to_value(hanzo_native_runtime::builtins())?;
        }
        rows.push(row);
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "runtimes": rows }))?
        );
        return Ok(0);
    }
    if !verbose {
        table(&rows);
        return Ok(0);
    }
    for row in &rows {
        let available = if row["available"] == true {
            "available"
        } else {
            "unavailable"
        };
        let version = row["version"].as_str().unwrap_or("-");
        println!(
            "{:<8} {:<12} {}",
            row["runtime"].as_str().unwrap_or("?"),
            available,
            version
        );
        if let Some(detail) = row["detail"].as_str() {
            println!("    {detail}");
        }
        if let Some(builtins) = row["builtins"].as_array() {
            println!("    built-in tools (SOURCE builtin:<name>):");
            for b in builtins {
                println!(
                    "      {:<16} {}",
                    b["name"].as_str().unwrap_or("?"),
                    b["description"].as_str().unwrap_or("")
                );
            }
        }
        let caps = &row["capabilities"];
        if caps.is_null() {
            continue;
        }
        println!("    isolation: {}", caps["isolation"].as_str().unwrap_or("-"));
        println!(
            "    network: {}  mounts: {}  deterministic profile: {}",
            yes_no(&caps["network"]),
            yes_no(&caps["mounts"]),
            yes_no(&caps["deterministic"])
        );
        if let Some(v) = row["verification"].as_str() {
            println!("    verification: {v}");
        }
        for kind in LimitKind::ALL {
            let l = &caps["limits"][kind.name()];
            println!(
                "    {:<18} {:<12} {}",
                kind.name(),
                l["support"].as_str().unwrap_or("?"),
                l["how"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}

/// One line a runtime: what a newcomer asks first (can I use it, how isolated is it,
/// which limits hold), and why not when it is unavailable.
fn table(rows: &[serde_json::Value]) {
    let mut lines = Vec::new();
    for row in rows {
        let caps = &row["capabilities"];
        let available = row["available"] == true;
        let enforced: Vec<&str> = LimitKind::ALL
            .into_iter()
            .filter(|k| caps["limits"][k.name()]["support"] == "enforced")
            .map(short_limit)
            .collect();
        let mut grants = Vec::new();
        if caps["network"] == true {
            grants.push("network");
        }
        if caps["mounts"] == true {
            grants.push("mounts");
        }
        if caps["deterministic"] == true {
            grants.push("deterministic");
        }
        let note = if available {
            String::new()
        } else {
            row["detail"].as_str().unwrap_or("").to_string()
        };
        lines.push(vec![
            row["runtime"].as_str().unwrap_or("?").to_string(),
            if available { "yes" } else { "no" }.to_string(),
            row["version"]
                .as_str()
                .map(without_parentheses)
                .unwrap_or("-".into()),
            match caps["isolation"].as_str() {
                Some(text) if available => short_isolation(text),
                _ => "-".into(),
            },
            if enforced.is_empty() {
                "-".into()
            } else {
                enforced.join(",")
            },
            if grants.is_empty() {
                "-".into()
            } else {
                grants.join(",")
            },
            note,
        ]);
    }
    crate::job_cmd::print_columns(
        &[
            "RUNTIME",
            "AVAILABLE",
            "VERSION",
            "ISOLATION",
            "LIMITS ENFORCED",
            "GRANTS",
            "NOTE",
        ],
        &lines,
    );
    println!("(hanzo-node runtimes -v: how each limit is enforced; --json: everything)");
}

/// The limit names, short enough for a column.
fn short_limit(k: LimitKind) -> &'static str {
    match k {
        LimitKind::CpuShares => "cpu",
        LimitKind::Memory => "mem",
        LimitKind::Disk => "disk",
        LimitKind::NetworkBandwidth => "bw",
        LimitKind::Timeout => "time",
        LimitKind::Fuel => "fuel",
        LimitKind::Output => "output",
        LimitKind::Processes => "pids",
        LimitKind::Stack => "stack",
        LimitKind::Steps => "steps",
    }
}

/// The isolation boundaries a runtime's sentence names, in a few words (the sentence
/// is in `-v`).
fn short_isolation(text: &str) -> String {
    let mut found: Vec<(usize, &str)> = [
        ("wasmtime sandbox", "wasmtime"),
        ("Linux container", "container"),
        ("bubblewrap", "bubblewrap"),
        ("plain process", "plain process, no filesystem isolation"),
    ]
    .into_iter()
    .filter_map(|(needle, label)| text.find(needle).map(|at| (at, label)))
    .collect();
    found.sort();
    let mut short: Vec<&str> = found.into_iter().map(|(_, l)| l).collect();
    if short.is_empty() {
        return text
            .split([';', '('])
            .next()
            .unwrap_or(text)
            .trim()
            .chars()
            .take(40)
            .collect();
    }
    short.dedup();
    let mut out = short.join(" | ");
    if text.contains("as nobody") {
        out.push_str(", as nobody");
    }
    out
}

/// `Python 3.11.7 (/usr/bin/python3), uv 0.13.9 (x86_64...)` → `Python 3.11.7, uv 0.13.9`.
fn without_parentheses(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
}

fn yes_no(v: &serde_json::Value) -> &'static str {
    if v == true { "yes" } else { "no" }
}
