//! Building a kube [`Client`] from `[compute.kubernetes]`: a kubeconfig file (with `~`
//! expanded) and context, or the pod's own service account when the node runs in the
//! cluster.

use crate::errors::{K8sError, describe};
use hanzo_compute::config::KubernetesConfig;
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;

/// `~` or `~/...` expanded against `$HOME`; anything else unchanged.
pub fn expand_home(path: &str) -> PathBuf {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(h)) => PathBuf::from(h),
        (Some(rest), Some(h)) if rest.starts_with('/') => PathBuf::from(h).join(&rest[1..]),
        _ => PathBuf::from(path),
    }
}

/// Where the client configuration comes from, decided from the config and the
/// environment without touching the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This kubeconfig file.
    File(PathBuf),
    /// kube's default lookup (`$KUBECONFIG`, then `~/.kube/config`).
    DefaultLookup,
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` is set).
    InCluster,
}

/// Chooses the source: an explicit, existing kubeconfig wins; an empty or missing one
/// means in-cluster when `KUBERNETES_SERVICE_HOST` is set; an empty one otherwise means
/// kube's default lookup; a missing one otherwise is an error.
pub fn source(config: &KubernetesConfig, in_cluster: bool) -> Result<Source, K8sError> {
    if config.config_path.trim().is_empty() {
        return Ok(if in_cluster {
            Source::InCluster
        } else {
            Source::DefaultLookup
        });
    }
    let path = expand_home(config.config_path.trim());
    if path.exists() {
        Ok(Source::File(path))
    } else if in_cluster {
        Ok(Source::InCluster)
    } else {
        Err(K8sError::Kubeconfig {
            path: path.display().to_string(),
            reason: "no such file; set [compute.kubernetes] config_path, or run the node in the cluster"
                .into(),
        })
    }
}

/// The client for `config`.
pub async fn build(config: &KubernetesConfig) -> Result<Client, K8sError> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty());
    let options = KubeConfigOptions {
        context: (!config.context.is_empty()).then(|| config.context.clone()),
        ..Default::default()
    };
    let kube_config = match source(config, in_cluster)? {
        Source::InCluster => Config::incluster().map_err(|e| K8sError::InCluster(describe(&e)))?,
        Source::DefaultLookup => {
            Config::from_kubeconfig(&options)
                .await
                .map_err(|e| K8sError::Kubeconfig {
                    path: "$KUBECONFIG or ~/.kube/config".into(),
                    reason: describe(&e),
                })?
        }
        Source::File(path) => {
            let bad = |reason: String| K8sError::Kubeconfig {
                path: path.display().to_string(),
                reason,
            };
            let file = Kubeconfig::read_from(&path).map_err(|e| bad(describe(&e)))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| bad(describe(&e)))?
        }
    };
    Client::try_from(kube_config).map_err(|e| K8sError::Client(describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let mut c = KubernetesConfig {
            config_path: String::new(),
            ..Default::default()
        };
        assert_eq!(source(&c, true).unwrap(), Source::InCluster);
        assert_eq!(source(&c, false).unwrap(), Source::DefaultLookup);
        c.config_path = "/nonexistent/kubeconfig".into();
        assert_eq!(source(&c, true).unwrap(), Source::InCluster);
        assert!(
            source(&c, false)
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/kubeconfig")
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        c.config_path = f.path().display().to_string();
        assert_eq!(source(&c, true).unwrap(), Source::File(f.path().to_path_buf()));
    }

    #[test]
    fn home_is_expanded() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            expand_home("~/.kube/config"),
            PathBuf::from(&home).join(".kube/config")
        );
        assert_eq!(expand_home("/etc/k"), PathBuf::from("/etc/k"));
        assert_eq!(expand_home("~x/y"), PathBuf::from("~x/y"));
    }
}
