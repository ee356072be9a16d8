//! Image references, pull policies and pulls (with progress), and the digest that
//! goes into receipts.

use crate::DockerRuntime;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use hanzo_compute::ComputeError;
use std::fmt;
use std::str::FromStr;

/// When to pull an image (`[compute.docker] pull_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull before every run (picks up a moved tag).
    Always,
    /// Pull only when the image is not present (the default).
    IfNotPresent,
    /// Never pull; a missing image is bad input.
    Never,
}

impl FromStr for PullPolicy {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "if-not-present" => Ok(PullPolicy::IfNotPresent),
            "never" => Ok(PullPolicy::Never),
            other => Err(ComputeError::invalid(format!(
                "invalid pull_policy '{other}' (expected always, if-not-present or never)"
            ))),
        }
    }
}

/// A parsed image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, or an
/// image id `sha256:<hex>` (as Docker reads it too: an id, never a repository named
/// `sha256`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), when the reference names one.
    pub registry: Option<String>,
    /// Repository path (`library/busybox`, `team/tool`).
    pub path: String,
    /// Tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:<hex>` digest, when pinned.
    pub digest: Option<String>,
    /// For an image id (`sha256:<hex>`): the hex. The image is looked up by id in the
    /// local daemon and never pulled (a registry serves names, not ids); `registry`,
    /// `path`, `tag` and `digest` are then empty.
    pub id: Option<String>,
}

/// Whether `hex` is a sha256 as Docker writes it: 64 lower-case hex digits.
pub fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn is_component(s: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-' (the distribution grammar,
    // simplified: separators may not lead, trail or touch each other except '__' and '--').
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
        && !s.contains("..")
        && !s.contains("___")
}

fn is_registry(s: &str) -> bool {
    // A first component is a registry when it has a '.' or ':' or is "localhost".
    (s.contains('.') || s.contains(':') || s == "localhost")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

impl FromStr for ImageRef {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ComputeError::invalid(format!("invalid image reference '{s}': {why}"));
        if s.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace()) {
            return Err(bad("empty, too long, or containing spaces"));
        }
        if let Some(hex) = s.strip_prefix("sha256:")
            && is_sha256_hex(hex)
        {
            return Ok(ImageRef {
                registry: None,
                path: String::new(),
                tag: None,
                digest: None,
                id: Some(hex.to_string()),
            });
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("digest must be sha256:<hex>"))?;
                if !is_sha256_hex(hex) {
                    return Err(bad("digest must be sha256: and 64 lower-case hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        let registry = if parts.len() > 1 && is_registry(parts[0]) {
            Some(parts.remove(0).to_string())
        } else {
            None
        };
        let last = parts.pop().ok_or_else(|| bad("no repository"))?;
        let (name, tag) = match last.split_once(':') {
            Some((n, t)) => (n, Some(t)),
            None => (last, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad("tag must be [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        parts.push(name);
        if !parts.iter().all(|c| is_component(c)) {
            return Err(bad(
                "repository names are lower-case letters, digits and . _ - separators",
            ));
        }
        Ok(ImageRef {
            registry,
            path: parts.join("/"),
            tag: tag.map(str::to_string),
            digest,
            id: None,
        })
    }
}

impl ImageRef {
    /// The reference with `default_registry` applied when it names none (an image id
    /// names no registry and gets none).
    pub fn with_default_registry(mut self, default_registry: &str) -> Self {
        if self.registry.is_none() && self.id.is_none() && !default_registry.is_empty() {
            self.registry = Some(default_registry.trim_end_matches('/').to_string());
        }
        self
    }

    /// `name` as the daemon knows it, without tag or digest.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = &self.id {
            return write!(f, "sha256:{id}");
        }
        write!(f, "{}", self.repository())?;
        if let Some(d) = &self.digest {
            write!(f, "@{d}")
        } else {
            write!(f, ":{}", self.tag.as_deref().unwrap_or("latest"))
        }
    }
}

/// One step of a pull, for progress displays.
#[derive(Debug, Clone, Default)]
pub struct PullProgress {
    /// The layer, when the step is about one.
    pub layer: Option<String>,
    /// What the daemon says (`Downloading`, `Pull complete`, ...).
    pub status: String,
    /// Bytes done and total, when known.
    pub current: Option<u64>,
    /// Total bytes of the layer, when known.
    pub total: Option<u64>,
}

impl DockerRuntime {
    /// Parses `reference` (applying the configured default registry), makes sure the
    /// image is present under the configured pull policy, reporting pull progress to
    /// the runtime's sink, and returns the reference with the image's content digest.
    pub(crate) async fn resolve_image(&self, reference: &str) -> Result<(ImageRef, String), ComputeError> {
        let image = reference
            .parse::<ImageRef>()?
            .with_default_registry(&self.options.config.registry);
        let policy: PullPolicy = self.options.config.pull_policy.parse()?;
        let progress = self.progress.clone();
        let mut report = move |p| {
            if let Some(sink) = &progress {
                sink(p)
            }
        };
        let digest = self.ensure_image(&image, policy, &mut report).await?;
        Ok((image, digest))
    }

    /// Makes sure `image` is present according to the pull policy, pulling it (with
    /// progress reported to `progress`) when needed; returns the image's content
    /// digest (hex), which receipts record as `code_hash`.
    pub async fn ensure_image(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<String, ComputeError> {
        let docker = self.client().await?;
        let name = image.to_string();
        let present = docker.inspect_image(&name).await.ok();
        let must_pull = match (policy, &present) {
            // An id is this daemon's name for content it holds: nothing to pull it from.
            (_, None) if image.id.is_some() => {
                return Err(ComputeError::invalid(format!(
                    "image {name} is not in this node's Docker daemon (an image id cannot be pulled)"
                )));
            }
            (_, Some(_)) if image.id.is_some() => false,
            (PullPolicy::Always, _) => true,
            (PullPolicy::IfNotPresent, p) => p.is_none(),
            (PullPolicy::Never, None) => {
                return Err(ComputeError::invalid(format!(
                    "image {name} is not present and pull_policy is never"
                )));
            }
            (PullPolicy::Never, Some(_)) => false,
        };
        if must_pull {
            self.pull(image, progress).await?;
        }
        let inspected = docker.inspect_image(&name).await.map_err(|e| {
            ComputeError::invalid(format!("image {name} is not available: {}", crate::describe(&e)))
        })?;
        let id = inspected.id.unwrap_or_default();
        Ok(id.strip_prefix("sha256:").unwrap_or(&id).to_string())
    }

    /// Pulls `image`, reporting progress.
    pub async fn pull(
        &self,
        image: &ImageRef,
        progress: &mut (dyn FnMut(PullProgress) + Send),
    ) -> Result<(), ComputeError> {
        if image.id.is_some() {
            return Err(ComputeError::invalid(format!(
                "image {image} is an image id: a registry cannot serve it"
            )));
        }
        let docker = self.client().await?;
        let mut options = CreateImageOptionsBuilder::default().from_image(&image.repository());
        options = match &image.digest {
            Some(d) => options.tag(d),
            None => options.tag(image.tag.as_deref().unwrap_or("latest")),
        };
        let credentials = self.credentials(image);
        let mut stream = docker.create_image(Some(options.build()), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| crate::pull_error(&image.to_string(), &crate::describe(&e)))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(crate::pull_error(&image.to_string(), &err));
            }
            let detail = info.progress_detail.unwrap_or_default();
            progress(PullProgress {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: detail.current.map(|c| c.max(0) as u64),
                total: detail.total.map(|t| t.max(0) as u64),
            });
        }
        Ok(())
    }

    /// The configured credentials, for `image` only if it lives on the configured
    /// registry: a job names any image it likes, and the daemon hands the password to
    /// whatever registry the reference names, so a job naming `evil.example/x` must not
    /// get it sent there.
    fn credentials(&self, image: &ImageRef) -> Option<DockerCredentials> {
        let c = &self.options.config;
        if c.username.is_empty() || !same_registry(image.registry.as_deref(), &c.registry) {
            return None;
        }
        Some(DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(registry_host(image.registry.as_deref().unwrap_or(""))),
            ..Default::default()
        })
    }
}

/// Docker Hub's names for itself; a reference without a registry means it too.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A registry as written in a reference or in `[compute.docker] registry`, reduced to
/// the host and port the daemon connects to: lower case, without a scheme, a path
/// (`https://index.docker.io/v1/`) or the default port 443; Docker Hub's names (and the
/// empty name) as `docker.io`.
pub fn registry_host(registry: &str) -> String {
    let r = registry.trim();
    let r = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r);
    let r = r.split('/').next().unwrap_or("").to_ascii_lowercase();
    let r = r.strip_suffix(":443").map(str::to_string).unwrap_or(r);
    if r.is_empty() || DOCKER_HUB.contains(&r.as_str()) {
        "docker.io".into()
    } else {
        r
    }
}

/// Whether an image's registry (`None`: Docker Hub) is the configured one (empty:
/// Docker Hub, the daemon's default).
pub fn same_registry(image_registry: Option<&str>, configured: &str) -> bool {
    registry_host(image_registry.unwrap_or("")) == registry_host(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: ImageRef = "busybox".parse().unwrap();
        assert_eq!(
            (r.registry.as_deref(), r.path.as_str(), r.tag.as_deref()),
            (None, "busybox", None)
        );
        assert_eq!(r.to_string(), "busybox:latest");
        let r: ImageRef = "localhost:5000/team/tool:v1.2".parse().unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.path, "team/tool");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r: ImageRef = format!("tool@{d}").parse().unwrap();
        assert_eq!(r.to_string(), format!("tool@{d}"));
        // An image id, as Docker reads it: no repository, no default registry.
        let r: ImageRef = d.parse().unwrap();
        assert_eq!(r.id.as_deref(), Some("a".repeat(64).as_str()));
        assert_eq!(r.with_default_registry("reg.example").to_string(), d);
    }

    #[test]
    fn malformed_references_are_bad_input() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "tool:",
            "tool:-x",
            "-lead",
            "tool@sha256:abc",
            "a//b",
            "tool@md5:00",
        ] {
            let e = bad.parse::<ImageRef>().unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn credentials_go_to_the_configured_registry_only() {
        let image = |r: &str| r.parse::<ImageRef>().unwrap();
        let same = |reference: &str, configured: &str| {
            same_registry(
                image(reference)
                    .with_default_registry(configured)
                    .registry
                    .as_deref(),
                configured,
            )
        };
        // Docker Hub by any of its names, and by no name.
        for (r, c) in [
            ("busybox", ""),
            ("docker.io/library/busybox", ""),
            ("index.docker.io/library/busybox", "docker.io"),
            ("busybox", "https://index.docker.io/v1/"),
            ("registry-1.docker.io/x/y", "index.docker.io"),
        ] {
            assert!(same(r, c), "{r} on {c:?}");
        }
        // The configured registry, with its port, the default port or a scheme.
        assert!(same("reg.example:5000/tool:1", "reg.example:5000"));
        assert!(same("tool:1", "reg.example:5000"));
        assert!(same("REG.example/tool", "https://reg.example:443/"));
        // Anything else: no credentials.
        for (r, c) in [
            ("evil.example/tool", "reg.example"),
            ("reg.example:5001/tool", "reg.example:5000"),
            ("reg.example.evil.example/tool", "reg.example"),
            ("127.0.0.1:5000/tool", ""),
            ("localhost/tool", "docker.io"),
            ("docker.io/library/busybox", "reg.example"),
        ] {
            assert!(!same(r, c), "{r} on {c:?}");
        }
        // A short name on a node with a registry configured goes to that registry, with
        // its credentials; a Docker Hub name there does not.
        assert!(!same_registry(None, "reg.example"));
        assert!(!same_registry(Some("docker.io"), "reg.example"));
    }

    #[test]
    fn the_default_registry_applies_to_short_names_only() {
        let r: ImageRef = "tool:1".parse().unwrap();
        assert_eq!(
            r.with_default_registry("reg.example:5000").to_string(),
            "reg.example:5000/tool:1"
        );
        let r: ImageRef = "other.example/tool:1".parse().unwrap();
        assert_eq!(
            r.with_default_registry("reg.example").to_string(),
            "other.example/tool:1"
        );
    }
}
