//! Following a job's logs live: `GET /v1/jobs/{id}/logs?follow=true` as server-sent
//! events, against a real node running a real Python tool that waits on a gate file, so
//! the test decides when each line is written and can check that the first one arrives
//! while the job is still running.

use crate::server::Server;
use crate::util::Home;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Writes a line to its logs, waits for the gate file, writes another, returns.
const GATED: &str = r#"import os, sys, time

def run(params):
    print("first line", file=sys.stderr, flush=True)
    while not os.path.exists("/gate/open"):
        time.sleep(0.02)
    print("second line\r\nthird line", file=sys.stderr, flush=True)
    return {"ok": True}
"#;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    event: String,
    id: Option<String>,
    data: String,
}

/// An open event stream (HTTP/1.0, so the body is the raw stream, not chunked).
struct Stream {
    reader: BufReader<TcpStream>,
    status: u16,
    content_type: String,
}

impl Stream {
    fn open(server: &Server, id: &str, last_event_id: Option<&str>) -> Stream {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let resume = last_event_id
            .map(|i| format!("Last-Event-ID: {i}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /v1/jobs/{id}/logs?follow=true HTTP/1.0\r\nHost: {}\r\n\
             Authorization: Bearer {}\r\n{resume}\r\n",
            server.host(),
            server.token()
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut content_type = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-type")
            {
                content_type = v.trim().to_string();
            }
        }
        Stream {
            reader,
            status,
            content_type,
        }
    }

    /// The next event, skipping keep-alive comments; `None` at the end of the stream.
    fn next(&mut self) -> Option<Event> {
        let mut ev = Event {
            event: "message".into(),
            id: None,
            data: String::new(),
        };
        let mut seen = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if seen {
                    return Some(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            seen = true;
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => ev.event = value.to_string(),
                "id" => ev.id = Some(value.to_string()),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value)
                }
                _ => {}
            }
        }
    }

    /// Every remaining event up to the end of the stream.
    fn rest(mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn logs(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data.as_str())
        .collect()
}

struct Gated {
    home: Home,
    server: Server,
    gate: tempfile::TempDir,
    tool: String,
}

impl Gated {
    fn start() -> Gated {
        Gated::start_with(&[])
    }

    fn start_with(env: &[(&str, &str)]) -> Gated {
        let home = Home::new();
        // The gate is mounted by API jobs: under a mount root of the node.
        let gate = tempfile::tempdir().unwrap();
        let root = gate.path().canonicalize().unwrap().display().to_string();
        let mut all = vec![
            ("HANZO_COMPUTE_ENABLED_RUNTIMES", "python"),
            ("HANZO_COMPUTE_MOUNT_ROOTS", root.as_str()),
        ];
        all.extend_from_slice(env);
        let server = Server::start(&home, &all);
        let tool = home.file("gated.py", GATED);
        Gated {
            home,
            server,
            gate,
            tool,
        }
    }

    fn submit(&self) -> String {
        let spec = json!({
            "runtime": "python",
            "source": self.tool,
            "mounts": [format!("{}:/gate:ro", self.gate.path().display())],
            "limits": {"timeout_ms": 60_000},
        });
        let r = self.server.post_json("/v1/jobs", &spec);
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    }

    fn open_gate(&self) {
        std::fs::write(self.gate.path().join("open"), "").unwrap();
    }
}

#[test]
fn a_running_jobs_lines_arrive_as_they_are_written() {
    let g = Gated::start();
    let id = g.submit();
    let mut stream = Stream::open(&g.server, &id, None);
    assert_eq!(stream.status, 200);
    assert!(
        stream.content_type.starts_with("text/event-stream"),
        "{}",
        stream.content_type
    );

    let first = stream.next().expect("an event");
    assert_eq!((first.event.as_str(), first.data.as_str()), ("log", "first line"));
    assert_eq!(
        first.id.as_deref(),
        Some("11"),
        "the id is the byte offset past the line"
    );
    // The tool is blocked on the gate: the line came while the job runs.
    assert_eq!(g.server.job(&id)["status"], "running");

    g.open_gate();
    let rest = stream.rest();
    assert_eq!(logs(&rest), ["second line", "third line"], "{rest:#?}");
    let end = rest.last().unwrap();
    assert_eq!(end.event, "end");
    let end: Value = serde_json::from_str(&end.data).unwrap();
    assert_eq!(end["status"], "succeeded", "{end}");
    assert_eq!(end["id"], id.as_str());

    // The stored logs are the same bytes.
    let stored = g.server.req("GET", &format!("/v1/jobs/{id}/logs"), b"");
    assert_eq!(stored.text(), "first line\nsecond line\r\nthird line\n");
}

#[test]
fn a_finished_job_replays_its_logs_and_a_reconnect_resumes() {
    let g = Gated::start();
    g.open_gate();
    let id = g.submit();
    g.server.wait_terminal(&id);

    let all = Stream::open(&g.server, &id, None).rest();
    assert_eq!(
        logs(&all),
        ["first line", "second line", "third line"],
        "{all:#?}"
    );
    assert_eq!(all.last().unwrap().event, "end");

    // Resuming after the first line (as EventSource does with Last-Event-ID).
    let after = all[0].id.clone().unwrap();
    let resumed = Stream::open(&g.server, &id, Some(&after)).rest();
    assert_eq!(logs(&resumed), ["second line", "third line"], "{resumed:#?}");
    // After a line that ended "\r\n" the id points between the two: the "\n" must not
    // come back as an empty line.
    let after_crlf = all[1].id.clone().unwrap();
    let resumed = Stream::open(&g.server, &id, Some(&after_crlf)).rest();
    assert_eq!(logs(&resumed), ["third line"], "{resumed:#?}");
}

#[test]
fn followers_are_capped_node_wide() {
    // Every stream here comes from 127.0.0.1: lift the per-client cap above the node's.
    let g = Gated::start_with(&[("HANZO_NODE_API_LOG_FOLLOWERS_PER_CLIENT", "100")]);
    let id = g.submit();
    // The job waits at its gate: every stream stays open.
    let open: Vec<Stream> = (0..64).map(|_| Stream::open(&g.server, &id, None)).collect();
    assert!(open.iter().all(|s| s.status == 200));
    let refused = Stream::open(&g.server, &id, None);
    assert_eq!(refused.status, 429);
    drop(open);
    g.open_gate();
    // Closed streams give their places back.
    let mut again = Stream::open(&g.server, &id, None);
    for _ in 0..50 {
        if again.status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        again = Stream::open(&g.server, &id, None);
    }
    assert_eq!(again.status, 200);
    let end = again.rest();
    assert_eq!(end.last().unwrap().event, "end");
}

#[test]
fn cancelling_a_followed_job_ends_the_stream_cancelled() {
    let g = Gated::start();
    let id = g.submit();
    let mut stream = Stream::open(&g.server, &id, None);
    assert_eq!(stream.next().unwrap().data, "first line");
    let r = g.server.req("POST", &format!("/v1/jobs/{id}/cancel"), b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let rest = stream.rest();
    let end: Value = serde_json::from_str(&rest.last().unwrap().data).unwrap();
    assert_eq!(end["status"], "cancelled", "{rest:#?}");
}

#[test]
fn unknown_jobs_and_bad_resume_points_are_refused() {
    let home = Home::new();
    let server = Server::start(&home, &[]);
    let r = server.req("GET", "/v1/jobs/nope/logs?follow=true", b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.error().0, "not_found");
    let r = server.req("GET", "/v1/jobs/nope/logs?follow=maybe", b"");
    assert_eq!(r.status, 400);
    assert!(r.error().1.contains("follow"), "{:?}", r.error());
    let r = server.req("GET", "/v1/jobs/nope/logs?tail=3", b"");
    assert_eq!(r.status, 400);
    assert!(r.error().1.contains("tail"), "{:?}", r.error());
    let s = Stream::open(&server, "nope", Some("x"));
    assert_eq!(s.status, 400);
}

#[test]
fn the_cli_follows_logs_live_and_submit_follow_prints_the_output() {
    let g = Gated::start();
    let id = g.submit();
    let mut child = g
        .home
        .cmd()
        .args(["job", "logs", "--follow", &id, "--node", &g.server.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "first line\n");
    assert_eq!(g.server.job(&id)["status"], "running");
    g.open_gate();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "second line\nthird line\n");
    assert!(child.wait().unwrap().success());

    // submit --follow: the logs on stderr as they come, then the output as `run` prints it.
    let r = g.home.run(&[
        "job",
        "submit",
        "python",
        &g.tool,
        "--mount",
        &format!("{}:/gate:ro", g.gate.path().display()),
        "--follow",
        "--node",
        &g.server.url(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), r#"{"ok":true}"#);
    assert!(
        r.stderr.contains("first line\nsecond line\nthird line\n"),
        "{}",
        r.stderr
    );
}

/// One client could take all 64 of the node's places and hold them for as long as a job
/// runs. Now one client address holds at most `api_log_followers_per_client` streams.
#[test]
fn followers_are_capped_per_client() {
    let g = Gated::start_with(&[("HANZO_NODE_API_LOG_FOLLOWERS_PER_CLIENT", "2")]);
    let id = g.submit();
    let open: Vec<Stream> = (0..2).map(|_| Stream::open(&g.server, &id, None)).collect();
    assert!(open.iter().all(|s| s.status == 200));
    let refused = Stream::open(&g.server, &id, None);
    assert_eq!(refused.status, 429);
    let mut body = String::new();
    let mut reader = refused.reader;
    std::io::Read::read_to_string(&mut reader, &mut body).unwrap();
    assert!(
        body.contains("too_many_followers") && body.contains("per client"),
        "{body}"
    );
    // A closed stream gives its place back.
    drop(open);
    let mut again = Stream::open(&g.server, &id, None);
    for _ in 0..50 {
        if again.status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        again = Stream::open(&g.server, &id, None);
    }
    assert_eq!(again.status, 200);
    g.open_gate();
    assert_eq!(again.rest().last().unwrap().event, "end");
}

/// A stream used to stay open as long as the job ran. Now it ends after
/// `api_log_follow_max_secs` with a `timeout` event saying where to resume; resuming
/// there loses and repeats nothing, and the CLI does it by itself.
#[test]
fn a_stream_ends_at_the_time_limit_and_resumes() {
    let g = Gated::start_with(&[("HANZO_NODE_API_LOG_FOLLOW_MAX_SECS", "1")]);
    let id = g.submit();
    let cli = g
        .home
        .cmd()
        .args(["job", "logs", "--follow", &id, "--node", &g.server.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let events = Stream::open(&g.server, &id, None).rest();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(logs(&events), ["first line"], "{events:#?}");
    let last = events.last().unwrap();
    assert_eq!(last.event, "timeout", "{events:#?}");
    let v: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(v["offset"], 11, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("api_log_follow_max_secs"),
        "{v}"
    );
    assert_eq!(last.id.as_deref(), Some("11"));
    assert_eq!(g.server.job(&id)["status"], "running");

    // The CLI has been through at least one timeout by now.
    std::thread::sleep(Duration::from_millis(1500));
    let mut resumed = Stream::open(&g.server, &id, Some("11"));
    g.open_gate();
    let mut seen = Vec::new();
    while let Some(e) = resumed.next() {
        if e.event == "log" {
            seen.push(e.data.clone());
        }
        if e.event != "log" {
            // A slow machine may hit the limit again: go on from where it says.
            if e.event == "timeout" {
                let id_now = e.id.clone().unwrap();
                resumed = Stream::open(&g.server, &id, Some(&id_now));
                continue;
            }
            assert_eq!(e.event, "end");
            break;
        }
    }
    assert_eq!(seen, ["second line", "third line"]);
    let out = cli.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first line\nsecond line\nthird line\n"
    );
}
