//! `Sandbox::spawn`: a process kept running and talked to over its pipes (a stdio
//! server), under the same isolation and limits as a one-shot run.

use crate::util::*;
use hanzo_compute::ResourceLimits;
use hanzo_sandbox::{Exit, Options, Sandbox};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A line-echo server in Python: it answers every line, and `env` / `cat PATH` /
/// `mem` / `exit N` lines do what they say.
const SERVER: &str = r#"
import os, sys
for line in sys.stdin:
    cmd = line.strip()
    if cmd.startswith("exit "):
        sys.exit(int(cmd[5:]))
    elif cmd.startswith("cat "):
        try:
            out = open(cmd[4:]).read(20).replace("\n", " ")
        except Exception as e:
            out = type(e).__name__
    elif cmd.startswith("err "):
        sys.stderr.write(cmd[4:] * 1000 + "\n")
        sys.stderr.flush()
        out = "logged"
    elif cmd == "mem":
        blocks = []
        for _ in range(1024):
            blocks.append(bytearray(1 << 20))
        out = "allocated"
    else:
        out = "echo " + cmd
    print(out, flush=True)
"#;

async fn ask(
    tx: &mut tokio::net::unix::pipe::Sender,
    rx: &mut BufReader<tokio::net::unix::pipe::Receiver>,
    line: &str,
) -> Option<String> {
    tx.write_all(format!("{line}\n").as_bytes()).await.ok()?;
    let mut answer = String::new();
    match tokio::time::timeout(Duration::from_secs(10), rx.read_line(&mut answer)).await {
        Ok(Ok(n)) if n > 0 => Some(answer.trim().to_string()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answers_many_requests_from_one_process_and_stops_cleanly() {
    for mode in ALL_MODES {
        let sb = sandbox(mode);
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = {
            let logs = logs.clone();
            hanzo_compute::stdio::LogSink::new(move |b| logs.lock().unwrap().extend_from_slice(b))
        };
        let mut spec = python(SERVER);
        spec.log_sink = sink;
        let mut s = sb
            .spawn(spec)
            .await
            .unwrap_or_else(|o| panic!("{mode:?}: {:?}", o.exit));
        let (mut tx, rx) = s.take_io().unwrap();
        let mut rx = BufReader::new(rx);
        for i in 0..20 {
            assert_eq!(
                ask(&mut tx, &mut rx, &format!("hi {i}")).await.as_deref(),
                Some(&*format!("echo hi {i}")),
                "{mode:?}"
            );
        }
        assert!(!s.has_exited(), "{mode:?}");
        // Every byte of stderr reaches the sink, past the one-shot run's 1 MiB cap.
        for _ in 0..150 {
            assert_eq!(
                ask(&mut tx, &mut rx, "err abcdefghij").await.as_deref(),
                Some("logged")
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && logs.lock().unwrap().len() < 150 * 10_001 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(logs.lock().unwrap().len(), 150 * 10_001, "{mode:?}");
        // The same isolation as a one-shot run: the node's files are not there.
        if mode.bwrap() {
            assert_eq!(
                ask(&mut tx, &mut rx, "cat /root/.bashrc").await.as_deref(),
                Some("FileNotFoundError"),
                "{mode:?}"
            );
        }
        let o = s.stop(Some(Exit::Cancelled)).await;
        assert_eq!(o.exit, Exit::Cancelled, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_exits_by_itself_is_seen_to_have_exited() {
    for mode in ALL_MODES {
        let mut s = sandbox(mode).spawn(python(SERVER)).await.unwrap();
        let (mut tx, rx) = s.take_io().unwrap();
        let mut rx = BufReader::new(rx);
        assert_eq!(ask(&mut tx, &mut rx, "exit 7").await, None, "{mode:?}");
        tokio::time::timeout(Duration::from_secs(10), s.exited())
            .await
            .unwrap();
        assert!(s.has_exited());
        assert_eq!(s.stop(None).await.exit, Exit::Exited(7), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_held_to_its_memory_limit_for_its_whole_life() {
    for mode in [Mode::Full, Mode::CgroupsOnly] {
        let limits = ResourceLimits {
            memory_mb: 64,
            ..ResourceLimits::default()
        };
        let mut s = sandbox(mode).spawn(python(SERVER).limits(limits)).await.unwrap();
        let (mut tx, rx) = s.take_io().unwrap();
        let mut rx = BufReader::new(rx);
        assert_eq!(ask(&mut tx, &mut rx, "one").await.as_deref(), Some("echo one"));
        // A GiB in a 64 MiB cgroup: the kernel kills it, and the stop says so.
        assert_eq!(ask(&mut tx, &mut rx, "mem").await, None, "{mode:?}");
        tokio::time::timeout(Duration::from_secs(10), s.exited())
            .await
            .unwrap();
        assert_eq!(s.stop(None).await.exit, Exit::MemoryLimit, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_session_kills_its_processes_and_cleans_up() {
    for mode in ALL_MODES {
        let root = tempfile::tempdir().unwrap();
        let sb = Sandbox::detect_with(Options {
            work_root: root.path().into(),
            cgroup_parent: format!("hanzo-test-session-{}", marker()).into(),
            ..mode.options()
        });
        let m = marker();
        let s = sb.spawn(sh(&format!("sleep {m} & sleep {m}"))).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && host_processes(&m).len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!host_processes(&m).is_empty(), "{mode:?}: it never started");
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !host_processes(&m).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_no_process(&m);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && std::fs::read_dir(root.path()).unwrap().next().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            std::fs::read_dir(root.path()).unwrap().next().is_none(),
            "{mode:?}: work directory left"
        );
        for p in sb.cgroup_parents() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && std::fs::remove_dir(&p).is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
