//! `hanzo-node ledger [--json]`: what a serving node earned from and owes to each peer
//! (`GET /v1/ledger`), with each peer's record in its verified jobs.

use crate::job_cmd::{Client, NodeArgs, cell, print_columns};
use serde_json::Value;
use std::path::Path;

pub async fn run(config: Option<&Path>, json: bool, node: NodeArgs) -> anyhow::Result<u8> {
    crate::job_cmd::report((|| {
        let client = Client::new(config, &node)?;
        let ledger = client.call("GET", "/v1/ledger", b"")?.json()?;
        if json {
            println!("{}", serde_json::to_string(&ledger)?);
            return Ok(0);
        }
        let rows: Vec<Vec<String>> = ledger["accounts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(row)
            .collect();
        if rows.is_empty() {
            eprintln!("no accounts yet (no job ran for a peer or on one)");
            return Ok(0);
        }
        print_columns(
            &[
                "PEER",
                "EARNED",
                "OWED",
                "RAN FOR IT",
                "REJECTED",
                "DISPUTED",
                "IT RAN",
                "AGREED",
                "DISSENTED",
                "LOST",
            ],
            &rows,
        );
        Ok(0)
    })())
}

fn row(a: &Value) -> Vec<String> {
    let v = &a["verification"];
    vec![
        crate::escape::bytes(cell(&a["peer_id"]).as_bytes()),
        cell(&a["earned"]),
        cell(&a["owed"]),
        cell(&a["jobs_run"]),
        cell(&a["jobs_rejected"]),
        cell(&a["disputed"]),
        cell(&a["jobs_placed"]),
        cell(&v["agreements"]),
        cell(&v["dissents"]),
        cell(&v["lost"]),
    ]
}
