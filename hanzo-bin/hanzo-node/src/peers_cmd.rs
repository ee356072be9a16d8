//! `hanzo-node peers [--json]`: the peers a serving node knows (`GET /v1/peers`).

use crate::job_cmd::{Client, NodeArgs, cell, print_columns};
use serde_json::Value;
use std::path::Path;

pub async fn run(config: Option<&Path>, json: bool, node: NodeArgs) -> anyhow::Result<u8> {
    crate::job_cmd::report((|| {
        let client = Client::new(config, &node)?;
        let peers = client.call("GET", "/v1/peers", b"")?.json()?;
        if json {
            // The contract's shape (CONTRACTS §7): the same array the API returns.
            println!("{}", serde_json::to_string(&peers)?);
            return Ok(0);
        }
        let rows: Vec<Vec<String>> = peers
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(row)
            .collect();
        if rows.is_empty() {
            eprintln!("no peers (is [network] enabled on the node, with a bootstrap address or mDNS?)");
            return Ok(0);
        }
        print_columns(
            &[
                "PEER",
                "RUNTIMES",
                "FREE SLOTS",
                "FREE MEMORY",
                "QUEUE",
                "LATENCY",
                "REPUTATION",
                "LAST SEEN",
                "ADDRESS",
            ],
            &rows,
        );
        Ok(0)
    })())
}

/// A cell of text a peer chose (its advert): control characters shown escaped, so
/// that no peer can write escape sequences to the operator's terminal.
fn safe(v: &Value) -> String {
    crate::escape::bytes(cell(v).as_bytes())
}

fn row(p: &Value) -> Vec<String> {
    let r = &p["resources"];
    let runtimes: Vec<String> = p["runtimes"]
        .as_array()
        .map(|a| a.iter().map(safe).collect())
        .unwrap_or_default();
    let free_slots = match (r["free"]["slots"].as_u64(), r["capacity"]["slots"].as_u64()) {
        (Some(f), Some(c)) if c > 0 => format!("{f}/{c}"),
        _ => "-".into(),
    };
    vec![
        cell(&p["peer_id"]),
        if runtimes.is_empty() {
            "-".into()
        } else {
            runtimes.join(",")
        },
        free_slots,
        r["free"]["memory_mb"]
            .as_u64()
            .map_or("-".into(), |m| format!("{m} MiB")),
        cell(&r["queue_depth"]),
        p["latency_ms"]
            .as_f64()
            .map_or("-".into(), |ms| format!("{ms:.1} ms")),
        p["reputation"].as_f64().map_or("-".into(), |r| format!("{r:.2}")),
        cell(&p["last_seen"]),
        p["addrs"]
            .as_array()
            .and_then(|a| a.first())
            .map_or("-".into(), safe),
    ]
}
