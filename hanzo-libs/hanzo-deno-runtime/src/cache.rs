//! The node's cache quota ([`hanzo_compute::cache`]) for deno: each tool's own `gen/`
//! (`<data_dir>/deno/gen/<sha256>`, which also holds the tool's prepared marker) is an
//! entry, and the shared downloads (`<data_dir>/deno/cache`) are one entry as a whole.
//! A job leases both while it prepares and runs, so a prune never removes them under
//! it. Either may be pruned between jobs: a pruned `gen/` takes its marker with it, and
//! the marker names the shared cache's generation (a random id written when the cache
//! is created), so in both cases the next job prepares the tool again instead of
//! running `--cached-only` against downloads that are gone.

use hanzo_compute::cache::{Lease, Pool, lease};
use hanzo_compute::{ComputeError, RuntimeKind};
use std::path::Path;

/// Names the shared cache's generation; in `DENO_DIR` but outside what jobs see
/// ([`SHARED_CACHE_DIRS`](crate::SHARED_CACHE_DIRS)).
const GENERATION_FILE: &str = ".hanzo-generation";

/// Where this runtime keeps what it fetches and transpiles, for the node's cache
/// quota: each tool's `gen/` (an entry) and the shared downloads (one entry).
pub fn cache_pools(data_dir: &Path) -> Vec<Pool> {
    let root = data_dir.join("deno");
    vec![
        Pool::entries(RuntimeKind::Deno, root.join("gen")),
        Pool::whole(RuntimeKind::Deno, root.join("cache")),
    ]
}

/// A job's leases on the shared cache and on its tool's `gen/`.
pub(crate) struct ToolLeases {
    _shared: Lease,
    _gen: Lease,
}

/// Creates `dirs` (the shared cache first, the tool's `gen/` last) and leases the
/// shared cache and the `gen/`; a prune between the two steps makes it start again.
pub(crate) fn lease_tool(shared: &Path, dirs: &[std::path::PathBuf]) -> Result<ToolLeases, ComputeError> {
    let gen_dir = dirs.last().map(|d| d.as_path()).unwrap_or(shared);
    for _ in 0..3 {
        for d in dirs {
            std::fs::create_dir_all(d)
                .map_err(|e| ComputeError::internal(format!("cannot create {}: {e}", d.display())))?;
        }
        let take = |p: &Path| {
            lease(p).map_err(|e| ComputeError::internal(format!("cannot lock {}: {e}", p.display())))
        };
        if let (Some(s), Some(g)) = (take(shared)?, take(gen_dir)?) {
            return Ok(ToolLeases { _shared: s, _gen: g });
        }
    }
    Err(ComputeError::Unavailable(
        "the tool's cache was pruned three times before the job could use it; raise [node] cache_max_mb"
            .into(),
    ))
}

/// The shared cache's generation, written on first use. Unreadable: a fresh id each
/// time, so that markers never match and tools are prepared (slower, never wrong).
pub(crate) fn generation(shared: &Path) -> String {
    let path = shared.join(GENERATION_FILE);
    if let Ok(g) = std::fs::read_to_string(&path)
        && !g.is_empty()
    {
        return g;
    }
    let id = hanzo_compute::new_job_id();
    // create_new: two nodes creating it at once agree on whichever was first.
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, id.as_bytes()));
    match created {
        Ok(()) => id,
        Err(_) => std::fs::read_to_string(&path)
            .ok()
            .filter(|g| !g.is_empty())
            .unwrap_or(id),
    }
}
