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
    /// URL prefixes of the MCP servers jobs may name (`[compute.mcp] allowed_urls`).
    pub mcp_urls: Vec<String>,
    /// URL prefixes of the model endpoints agents may name (`[compute.agent]
    /// allowed_endpoints`).
    pub agent_endpoints: Vec<String>,
}

impl ApiPolicy {
    /// The policy `config` sets. Fails, naming the key, when a mount root cannot be
    /// resolved (a startup error).
    pub fn from_config(config: &Config) -> Result<Self, ComputeError> {
        Ok(ApiPolicy {
            ceilings: Ceilings::from_config(&config.compute),
            mounts: MountPolicy::from_config(config)?,
            allow_root: config.compute.docker.allow_root,
            mcp_urls: config.compute.mcp.allowed_urls.clone(),
            agent_endpoints: config.compute.agent.allowed_endpoints.clone(),
        })
    }

    /// Checks `spec` and resolves its mounts in place to canonical host paths (what
    /// is stored and run is what was checked). Blocking: it opens the mounts' paths.
    pub fn admit(&self, spec: &mut JobSpec) -> Result<(), PolicyError> {
        self.check_limits(&spec.limits)?;
        if spec.runtime == RuntimeKind::Docker {
            self.check_user("user", spec.user.as_deref())?;
        }
        self.check_mcp_source("source", spec.runtime, &spec.source)?;
        self.check_agent_source("source", spec.runtime, &spec.source)?;
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

    /// Refuses an MCP server URL outside `[compute.mcp] allowed_urls`: the node calls
    /// it from its own network, where an API client could otherwise reach what only
    /// the node should (a loopback service, a cloud metadata endpoint). A stdio
    /// server's command line is a tool like any other, run in the sandbox.
    pub fn check_mcp_source(
        &self,
        field: &str,
        runtime: RuntimeKind,
        source: &str,
    ) -> Result<(), PolicyError> {
        let url = source.trim();
        let lower = url.to_ascii_lowercase();
        if runtime != RuntimeKind::Mcp || !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Ok(());
        }
        check_url(
            field,
            url,
            &self.mcp_urls,
            "MCP server",
            "[compute.mcp] allowed_urls",
        )
    }

    /// Refuses an agent file that does not parse, or whose model endpoint is outside
    /// `[compute.agent] allowed_endpoints`: the node posts the conversation there from
    /// its own network, with the key the agent names.
    pub fn check_agent_source(
        &self,
        field: &str,
        runtime: RuntimeKind,
        source: &str,
    ) -> Result<(), PolicyError> {
        if runtime != RuntimeKind::Agent {
            return Ok(());
        }
        let file = crate::agent::AgentFile::parse(source)
            .map_err(|e| PolicyError::Invalid(format!("{field}: {e}")))?;
        check_url(
            field,
            &file.endpoint,
            &self.agent_endpoints,
            "model endpoint",
            "[compute.agent] allowed_endpoints",
        )
    }
}

/// Whether `url` is under `prefix`, compared as text (ASCII case aside) by whole
/// components: `http://a.example` does not admit `http://a.example.evil.test`, another
/// port, or `http://a.example/v10` under `http://a.example/v1`.
pub fn under_prefix(url: &str, prefix: &str) -> bool {
    let (u, p) = (url.to_ascii_lowercase(), prefix.to_ascii_lowercase());
    u.starts_with(&p)
        && (p.ends_with('/')
            || u[p.len()..]
                .chars()
                .next()
                .is_none_or(|c| matches!(c, '/' | '?' | '#')))
}

/// Whether `url` is under one of `prefixes`, compared as text by whole components;
/// Forbidden (naming `what` and the `setting`) otherwise.
fn check_url(
    field: &str,
    url: &str,
    prefixes: &[String],
    what: &str,
    setting: &str,
) -> Result<(), PolicyError> {
    let lower = url.to_ascii_lowercase();
    // A prefix is compared as text, so the URL must be in the form it is read:
    // no dot segments (`/mcp/../admin`), encoded ones, backslashes or user info
    // (`http://allowed@elsewhere/`).
    let authority = lower
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    if lower.contains("/..")
        || lower.contains("/./")
        || lower.contains("%2e")
        || lower.contains('\\')
        || authority.contains('@')
    {
        return Err(PolicyError::Forbidden(format!(
            "{field}: the {what} URL {url} has dot segments, an encoded dot, a backslash or user info; name it in plain form"
        )));
    }
    if prefixes.iter().any(|prefix| under_prefix(url, prefix)) {
        Ok(())
    } else {
        Err(PolicyError::Forbidden(format!(
            "{field}: the {what} {url} is not under {setting}; the node calls it from its own network, so API clients may name only the ones the operator allows"
        )))
    }
}

impl ApiPolicy {
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
    fn agent_endpoints_need_the_operator() {
        let p = ApiPolicy {
            agent_endpoints: vec!["http://127.0.0.1:11434/v1".into()],
            ..ApiPolicy::default()
        };
        let file = |endpoint: &str| format!("endpoint = \"{endpoint}\"\nmodel = \"m\"\n");
        p.check_agent_source("source", RuntimeKind::Agent, &file("http://127.0.0.1:11434/v1"))
            .unwrap();
        for bad in [
            "http://127.0.0.1:11434/v1x",
            "http://169.254.169.254/v1",
            "http://127.0.0.1:11434/v1/../x",
        ] {
            let e = p
                .check_agent_source("source", RuntimeKind::Agent, &file(bad))
                .unwrap_err();
            assert!(matches!(e, PolicyError::Forbidden(_)), "{bad}: {e}");
            assert!(
                e.to_string().contains("allowed_endpoints") || e.to_string().contains("plain form"),
                "{e}"
            );
        }
        let e = p
            .check_agent_source("source", RuntimeKind::Agent, "model = 1")
            .unwrap_err();
        assert!(matches!(e, PolicyError::Invalid(_)), "{e}");
        // Nothing is allowed until the operator says so.
        assert!(
            ApiPolicy::default()
                .check_agent_source("source", RuntimeKind::Agent, &file("http://127.0.0.1:11434/v1"))
                .is_err()
        );
    }

    #[test]
    fn mcp_urls_need_the_operator_and_match_whole_components() {
        let p = ApiPolicy {
            mcp_urls: vec![
                "http://127.0.0.1:3001/mcp".into(),
                "https://tools.example/".into(),
            ],
            ..ApiPolicy::default()
        };
        let mcp = RuntimeKind::Mcp;
        for ok in [
            "http://127.0.0.1:3001/mcp",
            "HTTP://127.0.0.1:3001/mcp?x=1",
            "http://127.0.0.1:3001/mcp/sub",
            "https://tools.example/a/mcp",
            "/opt/venv/bin/mcp-server-time",
        ] {
            p.check_mcp_source("source", mcp, ok).unwrap();
        }
        for bad in [
            "http://127.0.0.1:3001/mcp/../admin",
            "http://127.0.0.1:3001/mcp/%2e%2e/admin",
            "http://127.0.0.1:3001/mcp\\..\\x",
            "http://127.0.0.1:3001@evil.test/mcp",
            "http://127.0.0.1:3001/mcpx",
            "http://127.0.0.1:30011/mcp",
            "https://tools.example.evil.test/",
            "http://169.254.169.254/latest",
        ] {
            let e = p.check_mcp_source("source", mcp, bad).unwrap_err();
            assert!(matches!(e, PolicyError::Forbidden(_)), "{bad}");
        }
        // Other runtimes' sources are not URLs of MCP servers.
        p.check_mcp_source("source", RuntimeKind::Docker, "http://x")
            .unwrap();
        assert!(
            ApiPolicy::default()
                .check_mcp_source("source", mcp, "http://127.0.0.1:3001/mcp")
                .is_err()
        );
    }

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
