//! One-shot tool containers: create, attach, start, write the params, wait with the
//! job's timeout, collect, remove, whatever the outcome.

use crate::{DockerRuntime, containers, describe, hardening, labels};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
};
use futures_util::StreamExt;
use hanzo_compute::{CancelToken, ComputeError, Execution, Job, LimitKind, Usage};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Removes the container when dropped, unless already removed: covers a panic in the
/// container's task. (A caller that drops the job's future does not drop this guard: see
/// [`Lifecycle`].)
struct Cleanup {
    docker: Docker,
    id: Option<String>,
}

impl Cleanup {
    async fn remove_now(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = containers::remove(&self.docker, &id).await;
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let docker = self.docker.clone();
            handle.spawn(async move {
                let _ = containers::remove(&docker, &id).await;
            });
        }
    }
}

async fn kill(docker: &Docker, id: &str) {
    let _ = docker
        .kill_container(
            id,
            Some(KillContainerOptionsBuilder::default().signal("KILL").build()),
        )
        .await;
}

/// Removes the tool containers of `node_id` whose creating process is gone (a crash
/// left them); a live process's containers are its own business.
pub(crate) async fn reap_orphans(docker: &Docker, node_id: &str) -> Result<usize, ComputeError> {
    let list = containers::labelled(
        docker,
        vec![
            format!("{}={node_id}", labels::NODE),
            format!("{}=tool", labels::KIND),
        ],
    )
    .await?;
    // A container whose creator still runs is that process's (a `serve` beside this
    // one-off run): keep it. One without the label predates it: an orphan.
    let orphans = tokio::task::spawn_blocking(move || {
        list.into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(labels::OWNER))
                    .is_none_or(|owner| !crate::owner::is_alive(owner))
            })
            .filter_map(|c| c.id)
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ComputeError::internal)?;
    let mut n = 0;
    for id in orphans {
        if containers::remove(docker, &id).await.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// How the container's run ended, before it is named for the user.
enum Ended {
    Exited(i64),
    OutputOverflow,
    TimedOut,
    Cancelled,
}

/// The exit status of a process killed by SIGKILL (128 + 9), as the init reports it.
const SIGKILLED: i64 = 137;

/// Whether the kernel's OOM killer ended the container. An OOM kill shows as exit 137,
/// and the daemon's `OOMKilled` flag says so, but that flag comes from an OOM event
/// which, on a loaded host, can arrive after the cgroup is gone and be dropped: so a
/// SIGKILL the runtime did not send (it sends none before the tool exits on its own)
/// also counts when the container's memory cgroup recorded the limit being hit.
///
/// Where the kernel counts OOM kills (`oom_kill`, Linux 4.13+), that count decides, so a
/// tool that fills its memory and then SIGKILLs itself is a plain failure. Only on older
/// kernels does a charge refused at the limit stand in for the count; such a tool is
/// then named a memory limit error, which gains it nothing.
fn oom_killed(ended: &Ended, daemon_says: bool, memory: Option<crate::cgroup::MemoryRecord>) -> bool {
    match ended {
        Ended::Exited(code) => daemon_says || (*code == SIGKILLED && memory.is_some_and(|m| m.hit_limit())),
        // The runtime killed it (timeout, cancel, output cap): that limit names it.
        _ => false,
    }
}

/// Runs one tool job.
pub(crate) async fn run(rt: &DockerRuntime, job: &Job) -> Execution {
    let spec = &job.spec;
    let mut exec = Execution::rejected(spec, ComputeError::internal("not run"));
    let (image, digest) = match rt.resolve_image(&spec.source).await {
        Ok(resolved) => resolved,
        Err(e) => return Execution::rejected(spec, e),
    };
    let docker = match rt.client().await {
        Ok(d) => d.clone(),
        Err(e) => return Execution::rejected(spec, e),
    };
    exec.code_hash = Some(digest);
    let body = match hardening::tool_container(&image, job, &rt.options.config, &rt.options.node_id) {
        Ok(b) => b,
        Err(e) => {
            exec.result = Err(e);
            return exec;
        }
    };
    let params = match serde_json::to_vec(&spec.params) {
        Ok(p) => p,
        Err(e) => {
            exec.result = Err(ComputeError::invalid(format!("params cannot be serialised: {e}")));
            return exec;
        }
    };

    // The container's life runs on its own task, which always ends by removing the
    // container: a caller that drops this future (a client hanging up, a `select!`
    // elsewhere) only tells the task to stop. Were the create awaited here, a drop while
    // it is in flight would leave the container behind for good: the daemon has made
    // it, but its id never reaches a guard that could remove it. Under load that window
    // is wide (the daemon's answer waits for a busy worker thread).
    let abandoned = CancelToken::new();
    let _abandon_on_drop = AbandonOnDrop(abandoned.clone());
    let lifecycle = Lifecycle {
        docker,
        job: job.clone(),
        params,
        pids_limit: rt.options.config.pids_limit,
        abandoned,
    };
    let code_hash = exec.code_hash.clone();
    match tokio::spawn(lifecycle.run(body, exec)).await {
        Ok(exec) => exec,
        // A panic in the task (its guard removed the container while unwinding), or
        // the tokio runtime shutting down (the next start reaps the orphan).
        Err(e) => {
            let mut exec = Execution::rejected(
                spec,
                ComputeError::internal(format!("the container task failed: {e}")),
            );
            exec.code_hash = code_hash;
            exec
        }
    }
}

/// Fires its token when dropped: when the caller drops the job's future, the
/// container's task stops the container and removes it.
struct AbandonOnDrop(CancelToken);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What the container's task owns: everything it needs to run the container and remove
/// it, whether or not anyone still waits for the result.
struct Lifecycle {
    docker: Docker,
    job: Job,
    params: Vec<u8>,
    pids_limit: u32,
    /// Fires when the caller dropped the job: stop as for a cancellation.
    abandoned: CancelToken,
}

impl Lifecycle {
    /// Creates, runs and removes the container; returns `exec` completed.
    async fn run(self, body: ContainerCreateBody, mut exec: Execution) -> Execution {
        let name = format!("hanzo-tool-{}", self.job.id);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await;
        let id = match created {
            Ok(c) => c.id,
            Err(e) => {
                exec.result = Err(crate::create_error("the container", &e));
                return exec;
            }
        };
        let mut cleanup = Cleanup {
            docker: self.docker.clone(),
            id: Some(id.clone()),
        };
        // A job cancelled or dropped while its container was being created is not started.
        exec.result = if self.abandoned.is_cancelled() || self.job.cancel.is_cancelled() {
            Err(ComputeError::Cancelled)
        } else {
            run_container(&self, &id, &mut exec.usage, &mut exec.logs).await
        };
        cleanup.remove_now().await;
        exec
    }
}

async fn run_container(
    lifecycle: &Lifecycle,
    id: &str,
    usage: &mut Usage,
    logs: &mut Vec<u8>,
) -> Result<serde_json::Value, ComputeError> {
    let Lifecycle {
        docker,
        job,
        params,
        pids_limit,
        abandoned,
    } = lifecycle;
    let limits = &job.spec.limits;
    // Attach before starting, so not a byte of output is missed.
    let attach = docker
        .attach_container(
            id,
            Some(
                AttachContainerOptionsBuilder::default()
                    .stdin(true)
                    .stdout(true)
                    .stderr(true)
                    .stream(true)
                    .build(),
            ),
        )
        .await
        .map_err(|e| ComputeError::internal(format!("cannot attach to the container: {}", describe(&e))))?;
    // The daemon binds the mounts at start, by path: check them again as late as we
    // can (see hardening::check_bind_source).
    for m in &job.spec.mounts {
        crate::hardening::check_bind_source(m)?;
    }
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|e| ComputeError::ToolFailed(format!("the container did not start: {}", describe(&e))))?;
    let started = Instant::now();
    let memory_watch = crate::cgroup::MemoryWatch::start(id);
    // Checked arithmetic: a timeout past what an Instant can hold means no deadline
    // worth the name, not a panic (the node's ceilings keep real jobs far below it).
    let deadline = started
        .checked_add(Duration::from_millis(limits.timeout_ms))
        .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 86_400));
    let cap = usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX);

    let mut input = attach.input;
    let mut output = attach.output;
    let mut stdout = Vec::new();
    let mut log_buf = hanzo_compute::stdio::LogBuffer::default().with_sink(job.logs.clone());
    let write_params = async {
        // A tool that exits without reading its stdin closes the pipe: not an error.
        let _ = input.write_all(params).await;
        let _ = input.shutdown().await;
    };
    let collect = async {
        while let Some(frame) = output.next().await {
            match frame {
                Ok(LogOutput::StdOut { message }) => {
                    if stdout.len() + message.len() > cap {
                        return Ended::OutputOverflow;
                    }
                    stdout.extend_from_slice(&message);
                }
                Ok(LogOutput::StdErr { message }) => log_buf.push(&message),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The streams closed: the process exited. Ask for its code.
        let mut wait = docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(r)) => Ended::Exited(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ended::Exited(code),
            _ => Ended::Exited(-1),
        }
    };
    // Feed stdin while reading the output, but stop waiting for the writer once the
    // output has ended: a tool may exit without reading its params, and the daemon
    // need not drain stdin then, which would otherwise hold the job to its deadline.
    let run = async {
        tokio::pin!(write_params);
        tokio::pin!(collect);
        let mut writing = true;
        loop {
            tokio::select! {
                _ = &mut write_params, if writing => writing = false,
                ended = &mut collect => break ended,
            }
        }
    };
    let ended = tokio::select! {
        ended = run => ended,
        _ = tokio::time::sleep_until(deadline.into()) => Ended::TimedOut,
        _ = job.cancel.cancelled() => Ended::Cancelled,
        _ = abandoned.cancelled() => Ended::Cancelled,
    };
    // The kernel's record lives in the container's cgroup, which the runtime deletes
    // as soon as the container stops: read it while the container still runs (for a
    // tool that exited on its own, the memory watch kept the last record).
    // Hang up the attach connection first: while nobody reads it, the daemon can sit
    // blocked on a tool that is still writing, and the kill would wait behind it.
    drop(input);
    drop(output);
    let mut forks_refused = 0;
    if !matches!(ended, Ended::Exited(_)) {
        forks_refused = crate::cgroup::pids_refused(id).unwrap_or(0);
        usage.peak_memory_bytes = crate::cgroup::peak_memory(id);
        kill(docker, id).await;
    }
    forks_refused = forks_refused.max(memory_watch.forks_refused());
    let memory = memory_watch.finish();
    if usage.peak_memory_bytes.is_none() {
        usage.peak_memory_bytes = memory.and_then(|m| m.peak);
    }
    usage.set_wall_time(started.elapsed());
    *logs = log_buf.finish();
    let state = docker
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|c| c.state);
    let oom = oom_killed(
        &ended,
        state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false),
        memory,
    );
    let processes = || {
        ComputeError::limit(
            LimitKind::Processes,
            format!("the tool hit the limit of {pids_limit} processes ({forks_refused} forks refused)"),
        )
    };
    match ended {
        Ended::Cancelled => Err(ComputeError::Cancelled),
        Ended::OutputOverflow => Err(ComputeError::limit(
            LimitKind::Output,
            format!("the tool wrote more than {cap} bytes of output"),
        )),
        Ended::Exited(_) if oom => Err(ComputeError::limit(
            LimitKind::Memory,
            format!(
                "killed by the kernel at the {} MiB memory limit (memory_mb)",
                limits.memory_mb
            ),
        )),
        Ended::Exited(0) => hanzo_compute::stdio::parse_output(&stdout),
        // A tool that ran out its time while the pids limit was refusing its forks was
        // held there by that limit (a fork bomb): name it.
        Ended::TimedOut if forks_refused > 0 => Err(processes()),
        Ended::TimedOut => Err(ComputeError::limit(
            LimitKind::Timeout,
            format!("killed after the {} ms timeout", limits.timeout_ms),
        )),
        // A tool that failed after the pids limit refused its forks failed for that
        // limit (a shell's "can't fork"), as one killed at the memory limit did.
        Ended::Exited(code) if code != 0 && forks_refused > 0 => Err(processes()),
        Ended::Exited(code) => Err(hanzo_compute::stdio::failure(code, &stdout, logs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::MemoryRecord;

    #[test]
    fn an_oom_kill_is_named_even_when_the_daemon_missed_it() {
        let at_limit = MemoryRecord {
            failcnt: 12,
            oom_kills: Some(1),
            peak: Some(32 << 20),
            limit: Some(32 << 20),
        };
        let quiet = MemoryRecord {
            peak: Some(1 << 20),
            limit: Some(32 << 20),
            ..MemoryRecord::default()
        };
        // Filled to the limit, then killed itself: no OOM kill counted.
        let self_killed = MemoryRecord {
            failcnt: 12,
            oom_kills: Some(0),
            peak: Some(32 << 20),
            limit: Some(32 << 20),
        };
        // The daemon's flag alone.
        assert!(oom_killed(&Ended::Exited(137), true, None));
        // The flag lost to the race: the cgroup's record decides.
        assert!(oom_killed(&Ended::Exited(137), false, Some(at_limit)));
        assert!(!oom_killed(&Ended::Exited(137), false, Some(quiet)));
        assert!(!oom_killed(&Ended::Exited(137), false, Some(self_killed)));
        assert!(
            !oom_killed(&Ended::Exited(137), false, None),
            "unknown: a plain failure"
        );
        // Only a SIGKILL is an OOM kill; another exit of a tool at its limit is its own.
        assert!(!oom_killed(&Ended::Exited(1), false, Some(at_limit)));
        // When the runtime killed it, its own reason stands.
        for ended in [Ended::TimedOut, Ended::Cancelled, Ended::OutputOverflow] {
            assert!(!oom_killed(&ended, false, Some(at_limit)));
        }
    }
}
