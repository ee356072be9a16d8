//! Listing: filters, and pages that neither repeat nor skip while the store changes.

use crate::util::{db, open, spec, succeeded};
use hanzo_compute::RuntimeKind;
use hanzo_jobstore::{Cursor, Error, JobStatus, ListFilter, Page};
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn pages_are_newest_first_and_stable_while_jobs_come_and_go() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(store.submit(spec(n)).await.unwrap().id);
    }
    let all = ListFilter::default();
    let first = store.list(all, Page::first(10)).unwrap();
    let got: Vec<_> = first.jobs.iter().map(|j| j.id.clone()).collect();
    let newest: Vec<_> = ids.iter().rev().take(10).cloned().collect();
    assert_eq!(got, newest);
    let cursor = first.next.unwrap();

    // Changes between pages: new jobs, a job of the next page cancelled, and the cursor
    // passed through text as it would be in a URL.
    for n in 100..105 {
        store.submit(spec(n)).await.unwrap();
    }
    store.cancel(&ids[12]).await.unwrap();
    let cursor: Cursor = cursor.to_string().parse().unwrap();

    let mut seen: HashSet<String> = got.into_iter().collect();
    let mut after = Some(cursor);
    let mut pages = 1;
    while let Some(c) = after {
        let page = store
            .list(
                all,
                Page {
                    limit: 10,
                    after: Some(c),
                },
            )
            .unwrap();
        pages += 1;
        for j in &page.jobs {
            assert!(seen.insert(j.id.clone()), "job {} listed twice", j.id);
        }
        after = page.next;
    }
    assert_eq!(pages, 3);
    let original: HashSet<String> = ids.into_iter().collect();
    assert_eq!(seen, original, "every original job exactly once");
}

#[tokio::test]
async fn filters_by_status_and_runtime() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let mut ids = Vec::new();
    for n in 0..12 {
        let mut s = spec(n);
        if n % 3 == 0 {
            s.runtime = RuntimeKind::Deno;
        }
        ids.push(store.submit(s).await.unwrap().id);
    }
    for (n, id) in ids.iter().enumerate().filter(|(n, _)| n % 2 == 0) {
        assert!(store.start(id).await.unwrap());
        let out = succeeded(id, &spec(n as u64), json!(n));
        assert!(store.finish(&out).await.unwrap());
    }
    let list = |status, runtime| {
        let mut out = Vec::new();
        let mut page = Page::first(4);
        loop {
            let p = store.list(ListFilter { status, runtime }, page).unwrap();
            out.extend(
                p.jobs
                    .into_iter()
                    .map(|j| (j.spec.params["n"].as_u64().unwrap(), j.status, j.spec.runtime)),
            );
            match p.next {
                Some(c) => page.after = Some(c),
                None => return out,
            }
        }
    };
    let done = list(Some(JobStatus::Succeeded), None);
    assert_eq!(
        done.iter().map(|j| j.0).collect::<Vec<_>>(),
        vec![10, 8, 6, 4, 2, 0]
    );
    let deno = list(None, Some(RuntimeKind::Deno));
    assert_eq!(deno.iter().map(|j| j.0).collect::<Vec<_>>(), vec![9, 6, 3, 0]);
    let deno_queued = list(Some(JobStatus::Queued), Some(RuntimeKind::Deno));
    assert_eq!(deno_queued.iter().map(|j| j.0).collect::<Vec<_>>(), vec![9, 3]);
    assert!(list(Some(JobStatus::Running), None).is_empty());
    assert_eq!(list(None, None).len(), 12);
}

#[tokio::test]
async fn limits_are_clamped_and_bad_cursors_refused() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    for n in 0..3 {
        store.submit(spec(n)).await.unwrap();
    }
    let p = store.list(ListFilter::default(), Page::first(0)).unwrap();
    assert_eq!(p.jobs.len(), 1, "a limit of 0 serves one job");
    assert!(p.next.is_some());
    let p = store.list(ListFilter::default(), Page::first(3)).unwrap();
    assert_eq!((p.jobs.len(), p.next), (3, None));
    for bad in ["", "abc", "-4", "0", "1.5"] {
        let e = bad.parse::<Cursor>().unwrap_err();
        assert!(matches!(e, Error::InvalidCursor(_)), "{bad}: {e}");
    }
}
