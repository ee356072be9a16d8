//! One tool run: create the Job, watch its pod (kube-runtime's watcher), attach to the
//! container with stdin, stdout and stderr as separate streams, write the params and
//! close stdin, read the output and the logs apart, take the exit from the pod's
//! status, and delete the Job (and with it the pod) whatever the outcome.

use crate::errors::{self, ATTACH_POD, CREATE_JOB, DELETE_JOB, GET_JOB, GET_LOG, WATCH_PODS};
use crate::{KubernetesRuntime, labels, manifest};
use futures_util::StreamExt;
use hanzo_compute::stdio::{self, LogBuffer, LogSink};
use hanzo_compute::{ComputeError, Execution, Job, LimitKind};
use k8s_openapi::api::batch::v1::Job as K8sJob;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::Api;
use kube::api::{AttachParams, DeleteParams, LogParams, PostParams};
use kube::runtime::watcher;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waiting reasons of a container whose image will not come: the kubelet would retry
/// them with a back-off until the deadline, so the node fails fast instead.
const PULL_ERRORS: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
];

/// Waiting reasons that mean the container cannot be created as specified (an image
/// that must run as root under `runAsNonRoot`, a bad command).
const CREATE_ERRORS: [&str; 3] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Consecutive watch failures tolerated before the job fails, and the pause between.
const MAX_WATCH_RETRIES: u32 = 5;
const WATCH_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long the attach streams may take to drain after the container terminated.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Deletes the Job when dropped, unless already deleted: covers errors, panics and a
/// caller that drops the job's future (cancellation by the scheduler).
struct Cleanup {
    jobs: Api<K8sJob>,
    name: Option<String>,
}

/// Background propagation: the API server deletes the Job now and the garbage
/// collector its pod right after, without the node waiting for the kubelet.
fn delete_params() -> DeleteParams {
    DeleteParams::background()
}

impl Cleanup {
    async fn delete_now(&mut self) -> Result<(), kube::Error> {
        match self.name.take() {
            Some(name) => match self.jobs.delete(&name, &delete_params()).await {
                Ok(_) => Ok(()),
                // Already gone (the TTL controller, an operator): nothing left to remove.
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(name) = self.name.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let jobs = self.jobs.clone();
            handle.spawn(async move {
                let _ = jobs.delete(&name, &delete_params()).await;
            });
        }
    }
}

/// What the attach streams delivered.
#[derive(Default)]
struct Streams {
    stdout: Vec<u8>,
    logs: LogBuffer,
    overflow: bool,
    error: Option<kube::Error>,
}

type IoFuture = Pin<Box<dyn Future<Output = Streams> + Send>>;

/// Attaches to the tool's container, writes the params, closes stdin, and reads stdout
/// (up to `cap`) and stderr apart until both end. Every kept stderr chunk also goes to
/// `sink` as it arrives (the job's live logs).
fn attach(pods: Api<Pod>, pod: String, params: Vec<u8>, cap: usize, sink: LogSink) -> IoFuture {
    Box::pin(async move {
        let mut streams = Streams::default();
        let ap = AttachParams::default()
            .container(manifest::CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .max_stdout_buf_size(64 * 1024)
            .max_stderr_buf_size(64 * 1024);
        let mut proc = match pods.attach(&pod, &ap).await {
            Ok(p) => p,
            Err(e) => {
                streams.error = Some(e);
                return streams;
            }
        };
        let (Some(mut stdin), Some(mut out), Some(mut err)) = (proc.stdin(), proc.stdout(), proc.stderr())
        else {
            return streams;
        };
        let write = async move {
            // A tool that exits without reading its params closes its stdin: not an error.
            let _ = stdin.write_all(&params).await;
            // EOF on stdin: the v5 protocol's close frame, after which the kubelet closes
            // the container's stdin for good (stdinOnce).
            let _ = stdin.shutdown().await;
        };
        let read_out = async move {
            let (mut stdout, mut buf) = (Vec::new(), vec![0u8; 16 * 1024]);
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => return (stdout, false),
                    Ok(n) if stdout.len() + n > cap => return (stdout, true),
                    Ok(n) => stdout.extend_from_slice(&buf[..n]),
                }
            }
        };
        let read_err = async move {
            let (mut logs, mut buf) = (
                LogBuffer::new(stdio::LOG_CAP).with_sink(sink),
                vec![0u8; 16 * 1024],
            );
            // Logs are drained whatever their size, so a chatty tool never blocks on a
            // full pipe; LogBuffer keeps the first LOG_CAP bytes.
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                logs.push(&buf[..n]);
            }
            logs
        };
        // Feed stdin while reading, but stop waiting for the writer once the output has
        // ended: a tool may exit without reading its params.
        tokio::pin!(write, read_out, read_err);
        let (mut writing, mut out_open, mut err_open) = (true, true, true);
        while out_open || err_open {
            tokio::select! {
                _ = &mut write, if writing => writing = false,
                (stdout, overflow) = &mut read_out, if out_open => {
                    out_open = false;
                    streams.stdout = stdout;
                    streams.overflow = overflow;
                    if overflow { break; }
                }
                logs = &mut read_err, if err_open => {
                    err_open = false;
                    streams.logs = logs;
                }
            }
        }
        drop(proc);
        streams
    })
}

/// The container's state, as far as the node cares.
enum Container {
    Waiting { reason: String, message: String },
    Running,
    Terminated(ContainerStateTerminated),
    Unknown,
}

fn container(pod: &Pod) -> (Container, Option<String>) {
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == manifest::CONTAINER));
    let Some(status) = status else {
        return (Container::Unknown, None);
    };
    let image_id = image_digest(&status.image_id);
    let state = match status.state.as_ref() {
        Some(s) if s.terminated.is_some() => Container::Terminated(s.terminated.clone().unwrap_or_default()),
        Some(s) if s.running.is_some() => Container::Running,
        Some(s) => match &s.waiting {
            Some(w) => Container::Waiting {
                reason: w.reason.clone().unwrap_or_default(),
                message: w.message.clone().unwrap_or_default(),
            },
            None => Container::Unknown,
        },
        None => Container::Unknown,
    };
    (state, image_id)
}

/// The hex digest of an `imageID` (`docker.io/library/busybox@sha256:<hex>` or
/// `sha256:<hex>`), which receipts record as `code_hash` as the Docker runtime does.
pub(crate) fn image_digest(image_id: &str) -> Option<String> {
    let hex = image_id.rsplit_once("sha256:")?.1;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

/// Why a pod that has not started is waiting (unschedulable, ...), for messages.
fn pending_reason(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.status == "False" && c.message.is_some())
        .map(|c| {
            format!(
                "{}: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )
        })
}

/// A whole pod's failure (not its container's): eviction, or the pod's deadline.
fn pod_failure(pod: &Pod, timeout_ms: u64) -> Option<ComputeError> {
    let status = pod.status.as_ref()?;
    let reason = status.reason.as_deref()?;
    let message = status.message.clone().unwrap_or_default();
    match reason {
        // The kubelet evicts a pod past its ephemeral-storage limit (disk_mb) with a
        // message naming it; any other eviction is node pressure, not the job's doing.
        "Evicted" if message.contains("ephemeral") && message.contains("exceeds") => Some(
            ComputeError::limit(LimitKind::Disk, format!("the kubelet evicted the pod: {message}")),
        ),
        "Evicted" => Some(ComputeError::Unavailable(format!(
            "the cluster evicted the tool's pod: {message}"
        ))),
        "DeadlineExceeded" => Some(ComputeError::limit(
            LimitKind::Timeout,
            format!("the pod passed its deadline ({timeout_ms} ms timeout plus the start allowance)"),
        )),
        _ => None,
    }
}

/// Runs one tool job.
pub(crate) async fn run(rt: &KubernetesRuntime, job: &Job) -> Execution {
    let spec = &job.spec;
    let mut exec = Execution::rejected(spec, ComputeError::internal("not run"));
    let manifest = match manifest::tool_job(job, &rt.config, &rt.node_id) {
        Ok(m) => m,
        Err(e) => return Execution::rejected(spec, e),
    };
    let params = match serde_json::to_vec(&spec.params) {
        Ok(p) => p,
        Err(e) => {
            return Execution::rejected(
                spec,
                ComputeError::invalid(format!("params cannot be serialised: {e}")),
            );
        }
    };
    let ns = rt.config.namespace.as_str();
    let jobs: Api<K8sJob> = Api::namespaced(rt.client.clone(), ns);
    let name = manifest.metadata.name.clone().unwrap_or_default();
    let started = Instant::now();
    if job.cancel.is_cancelled() {
        exec.result = Err(ComputeError::Cancelled);
        return exec;
    }
    if let Err(e) = jobs.create(&PostParams::default(), &manifest).await {
        exec.result = Err(errors::api(CREATE_JOB, ns, &e));
        return exec;
    }
    let mut cleanup = Cleanup {
        jobs: jobs.clone(),
        name: Some(name.clone()),
    };
    let mut run = Supervisor {
        rt,
        job,
        jobs: &jobs,
        pods: Api::namespaced(rt.client.clone(), ns),
        params,
        code_hash: None,
        stdout: Vec::new(),
        logs: Vec::new(),
    };
    let result = run.supervise().await;
    exec.usage.set_wall_time(started.elapsed());
    let deleted = cleanup.delete_now().await;
    exec.code_hash = run.code_hash.take();
    exec.logs = std::mem::take(&mut run.logs);
    exec.result = match (result, deleted) {
        (Ok(v), Ok(())) => Ok(v),
        // The output is there but the Job is not gone: the TTL will remove it; a success
        // must not hide that the node lacks the right to clean up after itself.
        (Ok(_), Err(e)) => Err(errors::api(DELETE_JOB, ns, &e)),
        (Err(e), _) => Err(e),
    };
    exec
}

struct Supervisor<'a> {
    rt: &'a KubernetesRuntime,
    job: &'a Job,
    jobs: &'a Api<K8sJob>,
    pods: Api<Pod>,
    params: Vec<u8>,
    code_hash: Option<String>,
    stdout: Vec<u8>,
    logs: Vec<u8>,
}

/// The state of the current pod attempt.
#[derive(Default)]
struct Attempt {
    uid: String,
    name: String,
    io: Option<IoFuture>,
    attached: bool,
    drained: bool,
    terminated: Option<ContainerStateTerminated>,
    drain_deadline: Option<Instant>,
}

impl Supervisor<'_> {
    async fn supervise(&mut self) -> Result<serde_json::Value, ComputeError> {
        let ns = self.rt.config.namespace.clone();
        let limits = &self.job.spec.limits;
        let cap = usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX);
        let selector = labels::job_selector(&self.job.id);
        let mut events = watcher(self.pods.clone(), watcher::Config::default().labels(&selector)).boxed();
        let start_allowance = Duration::from_secs(self.rt.config.pod_start_timeout_seconds);
        let mut deadline = Instant::now() + start_allowance;
        let mut running_since: Option<Instant> = None;
        let mut attempt = Attempt::default();
        let mut done_uids: Vec<String> = Vec::new();
        let mut failed_pods: i32 = 0;
        let mut waiting_for = String::from("no pod yet");
        let mut watch_retries = 0;
        loop {
            let io_live = attempt.io.is_some();
            let drain_at = attempt.drain_deadline;
            tokio::select! {
                _ = self.job.cancel.cancelled() => return Err(ComputeError::Cancelled),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return Err(match running_since {
                        Some(_) => ComputeError::limit(
                            LimitKind::Timeout,
                            format!("killed after the {} ms timeout", limits.timeout_ms),
                        ),
                        None => ComputeError::Unavailable(format!(
                            "the cluster did not start the tool's pod within {} s ({waiting_for}); \
                             see [compute.kubernetes] pod_start_timeout_seconds",
                            start_allowance.as_secs()
                        )),
                    });
                }
                _ = tokio::time::sleep_until(drain_at.unwrap_or(deadline).into()), if drain_at.is_some() => {
                    // The container ended but the attach stream did not: stop waiting.
                    attempt.io = None;
                    attempt.drained = true;
                }
                streams = async { attempt.io.as_mut().expect("guarded").await }, if io_live => {
                    attempt.io = None;
                    attempt.drained = true;
                    if streams.overflow {
                        self.logs = streams.logs.clone().finish();
                        return Err(ComputeError::limit(
                            LimitKind::Output,
                            format!("the tool wrote more than {cap} bytes of output"),
                        ));
                    }
                    let mut logs = streams.logs;
                    self.stdout = streams.stdout;
                    self.logs = logs.finish();
                    if let Some(e) = streams.error {
                        // The attach itself failed. Forbidden is a configuration error to
                        // report now; otherwise the container may simply have ended first,
                        // which its status will tell.
                        if matches!(&e, kube::Error::Api(s) if s.code == 403) || errors::unreachable(&e) {
                            return Err(errors::api(ATTACH_POD, &ns, &e));
                        }
                        attempt.attached = false;
                    }
                }
                event = events.next() => {
                    let pod = match event {
                        None => return Err(ComputeError::internal("the pod watch ended")),
                        Some(Err(e)) => {
                            // The watcher re-lists by itself after an expired resource
                            // version (410) or a dropped connection; only errors the API
                            // server answered (forbidden, ...) or repeated failures end
                            // the job.
                            if transient(&e) && watch_retries < MAX_WATCH_RETRIES {
                                watch_retries += 1;
                                tokio::time::sleep(WATCH_RETRY_PAUSE).await;
                                continue;
                            }
                            return Err(watch_error(&ns, e));
                        }
                        Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => p,
                        Some(Ok(watcher::Event::Delete(p))) => {
                            let uid = p.metadata.uid.clone().unwrap_or_default();
                            if done_uids.contains(&uid) {
                                continue;
                            }
                            if uid == attempt.uid || attempt.uid.is_empty() {
                                return Err(self.pod_deleted(&ns, &waiting_for).await);
                            }
                            continue;
                        }
                        Some(Ok(_)) => continue,
                    };
                    watch_retries = 0;
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if done_uids.contains(&uid) {
                        continue;
                    }
                    if attempt.uid != uid {
                        attempt = Attempt { uid: uid.clone(), name: pod.metadata.name.clone().unwrap_or_default(), ..Default::default() };
                    }
                    if let Some(e) = pod_failure(&pod, limits.timeout_ms) {
                        return Err(e);
                    }
                    let (state, digest) = container(&pod);
                    if digest.is_some() {
                        self.code_hash = digest;
                    }
                    match state {
                        Container::Unknown => {
                            if let Some(why) = pending_reason(&pod) {
                                waiting_for = why;
                            }
                        }
                        Container::Waiting { reason, message } => {
                            if PULL_ERRORS.contains(&reason.as_str()) {
                                return Err(ComputeError::invalid(format!(
                                    "cannot pull image {}: {reason}: {message}",
                                    self.job.spec.source
                                )));
                            }
                            if CREATE_ERRORS.contains(&reason.as_str()) {
                                return Err(ComputeError::invalid(format!(
                                    "the container cannot start: {reason}: {message}"
                                )));
                            }
                            waiting_for = if message.is_empty() { reason } else { format!("{reason}: {message}") };
                        }
                        Container::Running => {
                            if running_since.is_none() {
                                let now = Instant::now();
                                running_since = Some(now);
                                // Checked: a timeout past an Instant's range is no deadline, not a panic.
                                deadline = now
                                    .checked_add(Duration::from_millis(limits.timeout_ms))
                                    .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
                            }
                            if !attempt.attached && attempt.io.is_none() && !attempt.drained {
                                attempt.attached = true;
                                attempt.io = Some(attach(
                                    self.pods.clone(),
                                    attempt.name.clone(),
                                    self.params.clone(),
                                    cap,
                                    self.job.logs.clone(),
                                ));
                            }
                        }
                        Container::Terminated(t) => {
                            attempt.terminated = Some(t);
                            if attempt.io.is_some() && attempt.drain_deadline.is_none() {
                                attempt.drain_deadline = Some(Instant::now() + DRAIN_GRACE);
                            }
                        }
                    }
                }
            }
            // An attempt is over once its container terminated and its streams ended
            // (or were never attached).
            if attempt.io.is_none()
                && let Some(t) = attempt.terminated.take()
            {
                let outcome = self.finish(attempt.attached, &attempt.name, &t).await;
                let retry = outcome.is_err()
                    && t.reason.as_deref() != Some("OOMKilled")
                    && failed_pods < self.rt.config.backoff_limit;
                if !retry {
                    return outcome;
                }
                // The Job controller starts another pod (backoffLimit): follow it.
                failed_pods += 1;
                done_uids.push(attempt.uid.clone());
                attempt = Attempt::default();
                self.stdout.clear();
            }
        }
    }

    /// The result of an attempt whose container terminated.
    async fn finish(
        &mut self,
        attached: bool,
        pod: &str,
        t: &ContainerStateTerminated,
    ) -> Result<serde_json::Value, ComputeError> {
        let limits = &self.job.spec.limits;
        if t.reason.as_deref() == Some("OOMKilled") {
            return Err(ComputeError::limit(
                LimitKind::Memory,
                format!(
                    "killed by the kernel at the {} MiB memory limit (memory_mb)",
                    limits.memory_mb
                ),
            ));
        }
        if !attached {
            // The container ended before the node could attach: its streams are only in
            // the log API, merged. Keep them as the logs; never guess which was output.
            self.logs = self.merged_log(pod).await;
            return Err(ComputeError::ToolFailed(format!(
                "the container exited (code {}) before the node could attach to it: a tool must read \
                 its params from stdin before it writes; its merged stdout and stderr are in the logs",
                t.exit_code
            )));
        }
        match t.exit_code {
            0 => stdio::parse_output(&self.stdout),
            code => Err(stdio::failure(code.into(), &self.stdout, &self.logs)),
        }
    }

    /// The container's merged log from `pods/log`, through a [`LogBuffer`] so the job's
    /// live log sink sees exactly what is kept.
    async fn merged_log(&self, pod: &str) -> Vec<u8> {
        let params = LogParams {
            container: Some(manifest::CONTAINER.into()),
            limit_bytes: Some(stdio::LOG_CAP as i64),
            ..Default::default()
        };
        let mut logs = LogBuffer::new(stdio::LOG_CAP).with_sink(self.job.logs.clone());
        match self.pods.logs(pod, &params).await {
            Ok(text) => logs.push(text.as_bytes()),
            Err(e) => logs.push(
                format!(
                    "[hanzo-node: {}]\n",
                    errors::api(GET_LOG, &self.rt.config.namespace, &e)
                )
                .as_bytes(),
            ),
        }
        logs.finish()
    }

    /// The pod disappeared before its tool finished: the Job's deadline (the controller
    /// deletes the pods of a Job past `activeDeadlineSeconds`), or someone else.
    async fn pod_deleted(&self, ns: &str, waiting_for: &str) -> ComputeError {
        let name = crate::manifest::job_name(&self.job.id);
        match self.jobs.get(&name).await {
            Ok(j) => {
                let failed = j
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "Failed" && c.status == "True");
                match failed {
                    Some(c) if c.reason.as_deref() == Some("DeadlineExceeded") => ComputeError::limit(
                        LimitKind::Timeout,
                        format!(
                            "the Job passed its activeDeadlineSeconds ({} ms timeout plus the start allowance; \
                             the pod was at: {waiting_for})",
                            self.job.spec.limits.timeout_ms
                        ),
                    ),
                    Some(c) => ComputeError::ToolFailed(format!(
                        "the Job failed: {}: {}",
                        c.reason.unwrap_or_default(),
                        c.message.unwrap_or_default()
                    )),
                    None => ComputeError::Unavailable("the tool's pod was deleted before it finished".into()),
                }
            }
            Err(e) => errors::api(GET_JOB, ns, &e),
        }
    }
}

/// Watch errors worth another try: an expired resource version, or a connection that
/// dropped after the watch had worked.
fn transient(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchFailed(e) | watcher::Error::WatchStartFailed(e) => {
            !matches!(e, kube::Error::Api(_))
        }
        _ => false,
    }
}

fn watch_error(ns: &str, e: watcher::Error) -> ComputeError {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => errors::api(WATCH_PODS, ns, &e),
        watcher::Error::WatchError(s) => errors::api(WATCH_PODS, ns, &kube::Error::Api(s)),
        other => ComputeError::internal(format!("watching pods: {other}")),
    }
}
