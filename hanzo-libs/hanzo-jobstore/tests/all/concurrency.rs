//! Many tasks at once: every write acknowledged and present, every job started once.

use crate::util::{db, open, spec};
use hanzo_compute::RuntimeKind;
use hanzo_jobstore::{JobStatus, ListFilter, Page};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_are_all_acknowledged_and_stored() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let stop = Arc::new(AtomicBool::new(false));
    // A reader runs alongside the writers the whole time (WAL: no blocking, no errors).
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                store.counts().unwrap();
                store.list(ListFilter::default(), Page::first(50)).unwrap();
                reads += 1;
            }
            reads
        })
    };
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                ids.push(store.submit(spec(t * 1000 + i)).await.unwrap().id);
            }
            ids
        }));
    }
    let mut acked = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(acked.insert(id), "duplicate id");
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert_eq!(acked.len(), 3200);
    for id in &acked {
        assert_eq!(store.get(id).unwrap().unwrap().status, JobStatus::Queued);
    }
    let counts = store.counts().unwrap();
    assert_eq!(counts.get(&(RuntimeKind::Wasm, JobStatus::Queued)), Some(&3200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_starts_start_each_job_exactly_once() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(store.submit(spec(n)).await.unwrap().id);
    }
    let ids = Arc::new(ids);
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (store, ids, started) = (store.clone(), ids.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            // Each task walks the jobs from a different point so that they collide.
            for k in 0..ids.len() {
                let id = &ids[(k + t * 25) % ids.len()];
                if store.start(id).await.unwrap() {
                    started.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(started.load(Ordering::SeqCst), 200);
    for id in ids.iter() {
        let j = store.get(id).unwrap().unwrap();
        assert_eq!((j.status, j.attempts), (JobStatus::Running, 1));
    }
}
