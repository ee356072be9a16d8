//! Agents (CONTRACTS §10) hold no job slot: an agent waits on its tool calls, which are
//! jobs holding their own, so it can never keep them from starting. A test runtime of
//! the `agent` kind stands in for the real one: it submits its calls to the same
//! scheduler, one level deeper, and waits for each to finish, as `hanzo-agent` does.

use crate::util::*;
use hanzo_compute::{
    Capabilities, Compute, Execution, Health, Job, JobSpec, NodeKey, Runtime, RuntimeKind, Usage,
};
use hanzo_scheduler::{Options, Scheduler};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An agent that calls what its params say: `{"calls": [<call>...]}`, where a call is
/// `{"native": n}` (a gated job) or `{"agent": {"calls": [...]}}` (another agent).
struct Caller {
    scheduler: OnceLock<Scheduler>,
    hooks: Arc<Recorder>,
}

#[async_trait::async_trait]
impl Runtime for Caller {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Agent
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("none (test runtime)")
    }

    async fn health(&self) -> Health {
        Health::ok("test")
    }

    async fn execute(&self, job: &Job) -> Execution {
        let scheduler = self.scheduler.get().expect("bound");
        let mut outputs = Vec::new();
        for call in job.spec.params["calls"].as_array().cloned().unwrap_or_default() {
            let mut child = match (call.get("native"), call.get("agent")) {
                (Some(n), _) => gated(n.as_i64().unwrap(), 0),
                (_, Some(params)) => agent(params.clone()),
                _ => panic!("bad call {call}"),
            };
            child.depth = job.depth + 1;
            let id = child.id.clone();
            scheduler.submit(child).await.unwrap();
            wait_for(&self.hooks.notify, &format!("call {id}"), || {
                self.hooks.finished.lock().unwrap().contains_key(&id)
            })
            .await;
            outputs.push(ok(&self.hooks.outcome(&id)));
        }
        Execution {
            code_hash: None,
            function: "run".into(),
            result: Ok(json!({ "calls": outputs })),
            usage: Usage::default(),
            logs: Vec::new(),
        }
    }
}

fn agent(params: Value) -> Job {
    Job::new(JobSpec::new(RuntimeKind::Agent, "agent.toml").params(params))
}

/// A scheduler with the gated runtime and the calling agent.
fn env(slots: u32, max_agents: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let gated = Arc::new(Gated::new());
    let hooks = Arc::new(Recorder::default());
    let caller = Arc::new(Caller {
        scheduler: OnceLock::new(),
        hooks: hooks.clone(),
    });
    let mut compute = Compute::new(Arc::new(NodeKey::load_or_create(dir.path()).unwrap()));
    compute.register(gated.clone());
    compute.register(caller.clone());
    let options = Options {
        max_agents,
        ..Options::default()
    };
    let scheduler = Scheduler::new(Arc::new(compute), resources(slots, 16, 8), options, hooks.clone());
    let _ = caller.scheduler.set(scheduler.clone());
    Env {
        dir,
        gated,
        hooks,
        scheduler,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_one_slot_node_an_agent_and_its_calls_all_run() {
    let env = env(1, 1);
    env.gated.auto(Duration::from_millis(2));
    let a = agent(json!({"calls": [{"native": 1}, {"native": 2}]}));
    let id = a.id.clone();
    env.submit(&a).await;
    env.hooks.wait_finished(3).await;
    let out = ok(&env.hooks.outcome(&id));
    assert_eq!(out["calls"][1]["n"], 2, "{out}");
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.queued), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_calling_agents_take_no_place_beyond_their_root() {
    // One slot and one agent place: the nested agents take neither.
    let env = env(1, 1);
    env.gated.auto(Duration::from_millis(2));
    let inner = json!({"calls": [{"native": 3}]});
    let a = agent(json!({"calls": [{"agent": {"calls": [{"agent": inner}]}}, {"native": 4}]}));
    let id = a.id.clone();
    env.submit(&a).await;
    env.hooks.wait_finished(5).await;
    let out = ok(&env.hooks.outcome(&id));
    assert_eq!(out["calls"][0]["calls"][0]["calls"][0]["n"], 3, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_agents_bounds_the_agents_clients_start() {
    let env = env(10, 2);
    for i in 0..5 {
        env.submit(&agent(json!({"calls": [{"native": i}]}))).await;
    }
    // Two agents run, each waiting on its call; three wait in the queue.
    env.gated.wait_started(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snap = env.scheduler.snapshot();
    assert_eq!(
        snap.running_by_runtime.get(&RuntimeKind::Agent),
        Some(&2),
        "{snap:?}"
    );
    assert_eq!(snap.queued, 3, "{snap:?}");
    // Agents hold no slot: only their calls count.
    assert_eq!(snap.in_use.jobs, 2, "{snap:?}");
    env.gated.auto(Duration::from_millis(1));
    env.hooks.wait_finished(10).await;
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.queued, snap.in_use.jobs), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_waiting_for_a_place_holds_up_no_call() {
    // One place: the second agent waits, and the first one's 40 calls (more than the
    // backfill limit of jobs that may pass a blocked head) all start regardless.
    let env = env(1, 1);
    env.gated.auto(Duration::from_millis(1));
    let many: Vec<Value> = (0..40).map(|i| json!({ "native": i })).collect();
    let first = agent(json!({ "calls": many }));
    let second = agent(json!({"calls": [{"native": 100}]}));
    env.submit(&first).await;
    env.submit(&second).await;
    env.hooks.wait_finished(43).await;
    assert_eq!(
        ok(&env.hooks.outcome(&first.id))["calls"]
            .as_array()
            .unwrap()
            .len(),
        40
    );
    assert_eq!(ok(&env.hooks.outcome(&second.id))["calls"][0]["n"], 100);
}
