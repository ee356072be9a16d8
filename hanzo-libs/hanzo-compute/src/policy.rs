//! What a job from an API client may ask of the node.
//!
//! An API client holds the token, and is trusted only within what the operator allows:
//! limits up to the node's ceilings, mounts only under `[compute] mount_roots` (and
//! never the node's own data or a container engine), containers as root only with
//! `[compute.docker] allow_root`. The local CLI `run` is the operator at their shell:
//! it keeps its freedom for mounts and users, and is held to the ceilings only.

use crate::mounts::{MountError, MountPolicy};
use crate::{Ceilings, ComputeError, Config, JobSpec, RuntimeKind};

/// Why a job (or a tool, or a service) from an API client is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The spec is malformed or asks more than a ceiling (HTTP 400); the message
    /// names the field.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not have this (HTTP 403): a mount outside the roots or of a
    /// protected path, root in a container; the message names the field.
    #[error("{0}")]
    Forbidden(String),
}

impl From<PolicyError> for ComputeError {
    fn from(e: PolicyError) -> Self {
        ComputeError::invalid(e.to_string())
    }
}

/// The operator's rules for API clients' jobs.
#[derive(Debug, Clone, Default)]
pub struct ApiPolicy {
    /// The ceilings on job limits.
    pub ceilings: Ceilings,
    /// Where mounts may come from.
    pub mounts: MountPolicy,
    /// Whether containers may run as root (`[compute.docker] allow_root`).
    pub allow_root: bool,
}

impl ApiPolicy {
    /// The policy `config` sets. Fails, naming the key, when a mount root cannot be
    /// resolved (a startup error).
    pub fn from_config(config: &Config) -> Result<Self, ComputeError> {
        Ok(ApiPolicy {
            ceilings: Ceilings::from_config(&config.compute),
            mounts: MountPolicy::from_config(config)?,
            allow_root: config.compute.docker.allow_root,
        })
    }

    /// Checks `spec` and resolves its mounts in place to canonical host paths (what
    /// is stored and run is what was checked). Blocking: it opens the mounts' paths.
    pub fn admit(&self, spec: &mut JobSpec) -> Result<(), PolicyError> {
        self.check_limits(&spec.limits)?;
        if spec.runtime == RuntimeKind::Docker {
            self.check_user("user", spec.user.as_deref())?;
        }
        for (i, m) in spec.mounts.iter_mut().enumerate() {
            *m = self.mounts.resolve(m).map_err(|e| match e {
                MountError::Invalid(msg) => PolicyError::Invalid(format!("mounts[{i}]: {msg}")),
                MountError::Forbidden(msg) => PolicyError::Forbidden(format!("mounts[{i}]: {msg}")),
            })?;
        }
        Ok(())
    }

    /// Refuses limits above a ceiling (`limits.timeout_ms ...`).
    pub fn check_limits(&self, limits: &crate::ResourceLimits) -> Result<(), PolicyError> {
        self.ceilings
            .check(limits)
            .map_err(|e| PolicyError::Invalid(format!("limits.{e}")))
    }

    /// Refuses a container user that is, or may be, root unless the operator allows
    /// it: a numeric non-zero `UID[:GID]` is needed, since a user NAME is looked up in
    /// the image's own `/etc/passwd`, which the image's author writes (`tool:x:0:0`).
    /// `None` (the node's configured default user) is the operator's choice.
    pub fn check_user(&self, field: &str, user: Option<&str>) -> Result<(), PolicyError> {
        let Some(user) = user else { return Ok(()) };
        if self.allow_root {
            return Ok(());
        }
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let unprivileged =
            |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok_and(|n| n != 0);
        if unprivileged(uid) && gid.is_none_or(unprivileged) {
            return Ok(());
        }
        Err(PolicyError::Forbidden(format!(
            "{field}: '{user}' is or may be root; jobs from API clients run containers as a numeric \
             non-zero UID[:GID] unless [compute.docker] allow_root = true"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_in_containers_needs_the_operator() {
        let p = ApiPolicy::default();
        for ok in ["1000", "1000:1000", "65534:65534"] {
            p.check_user("user", Some(ok)).unwrap();
        }
        p.check_user("user", None).unwrap();
        for bad in [
            "0",
            "0:0",
            "00",
            "root",
            "root:root",
            "1000:0",
            "tool",
            "",
            ":",
            "1000:",
            "-1",
            "+5",
        ] {
            let e = p.check_user("user", Some(bad)).unwrap_err();
            assert!(matches!(e, PolicyError::Forbidden(_)), "{bad}");
            assert!(
                e.to_string().starts_with("user: ") && e.to_string().contains("allow_root"),
                "{e}"
            );
        }
        let allowed = ApiPolicy {
            allow_root: true,
            ..ApiPolicy::default()
        };
        allowed.check_user("user", Some("0:0")).unwrap();
    }

    #[test]
    fn admission_checks_ceilings_users_and_mounts() {
        let p = ApiPolicy::default();
        let mut spec = JobSpec::new(RuntimeKind::Docker, "busybox");
        p.admit(&mut spec).unwrap();
        spec.limits.timeout_ms = u64::MAX;
        let e = p.admit(&mut spec).unwrap_err();
        assert!(matches!(e, PolicyError::Invalid(_)));
        assert!(
            e.to_string()
                .starts_with("limits.timeout_ms 18446744073709551615"),
            "{e}"
        );
        spec.limits.timeout_ms = 1000;
        spec.user = Some("0".into());
        assert!(matches!(p.admit(&mut spec), Err(PolicyError::Forbidden(_))));
        // Only containers have users to speak of.
        spec.runtime = RuntimeKind::Wasm;
        p.admit(&mut spec).unwrap();
        spec.mounts = vec!["/etc:/etc".parse().unwrap()];
        let e = p.admit(&mut spec).unwrap_err();
        assert!(matches!(e, PolicyError::Forbidden(_)));
        assert!(e.to_string().starts_with("mounts[0]: mount /etc:"), "{e}");
    }
}
