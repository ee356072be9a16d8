//! Many calls of one module at once, from several OS threads and many tasks.

use crate::abi::cat_command;
use crate::util::*;
use hanzo_compute::{JobSpec, RuntimeKind};
use serde_json::json;

#[test]
fn many_threads_share_one_runtime() {
    let node = Node::new();
    let path = node.fixture("cat", &cat_command());
    std::thread::scope(|s| {
        for t in 0..4 {
            let compute = node.compute.clone();
            let path = path.clone();
            s.spawn(move || {
                // Each thread drives its own executor: the runtime must not care.
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for i in 0..25 {
                        let params = json!({"thread": t, "call": i});
                        let out = compute
                            .run(JobSpec::new(RuntimeKind::Wasm, &path).params(params.clone()))
                            .await;
                        assert_eq!(out.result.unwrap(), params);
                    }
                });
            });
        }
    });
    assert_eq!(node.wasm.compilations(), 1, "one module, compiled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_instance_pool_queues_instead_of_failing() {
    // The test config has 32 instance slots; 200 calls at once must all succeed.
    let node = Node::new();
    let path = node.fixture("cat", &cat_command());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = node.compute.clone();
        let spec = JobSpec::new(RuntimeKind::Wasm, &path).params(json!({"i": i}));
        tasks.push(tokio::spawn(async move { (i, c.run(spec).await) }));
    }
    for t in tasks {
        let (i, out) = t.await.unwrap();
        assert_eq!(out.result.unwrap(), json!({"i": i}));
    }
}
