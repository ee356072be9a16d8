//! The node's named tools as agents call them ([`hanzo_agent::Tools`]): each tool
//! call is a job like `POST /v1/tools/{name}/call?wait=true` (params checked against
//! the tool's schema, the tool's limits, the API's policy, stored in the job store),
//! one level deeper than its agent, its timeout cut to what the agent has left, and
//! cancelled when the agent is.

use crate::State;
use crate::routes::{enqueue_at, wait_or_cancel};
use axum::http::StatusCode;
use hanzo_agent::{Call, Child, ToolDef};
use hanzo_compute::{ComputeError, RuntimeKind};
use std::sync::{Arc, Weak};

/// The API as the agents' host of tools. Weak: the API owns the scheduler, which
/// owns the agent runtime, which holds this.
pub(crate) struct AgentHost {
    pub(crate) state: Weak<State>,
}

impl AgentHost {
    fn state(&self) -> Result<Arc<State>, ComputeError> {
        self.state
            .upgrade()
            .ok_or_else(|| ComputeError::Unavailable("the node is shutting down".into()))
    }
}

fn refused(code: &str, message: String) -> Child {
    Child {
        job_id: None,
        result: Err((code.to_string(), message)),
        receipt: None,
    }
}

#[async_trait::async_trait]
impl hanzo_agent::Tools for AgentHost {
    async fn describe(&self, name: &str) -> Result<Option<ToolDef>, ComputeError> {
        let state = self.state()?;
        match crate::tools::stored(&state, name).await {
            Ok(t) => Ok(Some(ToolDef {
                agent: t.spec.runtime == RuntimeKind::Agent,
                name: t.spec.name,
                description: t.spec.description,
                schema: t.spec.schema,
            })),
            Err(e) if e.status == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(ComputeError::internal(e.message)),
        }
    }

    async fn call(&self, call: Call) -> Result<Child, ComputeError> {
        let state = self.state()?;
        let tool = match crate::tools::stored(&state, &call.tool).await {
            Ok(t) => t,
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                return Ok(refused(
                    "unknown_tool",
                    format!("the node has no tool '{}'", call.tool),
                ));
            }
            Err(e) => return Err(ComputeError::internal(e.message)),
        };
        if let Err(e) = crate::tools::validate(&tool, &call.params) {
            return Ok(refused(e.code, e.message));
        }
        let mut spec = crate::tools::tool_job(tool, call.params);
        let left = call
            .deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis();
        if left == 0 {
            return Ok(refused(
                "limit_exceeded",
                "timeout: the agent has no time left".into(),
            ));
        }
        // The call cannot outlive its agent.
        spec.limits.timeout_ms = spec
            .limits
            .timeout_ms
            .min(u64::try_from(left).unwrap_or(u64::MAX));
        let submitted = match enqueue_at(&state, spec, true, call.depth).await {
            Ok(s) => s,
            Err(e) => return Ok(refused(e.code, e.message)),
        };
        let id = submitted.id;
        let Some(done) = submitted.done else {
            return Err(ComputeError::internal("the job has no waiter"));
        };
        // The agent was cancelled or ran out of time: so is its call.
        let (record, result) = wait_or_cancel(&state, &id, done, call.cancel.cancelled())
            .await
            .map_err(|e| ComputeError::internal(e.message))?;
        Ok(Child {
            job_id: Some(id),
            result,
            receipt: record.receipt,
        })
    }
}
