//! The `hanzo.*` labels every object of the node carries: the Docker runtime's
//! conventions, so one selector finds a node's work on either.

use std::collections::BTreeMap;

/// Present on every object the node creates.
pub const MANAGED: &str = "hanzo.managed";
/// The id of the node that created the object.
pub const NODE: &str = "hanzo.node";
/// The job (tool objects) or service (service objects) it belongs to.
pub const JOB: &str = "hanzo.job";
/// `tool` or `service`.
pub const KIND: &str = "hanzo.kind";
/// The service name (service objects).
pub const SERVICE: &str = "hanzo.service";

/// A Kubernetes label value for `raw`: at most 63 characters of `[A-Za-z0-9._-]`,
/// starting and ending alphanumeric. Node ids (64 hex digits) are cut to 63; the full
/// value goes into an annotation of the same key.
pub fn value(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "none".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The labels of a tool job and its pod.
pub fn tool(node_id: &str, job_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (NODE.to_string(), value(node_id)),
        (JOB.to_string(), value(job_id)),
        (KIND.to_string(), "tool".to_string()),
    ])
}

/// The annotations that keep what labels had to shorten.
pub fn tool_annotations(node_id: &str, job_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NODE.to_string(), node_id.to_string()),
        (JOB.to_string(), job_id.to_string()),
    ])
}

/// The selector of one job's objects.
pub fn job_selector(job_id: &str) -> String {
    format!("{MANAGED}=true,{JOB}={}", value(job_id))
}

/// The labels of a service's Deployment, Service, Ingress and pods; also the
/// Deployment's selector and the Service's, so they are fixed for a given node and
/// service (a Deployment's selector cannot change).
pub fn service(node_id: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (NODE.to_string(), value(node_id)),
        (KIND.to_string(), "service".to_string()),
        (SERVICE.to_string(), value(name)),
    ])
}

/// The selector of one service's pods.
pub fn service_selector(node_id: &str, name: &str) -> String {
    selector(&service(node_id, name))
}

/// The selector of every service of this node.
pub fn services_selector(node_id: &str) -> String {
    format!("{KIND}=service,{MANAGED}=true,{NODE}={}", value(node_id))
}

/// Whether `labels` are those of this node's service `name`: what the node may change
/// or delete. An object of the same name that another node (or a person) made is not.
pub fn is_service_of(labels: Option<&BTreeMap<String, String>>, node_id: &str, name: &str) -> bool {
    let Some(labels) = labels else { return false };
    service(node_id, name)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_valid_label_values() {
        assert_eq!(value(&"a".repeat(64)).len(), 63);
        assert_eq!(value("-x y_"), "x-y");
        assert_eq!(value(""), "none");
        assert_eq!(value("0123abcd"), "0123abcd");
    }
}
