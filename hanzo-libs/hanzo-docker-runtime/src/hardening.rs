//! The container a tool job runs in: hardened by default, relaxed only by what the
//! job spec says explicitly.

use crate::image::ImageRef;
use crate::labels;
use bollard::models::{ContainerCreateBody, HostConfig};
use hanzo_compute::config::DockerConfig;
use hanzo_compute::{ComputeError, Job, Network, ResourceLimits};
use std::collections::HashMap;

/// CFS period for the CPU quota (the kernel's default, 100 ms).
const CPU_PERIOD_US: i64 = 100_000;
/// The smallest quota given, so a job asking for a sliver of CPU still runs.
const MIN_CPU_QUOTA_US: i64 = 10_000;

/// The hardened host configuration every container of the node starts from: no
/// capabilities, no new privileges, a read-only root with a `/tmp` tmpfs of `disk_mb`,
/// memory with swap equal to it, CPU shares and a quota, a pids limit, an init, and no
/// network unless asked.
pub(crate) fn host_config(
    limits: &ResourceLimits,
    network: Network,
    pids_limit: u32,
) -> Result<HostConfig, ComputeError> {
    let memory =
        i64::try_from(limits.memory_bytes()).map_err(|_| ComputeError::invalid("memory_mb is too large"))?;
    // Docker refuses less than 6 MiB; say so in our words rather than its.
    if memory < 6 * 1024 * 1024 {
        return Err(ComputeError::invalid(
            "memory_mb must be at least 6 for containers",
        ));
    }
    // A tmpfs of size 0 means "no limit" to the kernel: refuse it rather than hand out
    // unbounded scratch space.
    if limits.disk_mb == 0 {
        return Err(ComputeError::invalid("disk_mb must be at least 1 for containers"));
    }
    let quota = ((limits.cpu_shares as i64) * CPU_PERIOD_US / 1024).max(MIN_CPU_QUOTA_US);
    Ok(HostConfig {
        network_mode: Some(match network {
            Network::None => "none".into(),
            Network::Full => "bridge".into(),
        }),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            format!("rw,noexec,nosuid,size={}m,mode=1777", limits.disk_mb),
        )])),
        pids_limit: Some(pids_limit as i64),
        memory: Some(memory),
        // Swap equal to memory: no swap at all, so the limit is the limit.
        memory_swap: Some(memory),
        cpu_shares: Some(limits.cpu_shares as i64),
        cpu_period: Some(CPU_PERIOD_US),
        cpu_quota: Some(quota),
        // An init reaps zombies and forwards signals, so a kill ends the whole tree.
        init: Some(true),
        ..Default::default()
    })
}

/// Checks that a mount's host path is still what was admitted: absolute, and reached
/// without a symlink in any component. The daemon binds by path (it cannot take a
/// descriptor), and follows symlinks when it does: so a path that a job holding a
/// parent directory writable swapped for `-> /etc` after the job was admitted is
/// refused here rather than bound. The path is NOT canonicalised here (that would
/// follow the very link this refuses); the CLI and the API resolved it once already.
/// What remains is the daemon's own window, between this check (run again right before
/// the container starts) and its mount.
pub(crate) fn check_bind_source(m: &hanzo_compute::Mount) -> Result<(), ComputeError> {
    hanzo_compute::mounts::open_no_symlinks(&m.host)
        .map(drop)
        .map_err(|e| {
            ComputeError::invalid(format!(
                "mount source {} is not usable: {}",
                m.host.display(),
                hanzo_compute::mounts::describe(&e)
            ))
        })
}

/// The create request for a one-shot tool container.
pub(crate) fn tool_container(
    image: &ImageRef,
    job: &Job,
    config: &DockerConfig,
    node_id: &str,
) -> Result<ContainerCreateBody, ComputeError> {
    let spec = &job.spec;
    let limits = &spec.limits;
    let mut env = vec![
        format!("HANZO_FUNCTION={}", spec.function_or_default()),
        format!("HANZO_JOB_ID={}", job.tool_job_id()),
    ];
    for (k, v) in &spec.env {
        if k.contains('=') || k.is_empty() {
            return Err(ComputeError::invalid(format!("invalid env name '{k}'")));
        }
        env.push(format!("{k}={v}"));
    }
    let mut binds = Vec::new();
    let mut targets = std::collections::HashSet::new();
    for m in &spec.mounts {
        // /tmp is the job's size-limited scratch; a bind there (or two binds on one
        // target) would be refused by the daemon in its words, or shadow the limit.
        let target = m.guest.trim_end_matches('/');
        if target == "/tmp" || target.is_empty() || !targets.insert(target.to_string()) {
            return Err(ComputeError::invalid(format!(
                "mount target {} is reserved or used twice",
                m.guest
            )));
        }
        check_bind_source(m)?;
        let mode = if m.writable { "rw" } else { "ro" };
        binds.push(format!("{}:{}:{mode}", m.host.display(), m.guest));
    }
    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        ..host_config(limits, spec.network, config.pids_limit)?
    };
    let labels = HashMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::NODE.to_string(), node_id.to_string()),
        (labels::JOB.to_string(), job.id.clone()),
        (labels::KIND.to_string(), "tool".to_string()),
        (
            labels::OWNER.to_string(),
            crate::owner::this_process().to_string(),
        ),
    ]);
    Ok(ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(env),
        user: Some(spec.user.clone().unwrap_or_else(|| config.default_user.clone())),
        labels: Some(labels),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(spec.network == Network::None),
        host_config: Some(host_config),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::{JobSpec, RuntimeKind};

    fn body(tweak: impl FnOnce(&mut JobSpec)) -> Result<ContainerCreateBody, ComputeError> {
        let mut spec = JobSpec::new(RuntimeKind::Docker, "tool:1");
        tweak(&mut spec);
        tool_container(
            &"tool:1".parse().unwrap(),
            &Job::new(spec),
            &DockerConfig::default(),
            "node",
        )
    }

    #[test]
    fn defaults_are_hardened() {
        let b = body(|_| {}).unwrap();
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.memory, h.memory_swap);
        assert_eq!(h.memory, Some(256 * 1024 * 1024));
        assert_eq!(h.pids_limit, Some(256));
        assert_eq!(h.init, Some(true));
        assert!(h.binds.is_none());
        assert!(h.tmpfs.unwrap()["/tmp"].contains("size=512m"));
        assert_eq!(b.user.as_deref(), Some("65534:65534"));
        assert_eq!(b.labels.unwrap()[labels::KIND], "tool");
    }

    #[test]
    fn relaxations_are_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let b = body(|s| {
            s.network = Network::Full;
            s.user = Some("0:0".into());
            s.mounts = vec![format!("{}:/data", dir.path().display()).parse().unwrap()];
        })
        .unwrap();
        let h = b.host_config.unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        assert_eq!(b.user.as_deref(), Some("0:0"));
        assert!(h.binds.unwrap()[0].ends_with(":/data:ro"));
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(body(|s| s.limits.memory_mb = 1).is_err());
        assert!(body(|s| s.mounts = vec!["/nonexistent/x:/x".parse().unwrap()]).is_err());
        assert!(body(|s| s.mounts = vec!["relative:/x".parse().unwrap()]).is_err());
    }

    #[test]
    fn a_source_swapped_for_a_symlink_is_not_bound() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("out")).unwrap();
        let spec = format!("{}:/data:rw", base.join("out").display());
        body(|s| s.mounts = vec![spec.parse().unwrap()]).unwrap();
        // A job holding `base` writable replaced `out` by a link to the host's /etc.
        std::fs::remove_dir(base.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("out")).unwrap();
        let e = body(|s| s.mounts = vec![spec.parse().unwrap()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
