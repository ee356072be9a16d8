//! The `hanzo.*` labels every container of the node carries.

/// Present on every container the node creates.
pub const MANAGED: &str = "hanzo.managed";
/// The id of the node that created the container.
pub const NODE: &str = "hanzo.node";
/// The job (tool containers) or service (service containers) it belongs to.
pub const JOB: &str = "hanzo.job";
/// `tool` or `service`.
pub const KIND: &str = "hanzo.kind";
/// The service name (service containers).
pub const SERVICE: &str = "hanzo.service";
/// The process that created a tool container (`<boot id>:<pid>:<start time>`): while it
/// runs, no other process of the same node reaps the container.
pub const OWNER: &str = "hanzo.owner";
