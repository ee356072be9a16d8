//! Real swarms on loopback, in one process: discovery through one bootstrap node,
//! adverts, a request round trip, and what a misbehaving peer gets.

use hanzo_compute::config::NetworkConfig;
use hanzo_network::{
    Advert, Capacity, Ceilings, Client, Inbound, JobRequest, JobResponse, Price, Settings, start,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn advert() -> Advert {
    Advert {
        version: hanzo_network::advert::ADVERT_VERSION,
        node_version: String::new(),
        node_id: String::new(),
        addrs: Vec::new(),
        runtimes: vec!["wasm".into()],
        capacity: Capacity {
            slots: 4,
            memory_mb: 1024,
            cpu_millicores: 2000,
        },
        free: Capacity {
            slots: 4,
            memory_mb: 1024,
            cpu_millicores: 2000,
        },
        queue_depth: 0,
        remote_jobs: 0,
        ceilings: Ceilings::default(),
        price: Price::default(),
        issued_at_ms: 0,
    }
}

async fn node(seed: u8, bootstrap: Vec<String>) -> (Client, mpsc::Receiver<Inbound>) {
    let config = NetworkConfig {
        enabled: true,
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        bootstrap,
        mdns: false,
        advert_interval_ms: 300,
        ..NetworkConfig::default()
    };
    let settings = Settings::from_config(&config).unwrap();
    let (client, channels) = start([seed; 32], settings, Arc::new(advert)).await.unwrap();
    (client, channels.inbound)
}

/// Polls `f` every 50 ms for at most 15 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_find_each_other_through_one_and_trade_requests() {
    let (a, _a_in) = node(1, vec![]).await;
    let boot = a.listen_addrs().await.unwrap();
    assert!(
        boot[0].starts_with("/ip4/127.0.0.1/tcp/") && boot[0].ends_with(&format!("/p2p/{}", a.peer_id())),
        "{boot:?}"
    );
    let (b, _b_in) = node(2, boot.clone()).await;
    let (c, mut c_in) = node(3, boot).await;

    // b learns of c (which it was never told about) with c's advert.
    eventually("b to see c's advert", || {
        let b = b.clone();
        let c_id = c.peer_id().to_string();
        async move {
            b.peers()
                .await
                .unwrap()
                .iter()
                .any(|p| p.peer_id == c_id && p.runtimes == ["wasm"])
        }
    })
    .await;
    let peers = b.peers().await.unwrap();
    let pc = peers
        .iter()
        .find(|p| p.peer_id == c.peer_id().to_string())
        .unwrap();
    assert_eq!(
        pc.node_id.as_deref(),
        Some(hanzo_compute::NodeKey::from_seed([3; 32]).id())
    );
    assert_eq!(pc.resources.capacity.slots, 4);
    assert!((0.0..=1.0).contains(&pc.reputation));

    // A request from b reaches c's inbound channel, and c's answer comes back.
    let responder = tokio::spawn({
        let c = c.clone();
        async move {
            let Some(Inbound::Job {
                peer,
                request,
                channel,
            }) = c_in.recv().await
            else {
                panic!("no request")
            };
            assert!(matches!(request, JobRequest::Cancel { .. }));
            c.respond_job(
                channel,
                JobResponse::Unknown {
                    execution_id: peer.to_string(),
                },
            )
            .await;
        }
    });
    let reply = b
        .job(
            c.peer_id(),
            JobRequest::Cancel {
                execution_id: "x1".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        JobResponse::Unknown {
            execution_id: b.peer_id().to_string()
        }
    );
    responder.await.unwrap();
    let m = c.metrics().await.unwrap();
    assert!(m.requests_in >= 1 && m.adverts_accepted >= 1, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_is_refused_past_the_rate() {
    let (a, mut a_in) = node(11, vec![]).await;
    let boot = a.listen_addrs().await.unwrap();
    let (b, _b_in) = node(12, boot).await;
    eventually("b to connect to a", || {
        let (b, a) = (b.clone(), a.peer_id());
        async move { b.is_connected(a).await }
    })
    .await;
    // a answers every request that reaches it; those past the rate never reach it.
    let delivered = Arc::new(std::sync::atomic::AtomicU32::new(0));
    tokio::spawn({
        let (a, delivered) = (a.clone(), delivered.clone());
        async move {
            while let Some(Inbound::Job { channel, .. }) = a_in.recv().await {
                delivered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                a.respond_job(
                    channel,
                    JobResponse::Unknown {
                        execution_id: String::new(),
                    },
                )
                .await;
            }
        }
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let b = b.clone();
        let peer = a.peer_id();
        tasks.push(tokio::spawn(async move {
            b.job(
                peer,
                JobRequest::Cancel {
                    execution_id: format!("e{i}"),
                },
            )
            .await
        }));
    }
    let (mut refused, mut answered) = (0u32, 0u32);
    for t in tasks {
        match t.await.unwrap().unwrap() {
            JobResponse::Refused { reason } => {
                assert_eq!(reason, "rate limited");
                refused += 1;
            }
            JobResponse::Unknown { .. } => answered += 1,
            other => panic!("{other:?}"),
        }
    }
    // The default is 50 a second with a burst of 50: the node saw at most the burst
    // plus what the bucket refilled while the flood lasted, and refused the rest.
    let allowed = 50 + (started.elapsed().as_secs_f64() * 50.0).ceil() as u32;
    let delivered = delivered.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(delivered, answered);
    assert!(
        answered <= allowed,
        "{answered} answered, at most {allowed} allowed"
    );
    assert_eq!(refused + answered, 100);
    assert!(refused >= 1, "nothing refused");
    assert_eq!(a.metrics().await.unwrap().requests_refused, u64::from(refused));
}
