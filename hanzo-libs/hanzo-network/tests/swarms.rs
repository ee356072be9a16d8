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
    node_with(seed, bootstrap, 50).await
}

async fn node_with(seed: u8, bootstrap: Vec<String>, rate: u32) -> (Client, mpsc::Receiver<Inbound>) {
    let config = NetworkConfig {
        max_requests_per_peer_per_sec: rate,
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
    assert!(m.requests_in >= 1, "{m:?}");
    // b took c's advert (what the wait above saw).
    let m = b.metrics().await.unwrap();
    assert!(m.adverts_accepted >= 1, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_is_refused_past_the_rate() {
    let (a, mut a_in) = node_with(11, vec![], 10).await;
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
    for i in 0..30 {
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
    // 10 a second with a burst of 10: the node saw at most the burst plus what the
    // bucket refilled while the flood lasted, and refused the rest.
    let allowed = 10 + (started.elapsed().as_secs_f64() * 10.0).ceil() as u32;
    let delivered = delivered.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(delivered, answered);
    assert!(
        answered <= allowed,
        "{answered} answered, at most {allowed} allowed"
    );
    assert_eq!(refused + answered, 30);
    assert!(refused >= 1, "nothing refused");
    assert_eq!(a.metrics().await.unwrap().requests_refused, u64::from(refused));
}

/// A raw libp2p peer speaking the job protocol's framing with whatever bytes it likes.
mod raw {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    use hanzo_network::JobResponse;
    use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, noise, tcp, yamux};
    use std::time::Duration;

    const JOBS: StreamProtocol = StreamProtocol::new(hanzo_network::protocol::JOBS_PROTOCOL);

    pub struct Raw {
        pub peer_id: PeerId,
        target: PeerId,
        control: libp2p_stream::Control,
    }

    /// Dials the node at `addr` (which ends in its `/p2p/` id) and drives the swarm.
    pub fn start(addr: &Multiaddr) -> Raw {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let target = match addr.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
            _ => panic!("no peer id in {addr}"),
        };
        let peer_id = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        swarm.dial(addr.clone()).unwrap();
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        Raw {
            peer_id,
            target,
            control,
        }
    }

    /// A frame as the protocol has it: length, id, body.
    pub fn frame(id: u64, body: &[u8]) -> Vec<u8> {
        let mut f = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// The CBOR of any value: what the node's decoder gets.
    pub fn cbor(v: &serde_json::Value) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), v).unwrap()
    }

    impl Raw {
        /// Job streams the node opens to this peer.
        pub fn accept(&self) -> libp2p_stream::IncomingStreams {
            self.control.clone().accept(JOBS).unwrap()
        }

        pub async fn open(&self) -> Result<Stream, String> {
            self.control
                .clone()
                .open_stream(self.target, JOBS)
                .await
                .map_err(|e| e.to_string())
        }

        /// Writes `bytes` on a new stream (on a task of its own: the node may stop
        /// reading) and returns how the exchange ended: `response <answer>` for the
        /// first answer, or `failure <why>`.
        pub async fn send(&self, bytes: Vec<u8>) -> String {
            let stream = match self.open().await {
                Ok(s) => s,
                Err(e) => return format!("failure {e}"),
            };
            let (mut r, mut w) = stream.split();
            tokio::spawn(async move {
                let _ = w.write_all(&bytes).await;
                let _ = w.flush().await;
                // Held open until the node is done with the stream.
                tokio::time::sleep(Duration::from_secs(20)).await;
            });
            match tokio::time::timeout(Duration::from_secs(15), answer(&mut r)).await {
                Ok(Ok((_, a))) => format!("response {a:?}"),
                Ok(Err(e)) => format!("failure {e}"),
                Err(_) => "no outcome".into(),
            }
        }
    }

    /// Reads one frame: its id and body.
    pub async fn read_frame<R: futures::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u64, Vec<u8>)> {
        let mut h = [0u8; 12];
        r.read_exact(&mut h).await?;
        let len = u32::from_be_bytes(h[..4].try_into().unwrap()) as usize - 8;
        let id = u64::from_be_bytes(h[4..].try_into().unwrap());
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        Ok((id, body))
    }

    /// Reads one answer frame: its id and what it says.
    pub async fn answer<R: futures::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u64, JobResponse)> {
        let (id, body) = read_frame(r).await?;
        let a = cbor4ii::serde::from_slice(&body).map_err(std::io::Error::other)?;
        Ok((id, a))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_cost_their_sender_not_the_node() {
    let (a, mut a_in) = node(21, vec![]).await;
    let addr: libp2p::Multiaddr = a.listen_addrs().await.unwrap()[0].parse().unwrap();
    let delivered = Arc::new(std::sync::atomic::AtomicU32::new(0));
    tokio::spawn({
        let delivered = delivered.clone();
        async move {
            while a_in.recv().await.is_some() {
                delivered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let raw = raw::start(&addr);
    // Valid CBOR that is no request of the protocol.
    let r = raw
        .send(raw::frame(
            1,
            &raw::cbor(&serde_json::json!({"Offer": {"nonsense": [1, 2, 3]}})),
        ))
        .await;
    assert!(
        r.contains("Refused") && r.contains("malformed: a request that does not decode"),
        "{r}"
    );
    // 3 MiB: over the 2 MiB a request may be. The node reads the frame's length, not
    // its body: it answers and closes the stream.
    let big = raw::cbor(&serde_json::Value::String("x".repeat(3 * 1024 * 1024)));
    let r = raw.send(raw::frame(2, &big)).await;
    assert!(r.contains("malformed: a request over 2097152 bytes"), "{r}");
    // Neither reached the node's handler; both were counted and the sender penalised.
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 0);
    let m = a.metrics().await.unwrap();
    assert_eq!(m.malformed_requests, 2, "{m:?}");
    let peers = a.peers().await.unwrap();
    let liar = peers
        .iter()
        .find(|p| p.peer_id == raw.peer_id.to_string())
        .expect("the raw peer is listed");
    assert!(
        liar.reputation < hanzo_network::peers::INITIAL_REPUTATION,
        "{liar:?}"
    );
    // And the node still answers a well-formed request from anyone else.
    let (b, _b_in) = node(22, vec![a.listen_addrs().await.unwrap()[0].clone()]).await;
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        b.job(
            a.peer_id(),
            JobRequest::Cancel {
                execution_id: "e".into(),
            },
        ),
    )
    .await;
    // a's handler above drops the channel without answering, which refuses the
    // request; it was delivered, which is what this checks.
    let _ = res;
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A peer holds at most 64 requests being answered on one job stream (past them it is
/// told "busy" at once) and at most 4 job streams (a fifth is closed unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_64_requests_in_flight_per_stream_and_4_streams() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (a, mut a_in) = node_with(24, vec![], 10_000).await;
    let addr: libp2p::Multiaddr = a.listen_addrs().await.unwrap()[0].parse().unwrap();
    // a holds every request it is handed, unanswered.
    let delivered = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let delivered = delivered.clone();
        async move {
            let mut held = Vec::new();
            while let Some(Inbound::Job { channel, .. }) = a_in.recv().await {
                held.push(channel);
                delivered.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let raw = raw::start(&addr);
    let cancel = raw::cbor(&serde_json::json!({"Cancel": {"execution_id": "e"}}));
    let (mut r, mut w) = raw.open().await.unwrap().split();
    let mut bytes = Vec::new();
    for id in 0..70 {
        bytes.extend(raw::frame(id, &cancel));
    }
    w.write_all(&bytes).await.unwrap();
    w.flush().await.unwrap();
    for _ in 0..6 {
        let (id, answer) = tokio::time::timeout(Duration::from_secs(10), raw::answer(&mut r))
            .await
            .expect("an answer at once")
            .unwrap();
        assert!(id >= 64, "request {id} was refused");
        assert_eq!(
            answer,
            JobResponse::Refused {
                reason: "busy".into()
            }
        );
    }
    eventually("64 requests delivered", || {
        let d = delivered.clone();
        async move { d.load(Ordering::SeqCst) == 64 }
    })
    .await;
    // Three more streams are served: a request on each reaches the node.
    let mut more = Vec::new();
    for id in 100..103 {
        let (r, mut w) = raw.open().await.unwrap().split();
        w.write_all(&raw::frame(id, &cancel)).await.unwrap();
        w.flush().await.unwrap();
        more.push((r, w));
    }
    eventually("67 requests delivered", || {
        let d = delivered.clone();
        async move { d.load(Ordering::SeqCst) == 67 }
    })
    .await;
    // A fifth is closed without being read.
    let (mut r5, mut w5) = raw.open().await.unwrap().split();
    let _ = w5.write_all(&raw::frame(200, &cancel)).await;
    let _ = w5.flush().await;
    let end = tokio::time::timeout(Duration::from_secs(10), raw::answer(&mut r5))
        .await
        .expect("the fifth stream closed at once");
    assert!(end.is_err(), "{end:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delivered.load(Ordering::SeqCst), 67);
    assert_eq!(a.metrics().await.unwrap().requests_refused, 6);
}

/// A peer that answers a request id the node never sent has lost the framing or lies:
/// the stream goes, and the request in flight on it fails as malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_request_never_sent_breaks_the_stream() {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    let (b, _b_in) = node(25, vec![]).await;
    let addr: libp2p::Multiaddr = b.listen_addrs().await.unwrap()[0].parse().unwrap();
    let raw = raw::start(&addr);
    let mut incoming = raw.accept();
    let raw_id = raw.peer_id;
    eventually("b to be connected to the raw peer", || {
        let b = b.clone();
        async move { b.is_connected(raw_id).await }
    })
    .await;
    let call = tokio::spawn({
        let b = b.clone();
        async move {
            b.job(
                raw_id,
                JobRequest::Cancel {
                    execution_id: "e".into(),
                },
            )
            .await
        }
    });
    let (_, stream) = tokio::time::timeout(Duration::from_secs(10), incoming.next())
        .await
        .expect("b opens a job stream")
        .unwrap();
    let (mut r, mut w) = stream.split();
    let (id, _) = raw::read_frame(&mut r).await.unwrap();
    let unknown = raw::cbor(&serde_json::json!({"Unknown": {"execution_id": "e"}}));
    w.write_all(&raw::frame(id + 1000, &unknown)).await.unwrap();
    w.flush().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends at once")
        .unwrap();
    match answer {
        Err(hanzo_network::NetworkError::Malformed { why, .. }) => {
            assert!(why.contains("never sent"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

/// A large answer goes out in chunks taking turns with the others: a small answer
/// queued behind 20 MiB arrives first, rather than after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_does_not_hold_up_a_small_one_behind_it() {
    let (a, mut a_in) = node_with(26, vec![], 10_000).await;
    let boot = a.listen_addrs().await.unwrap();
    let (b, _b_in) = node_with(27, boot, 10_000).await;
    tokio::spawn({
        let a = a.clone();
        async move {
            let mut small = None;
            while let Some(Inbound::Job { channel, request, .. }) = a_in.recv().await {
                let JobRequest::Cancel { execution_id } = request else {
                    panic!("{request:?}")
                };
                if execution_id == "small" {
                    small = Some(channel);
                    continue;
                }
                let big = hanzo_network::RemoteResult {
                    execution_id,
                    status: "succeeded".into(),
                    output: Some(format!("\"{}\"", "x".repeat(20 * 1024 * 1024))),
                    error: None,
                    usage: None,
                    logs: Vec::new(),
                    receipt: None,
                };
                // The big answer is queued (and its first chunk on its way) before
                // the small one is.
                a.respond_job(channel, JobResponse::Finished(Box::new(big))).await;
                let small = small.take().expect("the small request came first");
                a.respond_job(
                    small,
                    JobResponse::Unknown {
                        execution_id: "small".into(),
                    },
                )
                .await;
            }
        }
    });
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let call = |id: &'static str| {
        let (b, peer, order) = (b.clone(), a.peer_id(), order.clone());
        tokio::spawn(async move {
            let r = b
                .job(
                    peer,
                    JobRequest::Cancel {
                        execution_id: id.into(),
                    },
                )
                .await;
            order.lock().unwrap().push(id);
            r
        })
    };
    let small = call("small");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = call("big");
    let big = tokio::time::timeout(Duration::from_secs(20), big)
        .await
        .unwrap()
        .unwrap();
    let small = tokio::time::timeout(Duration::from_secs(5), small)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(big, Ok(JobResponse::Finished(ref f)) if f.output.as_ref().unwrap().len() > 20 * 1024 * 1024),
        "{:?}",
        big.map(|_| ())
    );
    assert!(matches!(small, Ok(JobResponse::Unknown { .. })), "{small:?}");
    assert_eq!(*order.lock().unwrap(), vec!["small", "big"]);
}

/// A peer that starts a frame and sends no more holds its stream for 30 s, not for
/// good: the node closes it and counts the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_begun_and_never_finished_closes_its_stream_after_30_s() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let (a, _a_in) = node(28, vec![]).await;
    let addr: libp2p::Multiaddr = a.listen_addrs().await.unwrap()[0].parse().unwrap();
    let raw = raw::start(&addr);
    let (mut r, mut w) = raw.open().await.unwrap().split();
    // Five bytes of a twelve-byte header, then silence.
    w.write_all(&[0, 0, 0, 20, 0]).await.unwrap();
    w.flush().await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let end = tokio::time::timeout(Duration::from_secs(60), r.read(&mut buf))
        .await
        .expect("the node closes the stream within a minute");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(29), "closed after {waited:?}");
    assert_eq!(a.metrics().await.unwrap().inbound_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_peers_and_peers_off_the_allow_list_never_hold_a_connection() {
    let b_id = hanzo_network::identity::keypair([32; 32]).public().to_peer_id();
    let c_id = hanzo_network::identity::keypair([33; 32]).public().to_peer_id();
    let start_with = |seed: u8, bootstrap: Vec<String>, allow: Vec<String>, deny: Vec<String>| async move {
        let config = NetworkConfig {
            enabled: true,
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            bootstrap,
            mdns: false,
            advert_interval_ms: 300,
            allow_peers: allow,
            deny_peers: deny,
            ..NetworkConfig::default()
        };
        let (client, channels) = start(
            [seed; 32],
            Settings::from_config(&config).unwrap(),
            Arc::new(advert),
        )
        .await
        .unwrap();
        (client, channels.inbound)
    };
    // a denies b and allows anyone else; d allows only a.
    let (a, _a_in) = start_with(31, vec![], vec![], vec![b_id.to_string()]).await;
    let boot = a.listen_addrs().await.unwrap();
    let (b, _b_in) = start_with(32, boot.clone(), vec![], vec![]).await;
    let (c, _c_in) = start_with(33, boot.clone(), vec![], vec![]).await;
    let (d, _d_in) = start_with(34, boot.clone(), vec![a.peer_id().to_string()], vec![]).await;
    // c, allowed everywhere it goes, gets in: a sees it.
    eventually("a to connect to c", || {
        let (a, c) = (a.clone(), c.peer_id());
        async move { a.is_connected(c).await }
    })
    .await;
    eventually("d to connect to a", || {
        let (d, a) = (d.clone(), a.peer_id());
        async move { d.is_connected(a).await }
    })
    .await;
    // c dials d itself; b keeps dialling a (its bootstrap node, every 5 s).
    let d_addr: libp2p::Multiaddr = d.listen_addrs().await.unwrap()[0].parse().unwrap();
    c.dial(d_addr).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!a.is_connected(b_id).await, "a denied b");
    assert!(!b.is_connected(a.peer_id()).await);
    assert!(
        !a.peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == b_id.to_string()),
        "b is not a's peer"
    );
    assert!(!d.is_connected(c_id).await, "d allows only a");
    assert!(
        !d.peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == c_id.to_string() && p.connected)
    );
}

/// 200 requests at once to one peer, each held there for a while as an `Await` is:
/// more than a connection has streams for. The ones past this node's share wait in its
/// queue and all are answered; libp2p's handler alone would fail the rest with "max
/// sub-streams reached".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_to_one_peer_than_it_has_streams_for_wait_their_turn() {
    let (a, mut a_in) = node_with(20, vec![], 10_000).await;
    let boot = a.listen_addrs().await.unwrap();
    let (b, _b_in) = node_with(21, boot, 10_000).await;
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let responder = tokio::spawn({
        let (a, most) = (a.clone(), most.clone());
        async move {
            let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            while let Some(Inbound::Job { channel, request, .. }) = a_in.recv().await {
                let JobRequest::Cancel { execution_id } = request else {
                    panic!("{request:?}")
                };
                let now = open.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                let (a, open) = (a.clone(), open.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    a.respond_job(channel, JobResponse::Unknown { execution_id })
                        .await;
                });
            }
        }
    });
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (b, peer) = (b.clone(), a.peer_id());
            tokio::spawn(async move {
                let id = format!("e{i}");
                let r = b
                    .job(
                        peer,
                        JobRequest::Cancel {
                            execution_id: id.clone(),
                        },
                    )
                    .await;
                (id, r)
            })
        })
        .collect();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        match r {
            Ok(JobResponse::Unknown { execution_id }) => assert_eq!(execution_id, id),
            other => panic!("{id}: {other:?}"),
        }
    }
    // The sender kept within its share of the streams, and used it.
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=48).contains(&most), "{most} requests were open at once");
    responder.abort();
}

/// A raw libp2p peer on the advert topic, publishing whatever bytes it likes.
mod gossip {
    use futures::StreamExt;
    use libp2p::identity::Keypair;
    use libp2p::swarm::SwarmEvent;
    use libp2p::{Multiaddr, Swarm, gossipsub, noise, tcp, yamux};
    use std::hash::{Hash, Hasher};
    use std::time::Duration;

    pub fn swarm(key: Keypair) -> Swarm<gossipsub::Behaviour> {
        libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| {
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Anonymous)
                    .message_id_fn(|m: &gossipsub::Message| {
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        m.data.hash(&mut h);
                        gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
                    })
                    .build()
                    .unwrap();
                let mut g =
                    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap();
                g.subscribe(&gossipsub::IdentTopic::new(hanzo_network::protocol::ADVERT_TOPIC))
                    .unwrap();
                g
            })
            .unwrap()
            .build()
    }

    /// Dials `addr` and drives the swarm until the node there is on the topic.
    pub async fn join(swarm: &mut Swarm<gossipsub::Behaviour>, addr: &Multiaddr) {
        swarm.dial(addr.clone()).unwrap();
        let deadline = tokio::time::sleep(Duration::from_secs(15));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => panic!("the node never joined the advert topic"),
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) = event {
                        return;
                    }
                }
            }
        }
    }

    /// Publishes `data` and keeps the swarm running for `for_how_long`, so that it goes out.
    pub async fn publish(swarm: &mut Swarm<gossipsub::Behaviour>, data: Vec<u8>, for_how_long: Duration) {
        swarm
            .behaviour_mut()
            .publish(
                gossipsub::IdentTopic::new(hanzo_network::protocol::ADVERT_TOPIC),
                data,
            )
            .unwrap();
        let _ = tokio::time::timeout(for_how_long, async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_advert_is_rejected_and_costs_the_peer_that_sent_it() {
    let (a, _a_in) = node(31, vec![]).await;
    let addr: libp2p::Multiaddr = a.listen_addrs().await.unwrap()[0].parse().unwrap();
    let raw_key = hanzo_network::identity::keypair([32; 32]);
    let raw_peer = raw_key.public().to_peer_id();
    let victim = hanzo_network::identity::keypair([33; 32]);
    let victim_peer = victim.public().to_peer_id();
    let mut raw = gossip::swarm(raw_key.clone());
    gossip::join(&mut raw, &addr).await;

    let now = hanzo_network::advert::now_ms();
    let advert_of = |key: &libp2p::identity::Keypair, at: u64| Advert {
        node_id: hanzo_network::identity::node_id(&key.public().to_peer_id()).unwrap(),
        addrs: vec!["/ip4/127.0.0.1/tcp/9".into()],
        issued_at_ms: at,
        ..advert()
    };
    // An advert naming another node (a free node with a low price), sealed by the raw
    // peer's own key: the node must not believe it.
    let forged = advert_of(&victim, now).seal(&raw_key);
    gossip::publish(&mut raw, forged, Duration::from_millis(500)).await;
    eventually("the forged advert to be rejected", || {
        let a = a.clone();
        async move { a.metrics().await.unwrap().adverts_rejected >= 1 }
    })
    .await;
    let peers = a.peers().await.unwrap();
    assert!(
        !peers.iter().any(|p| p.peer_id == victim_peer.to_string()),
        "the forged node is listed: {peers:?}"
    );
    let sender = peers
        .iter()
        .find(|p| p.peer_id == raw_peer.to_string())
        .expect("the raw peer is listed");
    assert!(
        sender.reputation < hanzo_network::peers::INITIAL_REPUTATION,
        "{sender:?}"
    );
    assert!(sender.version.is_none(), "{sender:?}");

    // The same peer's own advert, sealed by its own key, is taken.
    let own = advert_of(&raw_key, now + 1).seal(&raw_key);
    gossip::publish(&mut raw, own, Duration::from_millis(500)).await;
    eventually("the raw peer's own advert to be taken", || {
        let a = a.clone();
        let raw_peer = raw_peer.to_string();
        async move {
            a.peers()
                .await
                .unwrap()
                .iter()
                .any(|p| p.peer_id == raw_peer && p.version.is_some())
        }
    })
    .await;
    let m = a.metrics().await.unwrap();
    assert_eq!(m.adverts_rejected, 1, "{m:?}");
    assert_eq!(m.adverts_accepted, 1, "{m:?}");
}
