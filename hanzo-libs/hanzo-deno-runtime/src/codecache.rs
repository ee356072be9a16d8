//! Each tool's own V8 code cache: built once when the tool is prepared, read-only to
//! its jobs, so that a warm call does not compile the runner and the tool again.
//!
//! Deno keeps the compiled code of each module it loads in `DENO_DIR/v8_code_cache_v2`
//! (an sqlite database keyed by module URL and a hash of its source) and reuses it on
//! the next run, but only where it can write: with `DENO_DIR` read-only, as jobs see
//! it, it compiles everything on every call. So the prepare step builds the database
//! per tool (`<gen>/.hanzo-code/`, inside the tool's own `gen/`, pruned with it):
//!
//! 1. **compile** (sandboxed like a job, no network, no permissions): `deno run
//!    prepare.mjs` with a fresh directory as `DENO_DIR`, the job's exact runner and
//!    tool in the work directory. It loads and compiles the runner and the tool but
//!    evaluates neither (see `prepare.mjs`: a module that throws is evaluated first),
//!    so none of the tool's code runs, and deno writes their code to the database.
//! 2. **seal** (sandboxed, `--allow-read`/`--allow-write` on that directory only, no
//!    tool code in the graph at all): `seal.mjs` folds the WAL into the database and
//!    runs `ANALYZE`, so that a read-only open needs no write (see there).
//! 3. the node moves the database into place beside an empty `-wal` and `-shm` (which
//!    SQLite needs to read a WAL-mode database in a read-only directory) and records its
//!    sha256 in the tool's prepared marker.
//!
//! Jobs get the three files read-only at `DENO_DIR/v8_code_cache_v2*`. Deno consumes
//! them and its writes of new entries fail (and are ignored). The files hold only this
//! tool's code (and deno's own modules), written by the node's step; no job ever
//! writes them and no other tool's job sees them.
//!
//! **V8 trusts a code cache's contents.** It rejects an entry whose header does not
//! match (another V8 version, other V8 flags, another source length), but in release
//! builds it checks no checksum of the payload (`--verify-snapshot-checksum` would,
//! at the price of verifying deno's startup snapshot on every call, 5–15 ms here): a
//! corrupted entry crashes deno, and a crafted one would run as compiled code, past
//! Deno's permissions (not past the sandbox). So before every job the node checks the
//! database against the sha256 it recorded (and that `-wal`/`-shm` are empty); any
//! difference prepares the tool again. A tool's source can only shape its own
//! bytecode through V8's compiler, as it could at every run.

use crate::{
    CACHE_GUEST, DenoRuntime, PREPARE_LIMITS, RUNNER_FILE, SHARED_CACHE_DIRS, flags, source::ToolSource,
};
use hanzo_compute::{ComputeError, Job, Mount, Network};
use hanzo_sandbox::{Exit, GUEST_WORKDIR, ProcessSpec, TOOL_PATH};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Deno's code cache database in `DENO_DIR` (deno 2.x), and its WAL and shared-memory
/// files.
pub const CODE_CACHE_DB: &str = "v8_code_cache_v2";
const DB_SIDE_FILES: [&str; 2] = ["-wal", "-shm"];

/// Where the sealed database is kept, inside the tool's `gen/` entry.
const CODE_DIR: &str = ".hanzo-code";

/// The steps' scripts (see the module documentation).
const PREPARE_FILE: &str = "hanzo_prepare.mjs";
const PREPARE_SOURCE: &str = include_str!("prepare.mjs");
const COMPILE_FILE: &str = "hanzo_compile.mjs";
const STOP_FILE: &str = "hanzo_stop.mjs";
const STOP_SOURCE: &str = include_str!("stop.mjs");
const SEAL_FILE: &str = "hanzo_seal.mjs";
const SEAL_SOURCE: &str = include_str!("seal.mjs");
/// Where the seal step sees the new database's directory.
const SEAL_GUEST: &str = "/opt/hanzo/code-cache";

/// The marker line of a tool prepared without a code cache (its steps failed): jobs
/// run, compiling as before.
const NONE: &str = "v8 code cache: none";
const SHA_PREFIX: &str = "v8 code cache sha256 ";

/// The directory of the tool's sealed code cache, inside its `gen/` entry.
pub(crate) fn code_dir(entry: &Path) -> PathBuf {
    entry.join(CODE_DIR)
}

/// The read-only mounts that show a job its tool's code cache, when there is one.
pub(crate) fn run_mounts(entry: &Path) -> Vec<Mount> {
    let dir = code_dir(entry);
    let names: Vec<String> = std::iter::once(CODE_CACHE_DB.to_string())
        .chain(DB_SIDE_FILES.iter().map(|s| format!("{CODE_CACHE_DB}{s}")))
        .collect();
    if !names.iter().all(|n| dir.join(n).is_file()) {
        return Vec::new();
    }
    names
        .into_iter()
        .map(|n| Mount {
            host: dir.join(&n),
            guest: format!("{CACHE_GUEST}/{n}"),
            writable: false,
        })
        .collect()
}

/// Whether the tool's code cache is what its marker line says: the database with the
/// recorded sha256 beside an empty `-wal` and `-shm`, or (`none`) no database at all.
pub(crate) fn intact(entry: &Path, line: &str) -> bool {
    let dir = code_dir(entry);
    let db = dir.join(CODE_CACHE_DB);
    if line == NONE {
        return !db.exists();
    }
    let Some(want) = line.strip_prefix(SHA_PREFIX) else {
        return false;
    };
    // A non-empty WAL would be read on top of the database: it must be empty too.
    DB_SIDE_FILES.iter().all(|s| {
        std::fs::metadata(dir.join(format!("{CODE_CACHE_DB}{s}"))).is_ok_and(|m| m.is_file() && m.len() == 0)
    }) && std::fs::read(&db).is_ok_and(|b| hex::encode(Sha256::digest(&b)) == want)
}

impl DenoRuntime {
    /// Builds the tool's code cache (compile, seal, move into place) and returns the
    /// line for its prepared marker. A step that fails leaves the tool without a code
    /// cache (`none`): its jobs compile as before. Only a cancelled job is an error.
    pub(crate) async fn build_code_cache(
        &self,
        deno: &Path,
        job: &Job,
        tool: &ToolSource,
    ) -> Result<String, ComputeError> {
        let entry = self.emit_dir(&tool.hash);
        let dir = code_dir(&entry);
        let tmp = dir.join(format!("tmp-{}", hanzo_compute::new_job_id()));
        let built = self.compile_and_seal(deno, job, tool, &entry, &tmp).await;
        let line = match built {
            Ok(true) => install(&dir, &tmp).unwrap_or_else(|_| NONE.to_string()),
            Ok(false) => NONE.to_string(),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let _ = std::fs::remove_dir_all(&tmp);
        if line == NONE {
            // No stale database may stay mounted under a marker that vouches for none.
            let _ = std::fs::remove_file(dir.join(CODE_CACHE_DB));
        }
        Ok(line)
    }

    /// Steps 1 and 2 into `tmp`; whether both succeeded.
    async fn compile_and_seal(
        &self,
        deno: &Path,
        job: &Job,
        tool: &ToolSource,
        entry: &Path,
        tmp: &Path,
    ) -> Result<bool, ComputeError> {
        if std::fs::create_dir_all(tmp).is_err() || self.hand_over(tmp).is_err() {
            return Ok(false);
        }
        // The same V8 flags as a run (V8 rejects code cached under other flags; the
        // heap size is not among those it compares).
        let heap = flags::heap_limit_mb(PREPARE_LIMITS.memory_mb);
        let literal = crate::tool_literal(tool);
        let mut compile = ProcessSpec::new(deno)
            .args(["run", "--no-prompt", "--no-config", "--no-lock", "--cached-only"])
            .arg(format!("--v8-flags=--max-old-space-size={heap}"))
            .arg(PREPARE_FILE)
            .env("PATH", TOOL_PATH)
            .env("LANG", "C.UTF-8")
            .ro_path(deno)
            .file(RUNNER_FILE, crate::runner_source(tool))
            .file(tool.work_path.clone(), tool.bytes.clone())
            .file(PREPARE_FILE, PREPARE_SOURCE)
            .file(STOP_FILE, STOP_SOURCE)
            .file(
                COMPILE_FILE,
                format!("import \"./{STOP_FILE}\";\nimport \"./{RUNNER_FILE}\";\nimport {literal};\n"),
            )
            .network(Network::None)
            .limits(PREPARE_LIMITS)
            .pids_limit(self.pids_limit.max(hanzo_sandbox::DEFAULT_PIDS_LIMIT))
            // A fresh DENO_DIR of its own (only the database is kept); the downloads and
            // the tool's transpiled code read-only, as a job sees them.
            .mount(Mount {
                host: tmp.to_path_buf(),
                guest: CACHE_GUEST.into(),
                writable: true,
            });
        for d in SHARED_CACHE_DIRS {
            compile = compile.mount(Mount {
                host: self.cache_dir().join(d),
                guest: format!("{CACHE_GUEST}/{d}"),
                writable: false,
            });
        }
        compile = compile.mount(Mount {
            host: entry.to_path_buf(),
            guest: format!("{CACHE_GUEST}/gen"),
            writable: false,
        });
        self.deno_env(&mut compile);
        if !self.step(compile, job).await? || !tmp.join(CODE_CACHE_DB).is_file() {
            return Ok(false);
        }
        let mut seal = ProcessSpec::new(deno)
            .args(["run", "--no-prompt", "--no-config", "--no-lock"])
            .arg(format!("--allow-read={SEAL_GUEST}"))
            .arg(format!("--allow-write={SEAL_GUEST}"))
            .arg(SEAL_FILE)
            .arg(format!("{SEAL_GUEST}/{CODE_CACHE_DB}"))
            .env("PATH", TOOL_PATH)
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            // deno's own caches for this step: in its work directory, thrown away.
            .env("DENO_DIR", format!("{GUEST_WORKDIR}/.deno"))
            .ro_path(deno)
            .file(SEAL_FILE, SEAL_SOURCE)
            .network(Network::None)
            .limits(PREPARE_LIMITS)
            .pids_limit(self.pids_limit.max(hanzo_sandbox::DEFAULT_PIDS_LIMIT))
            .mount(Mount {
                host: tmp.to_path_buf(),
                guest: SEAL_GUEST.into(),
                writable: true,
            });
        seal.env.remove("DENO_TLS_CA_STORE");
        self.step(seal, job).await
    }

    /// Runs one step; whether it exited 0. Cancelled: the job's error.
    async fn step(&self, spec: ProcessSpec, job: &Job) -> Result<bool, ComputeError> {
        // The step runs as the tool's user (never root): what it writes must be that
        // user's.
        for m in spec.mounts.iter().filter(|m| m.writable) {
            self.sandbox
                .hand_to_tool(&m.host)
                .map_err(|e| ComputeError::internal(format!("cannot prepare {}: {e}", m.host.display())))?;
        }
        let outcome = self.sandbox.run(spec, &job.cancel).await;
        match outcome.exit {
            Exit::Exited(0) => Ok(true),
            Exit::Cancelled => Err(ComputeError::Cancelled),
            _ => Ok(false),
        }
    }
}

/// Step 3: moves the sealed database from `tmp` into `dir` (a rename: a job running
/// meanwhile keeps the file it mounted), beside an empty `-wal` and `-shm`; returns the
/// marker line naming its sha256.
fn install(dir: &Path, tmp: &Path) -> std::io::Result<String> {
    let sealed = tmp.join(CODE_CACHE_DB);
    // The seal folded the WAL in (and SQLite removes it on close): anything left in it
    // was not sealed.
    if std::fs::metadata(tmp.join(format!("{CODE_CACHE_DB}-wal"))).is_ok_and(|m| m.len() > 0) {
        return Err(std::io::Error::other("the WAL was not folded in"));
    }
    let db = dir.join(CODE_CACHE_DB);
    std::fs::rename(&sealed, &db)?;
    for s in DB_SIDE_FILES {
        std::fs::File::create(dir.join(format!("{CODE_CACHE_DB}{s}")))?;
    }
    let bytes = std::fs::read(&db)?;
    Ok(format!("{SHA_PREFIX}{}", hex::encode(Sha256::digest(&bytes))))
}
