//! THE crash test: a child process writes jobs in a burst and is killed with SIGKILL at
//! a random moment; the parent reopens the store and checks that every job the child
//! saw acknowledged is there, in a state the restart rule allows, that no job started
//! more often than its spec allows, and that the database is intact. Five rounds on the
//! same store, so each restart also recovers what the previous ones left.
//!
//! The child is this test binary run again with [`CHILD_ENV`] set, selecting
//! [`child_entry`]; it prints `ack|start|fin <id>` only after the operation returned,
//! so every printed line is a promise the store must keep.
//!
//! The second crash test does the same to a submitter placing jobs on peers
//! ([`remote_child_entry`]): the jobs it saw running on a peer must come back in
//! `Recovery::remote`, untouched, for the placement code to re-attach to.

use crate::util::{db, integrity, options, spec, succeeded};
use hanzo_jobstore::{INTERRUPTED, JobStatus, JobStore, PlacementOutcome};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const CHILD_ENV: &str = "HANZO_JOBSTORE_CRASH_CHILD";

/// A cheap pseudo-random number (xorshift) seeded from the clock; the rounds only need
/// different kill moments, not good randomness.
fn rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

/// The child's entry point. Without [`CHILD_ENV`] (a normal test run) it has nothing to
/// do; the crash test runs it in a child process with the variable set.
#[test]
fn child_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child(Path::new(&path)));
}

/// One line per acknowledged operation, written in one `write` so that a kill never
/// leaves half a line that looks whole.
fn say(out: &Mutex<std::io::Stdout>, what: &str, id: &str) {
    let mut o = out.lock().unwrap();
    o.write_all(format!("{what} {id}\n").as_bytes()).unwrap();
    o.flush().unwrap();
}

async fn child(path: &Path) {
    let (store, recovery) = JobStore::open(path, options()).unwrap();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    // libtest has printed "test crash::child_entry ... " without a newline: end it.
    say(&out, "\nready", "-");
    let mut tasks = Vec::new();
    // Restarted node: run what is queued (a retry is a second start of the same job).
    {
        let (store, out) = (store.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            for job in recovery.queued {
                if store.start(&job.id).await.unwrap() {
                    say(&out, "start", &job.id);
                }
            }
        }));
    }
    // Burst: submit; half of the jobs start; a third of those finish.
    let deadline = Instant::now() + Duration::from_secs(30);
    for t in 0..8u64 {
        let (store, out) = (store.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let mut r = seed() ^ (t << 32) | 1;
            let mut n = 0;
            while Instant::now() < deadline {
                let mut s = spec(t * 1_000_000 + n);
                s.retries = (rand(&mut r) % 3) as u32;
                s.priority = (rand(&mut r) % 3) as i32;
                n += 1;
                let job = store.submit(s).await.unwrap();
                say(&out, "ack", &job.id);
                if rand(&mut r).is_multiple_of(2) {
                    continue;
                }
                if !store.start(&job.id).await.unwrap() {
                    continue;
                }
                say(&out, "start", &job.id);
                if rand(&mut r).is_multiple_of(3) {
                    let outcome = succeeded(&job.id, &job.spec, json!({ "n": n }));
                    if store.finish(&outcome).await.unwrap() {
                        say(&out, "fin", &job.id);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[derive(Default)]
struct Seen {
    acked: HashSet<String>,
    starts: HashMap<String, u32>,
    finished: HashSet<String>,
}

#[test]
fn kill_9_mid_burst_loses_nothing_and_runs_nothing_twice() {
    let (_dir, path) = db();
    let exe = std::env::current_exe().unwrap();
    let mut r = seed();
    let mut seen = Seen::default();
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args(["crash::child_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(stdout);
                loop {
                    let mut line = String::new();
                    match rd.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        // A line without its newline was cut by the kill: not a promise.
                        Ok(_) if line.ends_with('\n') => lines.lock().unwrap().push(line),
                        Ok(_) => {}
                    }
                }
            })
        };
        // Kill at a random moment: 0 to 400 ms into the burst.
        let wait_ready = Instant::now() + Duration::from_secs(60);
        while !lines.lock().unwrap().iter().any(|l| l.starts_with("ready")) {
            assert!(Instant::now() < wait_ready, "child never became ready");
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rand(&mut r) % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();

        let lines = lines.lock().unwrap();
        let before = seen.acked.len();
        for l in lines.iter() {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some("ack"), Some(id)) => {
                    seen.acked.insert(id.to_string());
                }
                (Some("start"), Some(id)) => *seen.starts.entry(id.to_string()).or_default() += 1,
                (Some("fin"), Some(id)) => {
                    seen.finished.insert(id.to_string());
                }
                _ => {}
            }
        }
        eprintln!(
            "round {round}: {} lines, {} new acknowledged jobs",
            lines.len(),
            seen.acked.len() - before
        );
        drop(lines);
        check(&path, &seen);
    }
    assert!(seen.acked.len() > 100, "the bursts were too small to mean much");
    assert!(
        seen.starts.values().any(|&n| n > 1),
        "no retry was ever exercised"
    );
}

/// Reopens the store (the restart) and checks every promise.
fn check(path: &Path, seen: &Seen) {
    assert_eq!(integrity(path), "ok");
    let (store, rec) = JobStore::open(path, options()).unwrap();
    let failed: HashSet<_> = rec.failed.iter().cloned().collect();
    let retried: HashSet<_> = rec.retried.iter().cloned().collect();
    assert!(rec.cancelled.is_empty(), "nobody asked for a cancel");
    for id in &seen.acked {
        let job = store
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged job {id} was lost"));
        let starts = seen.starts.get(id).copied().unwrap_or(0);
        // Nothing runs more often than its spec allows, and every start the child saw
        // was committed (counted in `attempts`).
        assert!(
            starts <= 1 + job.spec.retries,
            "job {id} started {starts} times with retries {}",
            job.spec.retries
        );
        assert!(job.attempts >= starts, "job {id}: {} < {starts}", job.attempts);
        assert!(job.attempts <= 1 + job.spec.retries);
        match job.status {
            JobStatus::Running => panic!("job {id} still running after the restart"),
            JobStatus::Cancelled => panic!("job {id} cancelled though nobody asked"),
            JobStatus::Succeeded => {
                assert!(job.output.as_ref().unwrap()["n"].is_u64());
                assert!(job.receipt.is_some());
            }
            JobStatus::Failed => {
                let e = job.error.as_ref().unwrap();
                assert_eq!(e.code, INTERRUPTED);
                assert!(job.attempts > job.spec.retries);
            }
            JobStatus::Queued => {
                if retried.contains(id) {
                    assert!(job.attempts <= job.spec.retries);
                }
            }
        }
        if seen.finished.contains(id) {
            assert_eq!(job.status, JobStatus::Succeeded, "finished job {id} changed");
        }
        if failed.contains(id) || retried.contains(id) {
            assert!(job.attempts >= 1);
        }
    }
    // Every queued job is in the recovery queue, and every job in it is queued.
    for job in &rec.queued {
        assert_eq!(job.status, JobStatus::Queued);
    }
    let counts = store.counts().unwrap();
    let running: u64 = counts
        .iter()
        .filter(|((_, s), _)| *s == JobStatus::Running)
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(running, 0);
    let queued: u64 = counts
        .iter()
        .filter(|((_, s), _)| *s == JobStatus::Queued)
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(queued as usize, rec.queued.len());
}

const REMOTE_CHILD_ENV: &str = "HANZO_JOBSTORE_REMOTE_CHILD";

/// The submitter of the remote crash test: without [`REMOTE_CHILD_ENV`] it has nothing
/// to do.
#[test]
fn remote_child_entry() {
    let Ok(path) = std::env::var(REMOTE_CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(remote_child(Path::new(&path)));
}

/// Places jobs on (imaginary) peers as the placement code does, from 4 tasks until it
/// is killed: record the attempt, then start the job; one job in four loses its first
/// peer and goes to a second one. Every other job runs "here" (started, no placement).
/// Prints `placed <id> <execution id> <attempts>` once the job is running on a peer,
/// `local <id>` once a job is running here.
async fn remote_child(path: &Path) {
    let (store, _) = JobStore::open(path, options()).unwrap();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    say(&out, "\nready", "-");
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (store, out) = (store.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let job = store.submit(spec(t * 1_000_000 + n)).await.unwrap();
                if n % 2 == 1 {
                    assert!(store.start(&job.id).await.unwrap());
                    say(&out, "local", &job.id);
                    continue;
                }
                let x = format!("{}-1", job.id);
                store.add_placement(&job.id, "peer-a", &x).await.unwrap();
                assert!(store.start(&job.id).await.unwrap());
                if n % 4 != 0 {
                    say(&out, "placed", &format!("{} {x} 1", job.id));
                    continue;
                }
                assert!(
                    store
                        .end_placement(&x, PlacementOutcome::Lost, Some("gone"))
                        .await
                        .unwrap()
                );
                let x = format!("{}-2", job.id);
                store.add_placement(&job.id, "peer-b", &x).await.unwrap();
                assert!(store.restart_attempt(&job.id).await.unwrap());
                say(&out, "placed", &format!("{} {x} 2", job.id));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The submitter is killed with SIGKILL while jobs are in flight on peers: on restart
/// every job it saw running on a peer is in `Recovery::remote`, untouched (still
/// running, its attempt still running, attempts as counted), jobs that ran here follow
/// the old rule, and re-attaching records the peers' results.
#[test]
fn kill_9_of_the_submitter_leaves_remote_jobs_to_reattach() {
    let (_dir, path) = db();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args([
            "crash::remote_child_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REMOTE_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut rd = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill once it has placed a good number of jobs, mid-stream.
    while lines.iter().filter(|l: &&String| l.starts_with("placed")).count() < 200 {
        assert!(Instant::now() < deadline, "the child placed too few jobs");
        let mut line = String::new();
        assert!(rd.read_line(&mut line).unwrap() > 0, "the child stopped early");
        lines.push(line);
    }
    std::thread::sleep(Duration::from_millis(seed() % 50));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What it printed between the last read and the kill counts too.
    loop {
        let mut line = String::new();
        match rd.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.ends_with('\n') => lines.push(line),
            Ok(_) => {}
        }
    }
    let mut placed = HashMap::new();
    let mut local = HashSet::new();
    for l in &lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["placed", id, x, attempts] => {
                placed.insert(id.to_string(), (x.to_string(), attempts.parse::<u32>().unwrap()));
            }
            ["local", id] => {
                local.insert(id.to_string());
            }
            _ => {}
        }
    }
    assert_eq!(integrity(&path), "ok");

    let (store, rec) = JobStore::open(&path, options()).unwrap();
    let remote: HashMap<&str, &hanzo_jobstore::JobRecord> =
        rec.remote.iter().map(|j| (j.id.as_str(), j)).collect();
    for (id, (x, attempts)) in &placed {
        let job = remote
            .get(id.as_str())
            .unwrap_or_else(|| panic!("job {id}, running on a peer, is not in Recovery::remote"));
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.attempts, *attempts, "job {id}");
        let last = job.placements.last().unwrap();
        assert_eq!((&last.execution_id, last.outcome), (x, PlacementOutcome::Running));
        assert_eq!(job.placements.len(), *attempts as usize);
        assert_eq!(
            store.get(id).unwrap().unwrap(),
            **job,
            "recovery changed job {id}"
        );
    }
    // Nothing else is left running, and nothing in `remote` lacks a running attempt.
    for job in &rec.remote {
        assert!(
            job.placements
                .iter()
                .any(|p| p.outcome == PlacementOutcome::Running)
        );
    }
    let running: u64 = store
        .counts()
        .unwrap()
        .iter()
        .filter(|((_, s), _)| *s == JobStatus::Running)
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(running as usize, rec.remote.len());
    for id in &local {
        let job = store.get(id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed, "job {id} ran here: the old rule");
        assert_eq!(job.error.unwrap().code, INTERRUPTED);
        assert!(rec.failed.contains(id));
    }

    // Re-attach: each peer's result arrives and is recorded.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for job in &rec.remote {
            let x = &job.placements.last().unwrap().execution_id;
            assert!(
                store
                    .end_placement(x, PlacementOutcome::Succeeded, None)
                    .await
                    .unwrap()
            );
            let out = succeeded(&job.id, &job.spec, json!({ "n": 1 }));
            assert!(store.finish(&out).await.unwrap());
        }
    });
    drop(store);
    let (store, rec) = JobStore::open(&path, options()).unwrap();
    assert!(rec.remote.is_empty());
    for id in placed.keys() {
        assert_eq!(store.get(id).unwrap().unwrap().status, JobStatus::Succeeded);
    }
}
