//! Named tools: put/get/list/remove round trips, replacement, durability across a
//! reopen, and the upgrade of a version-1 store.

use crate::util::{db, old_store, open, options, spec, user_version};
use hanzo_compute::{ResourceLimits, RuntimeKind};
use hanzo_jobstore::{JobStore, ToolSpec};
use serde_json::json;

fn tool(name: &str, source: &str) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        runtime: RuntimeKind::Wasm,
        source: source.to_string(),
        description: Some(format!("the {name} tool")),
        schema: Some(json!({"type": "object", "required": ["text"]})),
        output_schema: None,
        limits: ResourceLimits {
            memory_mb: 64,
            timeout_ms: 1500,
            ..ResourceLimits::default()
        },
        function: Some("run".into()),
    }
}

#[tokio::test]
async fn put_get_list_remove() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    assert!(store.list_tools().unwrap().is_empty());
    assert!(store.get_tool("echo").unwrap().is_none());

    let (b, replaced) = store.put_tool(tool("b-tool", "sha256:bb")).await.unwrap();
    assert!(!replaced);
    assert_eq!(b.created_at, b.updated_at);
    let (a, _) = store.put_tool(tool("a-tool", "sha256:aa")).await.unwrap();

    assert_eq!(store.get_tool("b-tool").unwrap(), Some(b.clone()));
    let names: Vec<String> = store
        .list_tools()
        .unwrap()
        .into_iter()
        .map(|t| t.spec.name)
        .collect();
    assert_eq!(names, ["a-tool", "b-tool"]);

    assert!(store.remove_tool("a-tool").await.unwrap());
    assert!(!store.remove_tool("a-tool").await.unwrap());
    assert!(store.get_tool("a-tool").unwrap().is_none());
    assert_eq!(store.list_tools().unwrap(), vec![b]);
    drop(a);
}

#[tokio::test]
async fn replacing_keeps_created_at() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let (first, _) = store.put_tool(tool("echo", "sha256:01")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut second_spec = tool("echo", "sha256:02");
    second_spec.schema = None;
    let (second, replaced) = store.put_tool(second_spec.clone()).await.unwrap();
    assert!(replaced);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    let got = store.get_tool("echo").unwrap().unwrap();
    assert_eq!(got.spec, second_spec);
    assert_eq!(got, second);
    assert_eq!(store.list_tools().unwrap().len(), 1);
}

#[tokio::test]
async fn tools_survive_a_reopen_alongside_jobs() {
    let (_dir, path) = db();
    let (kept, job_id) = {
        let (store, _) = open(&path);
        let (kept, _) = store.put_tool(tool("kept", "sha256:cc")).await.unwrap();
        store.put_tool(tool("gone", "sha256:dd")).await.unwrap();
        assert!(store.remove_tool("gone").await.unwrap());
        let job = store.submit(spec(1)).await.unwrap();
        (kept, job.id)
    };
    let (store, recovery) = JobStore::open(&path, options()).unwrap();
    assert_eq!(recovery.queued.len(), 1);
    assert!(store.get(&job_id).unwrap().is_some());
    assert_eq!(store.list_tools().unwrap(), vec![kept]);
    assert!(store.get_tool("gone").unwrap().is_none());
}

#[tokio::test]
async fn a_version_1_store_is_upgraded_and_keeps_its_jobs() {
    let (_dir, path) = db();
    // What version 1 left: the jobs table only, with one job in it.
    {
        let conn = old_store(&path, 1);
        let spec = serde_json::to_string(&spec(7)).unwrap();
        conn.execute(
            "INSERT INTO jobs (id, runtime, status, priority, retries, created_at, spec)
             VALUES ('j1', 'wasm', 'queued', 0, 0, 1000, ?1)",
            [spec],
        )
        .unwrap();
    }
    let (store, rec) = open(&path);
    assert_eq!(rec.queued.len(), 1);
    let job = store.get("j1").unwrap().unwrap();
    assert_eq!(job.spec.params, json!({"n": 7}));
    assert!(job.placements.is_empty() && job.origin.is_none());
    assert!(store.list_tools().unwrap().is_empty());
    store.put_tool(tool("new", "sha256:ee")).await.unwrap();
    assert_eq!(store.get_tool("new").unwrap().unwrap().spec.source, "sha256:ee");
    // Straight to the current version, placements included.
    store.add_placement("j1", "peer-a", "x1").await.unwrap();
    assert_eq!(store.get("j1").unwrap().unwrap().placements.len(), 1);
    assert_eq!(user_version(&path), 4);
}

#[test]
fn a_record_serialises_flat_with_rfc3339_times() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let (rec, _) = rt.block_on(store.put_tool(tool("flat", "sha256:ff"))).unwrap();
    let v = serde_json::to_value(&rec).unwrap();
    assert_eq!(v["name"], "flat");
    assert_eq!(v["runtime"], "wasm");
    assert_eq!(v["limits"]["memory_mb"], 64);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(v.get("spec").is_none());
}
