//! stdin, stdout and stderr: params in, output capped, logs bounded, and no deadlock
//! whatever the tool does with its pipes.

use crate::util::*;
use hanzo_compute::ResourceLimits;
use hanzo_sandbox::Exit;
use std::time::{Duration, Instant};

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn stdin_reaches_the_tool_and_stdout_comes_back() {
    for mode in ALL_MODES {
        let data = bytes(3 * 1024 * 1024);
        let o = run(mode, sh("cat").stdin(data.clone())).await;
        assert!(o.success(), "{mode:?}: {:?} {}", o.exit, err(&o));
        assert!(o.stdout == data, "{mode:?}: {} bytes back", o.stdout.len());
        // The stdio contract end to end.
        let o = run(
            mode,
            sh("read line; echo \"{\\\"got\\\": $line}\"").stdin(&b"42\n"[..]),
        )
        .await;
        assert_eq!(o.result().unwrap(), serde_json::json!({"got": 42}), "{mode:?}");
    }
}

#[tokio::test]
async fn a_tool_that_ignores_a_large_stdin_does_not_hang() {
    for mode in ALL_MODES {
        for script in ["true", "sleep 0.2; echo done"] {
            let t = Instant::now();
            let o = run(mode, sh(script).stdin(bytes(16 * 1024 * 1024))).await;
            assert!(o.success(), "{mode:?} {script}: {:?}", o.exit);
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{mode:?} {script}: {:?}",
                t.elapsed()
            );
        }
    }
}

#[tokio::test]
async fn stdout_past_the_cap_kills_the_tool() {
    for mode in ALL_MODES {
        let m = marker();
        // `yes` writes without end; the sleep shows the whole tree is killed.
        let spec = sh(&format!("sleep {m} & yes")).limits(ResourceLimits {
            max_output_bytes: 100_000,
            ..ResourceLimits::default()
        });
        let t = Instant::now();
        let o = run(mode, spec).await;
        assert_eq!(o.exit, Exit::OutputLimit, "{mode:?}: {}", err(&o));
        assert_eq!(o.stdout.len(), 100_000, "{mode:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{mode:?}: {:?}",
            t.elapsed()
        );
        assert_no_process(&m);
        let e = o.result().unwrap_err();
        assert!(e.to_string().contains("100000 bytes"), "{e}");
        // Exactly at the cap is fine.
        let spec = sh("head -c 1000 /dev/zero").limits(ResourceLimits {
            max_output_bytes: 1000,
            ..ResourceLimits::default()
        });
        let o = run(mode, spec).await;
        assert!(o.success() && o.stdout.len() == 1000, "{mode:?}: {:?}", o.exit);
    }
}

#[tokio::test]
async fn stderr_is_kept_to_one_mib_and_never_blocks_the_tool() {
    for mode in ALL_MODES {
        let o = run(mode, sh("head -c 3145728 /dev/zero | tr '\\0' x >&2; echo '{}'")).await;
        assert!(o.success(), "{mode:?}: {:?}", o.exit);
        let logs = err(&o);
        assert!(logs.starts_with("xxxx"), "{mode:?}");
        assert!(
            logs.ends_with("\n[hanzo-node: 2097152 more bytes of logs dropped]\n"),
            "{mode:?}: ...{}",
            &logs[logs.len() - 80..]
        );
        assert_eq!(o.result().unwrap(), serde_json::json!({}), "{mode:?}");
    }
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    for mode in ALL_MODES {
        let o = run(mode, sh("echo oops >&2; exit 3")).await;
        assert_eq!(o.exit, Exit::Exited(3), "{mode:?}");
        let e = o.result().unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("oops"), "{e}");
        let o = run(mode, sh("kill -SEGV $$")).await;
        // bubblewrap reports a signal death as 128 + signal, as a shell does.
        let want = if mode.bwrap() {
            Exit::Exited(128 + 11)
        } else {
            Exit::Signaled(11)
        };
        assert_eq!(o.exit, want, "{mode:?}");
    }
}

#[tokio::test]
async fn a_spec_that_cannot_run_is_rejected_before_anything_starts() {
    for mode in ALL_MODES {
        for spec in [
            hanzo_sandbox::ProcessSpec::new("/no/such/program"),
            sh("true").file("../escape", "x"),
            sh("true").pids_limit(0),
        ] {
            let o = run(mode, spec).await;
            assert!(matches!(o.exit, Exit::Rejected(_)), "{mode:?}: {:?}", o.exit);
            assert_eq!(o.result().unwrap_err().exit_code(), 2);
        }
    }
}
