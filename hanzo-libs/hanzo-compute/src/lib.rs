//! # hanzo-compute
//!
//! The core of hanzo-node, with almost no dependencies: what a job is
//! ([`JobSpec`]), the limits it runs under ([`ResourceLimits`]), the trait every
//! runtime implements ([`Runtime`]), the errors they share ([`ComputeError`]), the
//! registry that dispatches jobs to runtimes and signs receipts ([`Compute`]), the
//! receipts themselves ([`Receipt`]), the node's configuration ([`Config`]), and the
//! [`conformance`] suite every runtime must pass.

pub mod agent;
pub mod billing;
pub mod cache;
pub mod canonical;
pub mod config;
pub mod conformance;
mod error;
pub mod failpoints;
pub mod files;
pub mod fingerprint;
mod job;
pub mod keys;
mod limits;
pub mod mounts;
pub mod policy;
pub mod progress;
pub mod receipt;
mod registry;
mod runtime;
pub mod service;
pub mod stdio;
mod unavailable;

pub use config::Config;
pub use error::ComputeError;
pub use fingerprint::Machine;
pub use job::{
    DEFAULT_FUNCTION, JobSpec, MAX_VERIFICATION_PEERS, Mount, Network, Placement, RuntimeKind, Verification,
    looks_like_peer_id, parse_digest_source, parse_env_pair,
};
pub use keys::NodeKey;
pub use limits::{
    Capabilities, Ceilings, DEFAULT_MAX_OUTPUT_BYTES, LimitKind, LimitSupport, ResourceLimits, Support,
};
pub use receipt::{Receipt, VerifyError};
pub use registry::{Compute, JobOutcome, Signing};
pub use runtime::{
    Attempt, CancelToken, Execution, Health, Job, Runtime, ToolDescription, Usage, new_job_id,
};
pub use service::{RestartPolicy, ServiceRuntime, ServiceSpec, ServiceStatus};
pub use unavailable::UnavailableRuntime;
