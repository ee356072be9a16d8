//! Deno's command line for a job: the permission flags (deny-all unless the job grants
//! something) and the V8 heap cap derived from `memory_mb`.
//!
//! Deno's permissions are the second wall; the sandbox (namespaces, a read-only root
//! with only the toolchain, its own network namespace) is the first. Each wall is
//! meant to hold alone, so a grant here never widens what the sandbox shows.

use hanzo_compute::{ComputeError, JobSpec, Network};

/// The variables the node sets for every tool (CONTRACTS §1a), always readable by it.
const RESERVED_ENV: [&str; 2] = ["HANZO_FUNCTION", "HANZO_JOB_ID"];

/// The job grant → Deno flag mapping (README, "Permissions"):
///
/// | job grant | flag |
/// |---|---|
/// | `env` keys, plus `HANZO_FUNCTION`, `HANZO_JOB_ID` | `--allow-env=K1,K2,…` |
/// | each mount's guest path | `--allow-read=P1,…` |
/// | each `rw` mount's guest path | `--allow-write=P1,…` |
/// | `network: full` | `--allow-net` |
/// | anything else | nothing: no `--allow-run`, `--allow-ffi`, `--allow-sys`, `--allow-all`, ever |
///
/// Deno splits these lists on commas, so a name or path holding one would grant
/// something else than asked; such jobs are refused (`InvalidInput`).
pub fn permission_flags(spec: &JobSpec) -> Result<Vec<String>, ComputeError> {
    let mut flags = Vec::new();
    let mut env: Vec<&str> = spec.env.keys().map(String::as_str).collect();
    env.extend(RESERVED_ENV);
    for k in &env {
        if k.contains(',') {
            return Err(ComputeError::invalid(format!(
                "env name '{k}' contains a comma, which Deno's --allow-env cannot express"
            )));
        }
    }
    flags.push(format!("--allow-env={}", env.join(",")));
    let mut read = Vec::new();
    let mut write = Vec::new();
    for m in &spec.mounts {
        if m.guest.contains(',') {
            return Err(ComputeError::invalid(format!(
                "mount guest path '{}' contains a comma, which Deno's --allow-read cannot express",
                m.guest
            )));
        }
        read.push(m.guest.as_str());
        if m.writable {
            write.push(m.guest.as_str());
        }
    }
    if !read.is_empty() {
        flags.push(format!("--allow-read={}", read.join(",")));
    }
    if !write.is_empty() {
        flags.push(format!("--allow-write={}", write.join(",")));
    }
    if spec.network == Network::Full {
        flags.push("--allow-net".into());
    }
    Ok(flags)
}

/// The V8 old-space cap for a job of `memory_mb`: half of it for small jobs, and all
/// but 64 MiB (Deno's own resident set, code, young generation, buffers) for large
/// ones, never under 4 MiB. A JS heap that grows past it ends in V8's fatal
/// "out of memory" — a memory limit error — before the cgroup's OOM killer has to act.
pub fn heap_limit_mb(memory_mb: u64) -> u64 {
    (memory_mb / 2).max(memory_mb.saturating_sub(64)).max(4)
}

/// Whether a failed run's log shows V8 giving up at its heap limit.
///
/// V8 aborts the process (SIGTRAP; 133 under bubblewrap) after printing this; a tool
/// could print the text itself, so it only counts together with a death by signal,
/// which Deno's permissions leave the tool no way to cause on purpose (`Deno.kill`
/// needs `--allow-run`).
pub fn is_v8_heap_oom(stderr: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stderr);
    [
        "Fatal JavaScript out of memory",
        "Fatal process out of memory",
        "JavaScript heap out of memory",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::{Mount, RuntimeKind};

    #[test]
    fn nothing_granted_means_nothing_allowed() {
        let spec = JobSpec::new(RuntimeKind::Deno, "t.ts");
        assert_eq!(
            permission_flags(&spec).unwrap(),
            ["--allow-env=HANZO_FUNCTION,HANZO_JOB_ID"]
        );
    }

    #[test]
    fn grants_map_to_their_flags() {
        let mut spec = JobSpec::new(RuntimeKind::Deno, "t.ts");
        spec.env.insert("API_KEY".into(), "x".into());
        spec.mounts = vec![
            "/srv/in:/in".parse::<Mount>().unwrap(),
            "/srv/out:/out:rw".parse::<Mount>().unwrap(),
        ];
        spec.network = Network::Full;
        assert_eq!(
            permission_flags(&spec).unwrap(),
            [
                "--allow-env=API_KEY,HANZO_FUNCTION,HANZO_JOB_ID",
                "--allow-read=/in,/out",
                "--allow-write=/out",
                "--allow-net",
            ]
        );
    }

    #[test]
    fn commas_cannot_smuggle_grants() {
        let mut spec = JobSpec::new(RuntimeKind::Deno, "t.ts");
        spec.env.insert("A,HOME".into(), "x".into());
        assert_eq!(permission_flags(&spec).unwrap_err().exit_code(), 2);
        let mut spec = JobSpec::new(RuntimeKind::Deno, "t.ts");
        spec.mounts = vec!["/srv:/in,/etc".parse::<Mount>().unwrap()];
        assert_eq!(permission_flags(&spec).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn heap_limits() {
        assert_eq!(heap_limit_mb(32), 16);
        assert_eq!(heap_limit_mb(128), 64);
        assert_eq!(heap_limit_mb(256), 192);
        assert_eq!(heap_limit_mb(4), 4);
    }

    #[test]
    fn v8_oom_is_recognised() {
        assert!(is_v8_heap_oom(
            b"\n\n<--- Last few GCs --->\n# Fatal JavaScript out of memory: Reached heap limit\n"
        ));
        assert!(!is_v8_heap_oom(b"error: Uncaught Error: boom\n"));
    }
}
