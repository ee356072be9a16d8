//! `hanzo-node cache ls | prune`: the runtimes' caches under the data directory
//! (Python environments, Go builds, stored native tools) against `[node] cache_max_mb`,
//! and the WASM module store against its own `[node] modules_max_mb`.
//! Neither starts a runtime: the layout is each runtime's `cache_pools`, and a prune
//! only removes entries no job holds a lease on, so both are safe beside a running node.
//! Modules are pruned as `module prune` does, down to their quota only: least recently
//! used first, never one a registered tool or an unfinished job names. `--all` empties
//! the caches, which are rebuilt on demand, but not the module store: modules are what
//! clients uploaded (and what receipts' `code_hash` names), so emptying it is
//! `module prune --all`, asked for by name.

use crate::node::{ModulePrune, cache_pools, load_config, open_module_store, prune_modules};
use clap::Subcommand;
use hanzo_compute::cache::{Cache, Entry, PruneReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// `hanzo-node cache ...`
#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Sizes per runtime and the total against node.cache_max_mb; the module store
    /// against node.modules_max_mb.
    Ls {
        /// Print JSON ({"caches": [...]}, and every entry) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove least recently used entries until the total fits node.cache_max_mb, and
    /// modules until the store fits node.modules_max_mb (never one a tool or an
    /// unfinished job names).
    Prune {
        /// Remove every cache entry that no job is using, whatever cache_max_mb says
        /// (modules still only down to their quota: `module prune --all` empties that).
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config_path: Option<&Path>, cmd: CacheCmd) -> anyhow::Result<u8> {
    let config = load_config(config_path)?;
    let cache = Arc::new(Cache::new(
        cache_pools(&config.node.data_dir),
        config.node.cache_max_mb,
    ));
    match cmd {
        CacheCmd::Ls { json } => {
            let c = cache.clone();
            let entries = tokio::task::spawn_blocking(move || c.scan()).await?;
            let store = open_module_store(config_path).await?;
            let modules = tokio::task::spawn_blocking(move || {
                let listed = store.modules();
                (listed.len(), store.usage(), store.quota())
            })
            .await?;
            ls(&cache, &entries, modules, json)
        }
        CacheCmd::Prune { all, json } => {
            // The modules first: if their references cannot be read, nothing is removed.
            let modules = prune_modules(config_path, false).await?;
            let c = cache.clone();
            let report = tokio::task::spawn_blocking(move || match (all, c.budget()) {
                (true, _) => Some(c.prune(0)),
                (false, 0) => None,
                (false, budget) => Some(c.prune(budget)),
            })
            .await?;
            prune(&cache, report, &modules, json)
        }
    }
}

/// The module store as `cache ls` shows it: modules, bytes, quota.
type ModuleStoreSize = (usize, u64, u64);

fn ls(cache: &Cache, entries: &[Entry], modules: ModuleStoreSize, json: bool) -> anyhow::Result<u8> {
    let (module_count, module_bytes, module_quota) = modules;
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
        // One entry per cache: the runtimes' share node.cache_max_mb, the module store
        // has node.modules_max_mb.
        let mut caches: Vec<serde_json::Value> = per
            .iter()
            .map(|(k, (n, b))| {
                serde_json::json!({
                    "name": k, "entries": n, "bytes": b,
                    "quota_bytes": cache.budget(), "quota_setting": "node.cache_max_mb",
                })
            })
            .collect();
        caches.push(serde_json::json!({
            "name": "modules", "entries": module_count, "bytes": module_bytes,
            "quota_bytes": module_quota, "quota_setting": "node.modules_max_mb",
        }));
        let out = serde_json::json!({
            "caches": caches,
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
    let quota = match module_quota {
        0 => "unbounded".to_string(),
        b => format!("of {}", size(b)),
    };
    println!(
        "{:<8} {module_count:>8} {:>12} {quota} (node.modules_max_mb)",
        "modules",
        size(module_bytes)
    );
    Ok(0)
}

fn prune(
    cache: &Cache,
    report: Option<PruneReport>,
    modules: &ModulePrune,
    json: bool,
) -> anyhow::Result<u8> {
    let Some(r) = report else {
        if json {
            let out = serde_json::json!({"quota_bytes": 0, "removed": [], "module_store": modules.to_json()});
            println!("{out}");
        } else {
            eprintln!("node.cache_max_mb is 0 (unbounded): nothing to prune; use --all to empty the caches");
            modules.print(false, true)?;
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
            "module_store": modules.to_json(),
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
    modules.print(false, true)?;
    Ok(0)
}

/// `12.3 MiB`.
pub(crate) fn size(bytes: u64) -> String {
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
