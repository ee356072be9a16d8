//! `hanzo-node runtimes`: each runtime, whether it is available, its version, and how
//! it honours each limit (CONTRACTS §2: never claim a limit that is not enforced).

use crate::node::Node;
use hanzo_compute::{LimitKind, RuntimeKind};
use std::path::Path;

pub async fn list(config: Option<&Path>, as_json: bool) -> anyhow::Result<u8> {
    let node = Node::build(config, None).await?;
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
        println!("{}", serde_json::to_string_pretty(&rows)?);
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

fn yes_no(v: &serde_json::Value) -> &'static str {
    if v == true { "yes" } else { "no" }
}
