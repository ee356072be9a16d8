//! Retention: finished jobs are deleted by age and by count; live ones never are.

use crate::util::{db, failed, options, spec, succeeded};
use hanzo_compute::ComputeError;
use hanzo_jobstore::{JobStatus, JobStore, ListFilter, Options, Page, Retention};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn with(retention: Retention) -> Options {
    Options {
        retention,
        ..options()
    }
}

async fn finish_n(store: &JobStore, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let job = store.submit(spec(i as u64)).await.unwrap();
        assert!(store.start(&job.id).await.unwrap());
        let out = if i % 2 == 0 {
            succeeded(&job.id, &job.spec, json!(i))
        } else {
            failed(&job.id, ComputeError::ToolFailed("no".into()))
        };
        assert!(store.finish(&out).await.unwrap());
        ids.push(job.id);
    }
    ids
}

fn all_ids(store: &JobStore) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut page = Page::first(1000);
    loop {
        let p = store.list(ListFilter::default(), page).unwrap();
        out.extend(p.jobs.into_iter().map(|j| j.id));
        match p.next {
            Some(c) => page.after = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn keeps_the_most_recently_finished_and_every_live_job() {
    let (_dir, path) = db();
    let keep = Retention {
        max_age: None,
        max_finished: Some(10),
        interval: Duration::from_secs(3600),
    };
    let (store, _) = JobStore::open(&path, with(keep)).unwrap();
    let finished = finish_n(&store, 30).await;
    let queued = store.submit(spec(100)).await.unwrap().id;
    let running = store.submit(spec(101)).await.unwrap().id;
    assert!(store.start(&running).await.unwrap());
    let cancelled = store.submit(spec(102)).await.unwrap().id;
    store.cancel(&cancelled).await.unwrap();

    assert_eq!(store.prune().await.unwrap(), 21);
    let left = all_ids(&store);
    let mut expected: HashSet<String> = finished[21..].iter().cloned().collect();
    expected.extend([queued.clone(), running.clone(), cancelled]);
    assert_eq!(left, expected);
    assert_eq!(store.prune().await.unwrap(), 0, "nothing more to prune");
    assert_eq!(store.get(&queued).unwrap().unwrap().status, JobStatus::Queued);
    assert_eq!(store.get(&finished[0]).unwrap(), None);
    assert_eq!(store.logs(&finished[0]).unwrap(), None);
}

#[tokio::test]
async fn deletes_jobs_finished_longer_ago_than_max_age() {
    let (_dir, path) = db();
    let keep = Retention {
        max_age: Some(Duration::from_millis(1500)),
        max_finished: None,
        interval: Duration::from_secs(3600),
    };
    let (store, _) = JobStore::open(&path, with(keep)).unwrap();
    let old = finish_n(&store, 5).await;
    let live = store.submit(spec(50)).await.unwrap().id;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let new = finish_n(&store, 3).await;
    assert_eq!(store.prune().await.unwrap(), 5);
    let mut expected: HashSet<String> = new.into_iter().collect();
    expected.insert(live);
    assert_eq!(all_ids(&store), expected);
    assert!(old.iter().all(|id| store.get(id).unwrap().is_none()));
}

#[tokio::test]
async fn the_writer_prunes_by_itself_every_interval() {
    let (_dir, path) = db();
    let keep = Retention {
        max_age: None,
        max_finished: Some(5),
        interval: Duration::from_millis(100),
    };
    let (store, _) = JobStore::open(&path, with(keep)).unwrap();
    let ids = finish_n(&store, 20).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = all_ids(&store);
        if left.len() == 5 {
            let newest: HashSet<String> = ids[15..].iter().cloned().collect();
            assert_eq!(left, newest);
            break;
        }
        assert!(Instant::now() < deadline, "still {} jobs", left.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_one_chunk_is_pruned_completely() {
    let (_dir, path) = db();
    let keep = Retention {
        max_age: None,
        max_finished: Some(100),
        interval: Duration::from_secs(3600),
    };
    let (store, _) = JobStore::open(&path, with(keep)).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { finish_n(&store, 300).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.prune().await.unwrap(), 4700);
    assert_eq!(all_ids(&store).len(), 100);
}
