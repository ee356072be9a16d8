//! `hanzo-node cache ls | prune`: the runtimes' caches under the data directory
//! (Python environments, Go builds, stored native tools) against `[node] cache_max_mb`.
//! Neither starts a runtime: the layout is each runtime's `cache_pools`, and a prune
//! only removes entries no job holds a lease on, so both are safe beside a running node.

use crate::node::{cache_pools, load_config};
use clap::Subcommand;
use hanzo_compute::cache::{Cache, Entry, PruneReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// `hanzo-node cache ...`
#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Sizes per runtime, and the total against node.cache_max_mb.
    Ls {
        /// Print JSON (with every entry) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove least recently used entries until the total fits node.cache_max_mb.
    Prune {
        /// Remove every entry that no job is using, whatever the quota.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Option<&Path>, cmd: CacheCmd) -> anyhow::Result<u8> {
    let config = load_config(config)?;
    let cache = Arc::new(Cache::new(
        cache_pools(&config.node.data_dir),
        config.node.cache_max_mb,
    ));
    match cmd {
        CacheCmd::Ls { json } => {
            let c = cache.clone();
            let entries = tokio::task::spawn_blocking(move || c.scan()).await?;
            ls(&cache, &entries, json)
        }
        CacheCmd::Prune { all, json } => {
            let c = cache.clone();
            let report = tokio::task::spawn_blocking(move || match (all, c.budget()) {
                (true, _) => Some(c.prune(0)),
                (false, 0) => None,
                (false, budget) => Some(c.prune(budget)),
            })
            .await?;
            prune(&cache, report, json)
        }
    }
}

fn ls(cache: &Cache, entries: &[Entry], json: bool) -> anyhow::Result<u8> {
    // Every runtime with a pool, also when it has no entries yet.
    let mut per: BTreeMap<String, (u64, u64)> = cache
        .pools()
        .iter()
        .map(|p| (p.runtime.name().to_string(), (0, 0)))
        .collect();
    for e in entries {
        let slot = per.entry(e.runtime.name().to_string()).or_default();
        slot.0 += 1;
        slot.1 += e.bytes;
    }
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    if json {
        let runtimes: serde_json::Map<String, serde_json::Value> = per
            .iter()
            .map(|(k, (n, b))| (k.clone(), serde_json::json!({"entries": n, "bytes": b})))
            .collect();
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "runtime": e.runtime.name(),
                    "path": e.path,
                    "bytes": e.bytes,
                    "last_used_unix": e
                        .last_used
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                })
            })
            .collect();
        let out = serde_json::json!({
            "quota_bytes": cache.budget(),
            "total_bytes": total,
            "runtimes": runtimes,
            "entries": list,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("{:<8} {:>8} {:>12}", "RUNTIME", "ENTRIES", "SIZE");
    for (rt, (n, b)) in &per {
        println!("{rt:<8} {n:>8} {:>12}", size(*b));
    }
    let quota = match cache.budget() {
        0 => "unbounded".to_string(),
        b => format!("of {}", size(b)),
    };
    println!(
        "{:<8} {:>8} {:>12} {quota} (node.cache_max_mb)",
        "total",
        entries.len(),
        size(total)
    );
    Ok(0)
}

fn prune(cache: &Cache, report: Option<PruneReport>, json: bool) -> anyhow::Result<u8> {
    let Some(r) = report else {
        if json {
            println!("{}", serde_json::json!({"quota_bytes": 0, "removed": []}));
        } else {
            eprintln!("node.cache_max_mb is 0 (unbounded): nothing to prune; use --all to empty the caches");
        }
        return Ok(0);
    };
    if json {
        let removed: Vec<serde_json::Value> = r
            .removed
            .iter()
            .map(|e| serde_json::json!({"runtime": e.runtime.name(), "path": e.path, "bytes": e.bytes}))
            .collect();
        let in_use: Vec<&Path> = r.in_use.iter().map(|e| e.path.as_path()).collect();
        let out = serde_json::json!({
            "quota_bytes": cache.budget(),
            "before_bytes": r.before_bytes,
            "after_bytes": r.after_bytes,
            "removed": removed,
            "in_use": in_use,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for e in &r.removed {
        println!(
            "removed  {:<7} {:>10}  {}",
            e.runtime.name(),
            size(e.bytes),
            e.path.display()
        );
    }
    println!(
        "{} removed, {} in use kept; {} -> {}",
        r.removed.len(),
        r.in_use.len(),
        size(r.before_bytes),
        size(r.after_bytes)
    );
    Ok(0)
}

/// `12.3 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
