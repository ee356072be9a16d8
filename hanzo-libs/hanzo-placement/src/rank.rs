//! Which node runs a job: a chain of hard filters, then weighted scores, as data.
//!
//! In the spirit of Bacalhau's rankers: each filter can only remove a node and says
//! why (the reasons end up in an `unschedulable` error), each score is a number in
//! 0..=1 with a weight, and the candidates are tried best first. The submitter then
//! *offers* the job to each in turn; the executor's own admission has the last word.

use hanzo_compute::{JobSpec, RuntimeKind};
use hanzo_network::{Capacity, Ceilings, PeerId, Price};
use serde::Serialize;

/// What the ranking knows of one node: a peer from its advert, or this node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// `None` for this node.
    pub peer: Option<PeerId>,
    /// Runtimes it runs for others (for this node: the ones it has).
    pub runtimes: Vec<String>,
    /// The largest limits it accepts.
    pub ceilings: Ceilings,
    /// What it hands out in all.
    pub capacity: Capacity,
    /// What is free.
    pub free: Capacity,
    /// Jobs waiting in its queue.
    pub queue_depth: u64,
    /// Round trip in ms (0 for this node; `None` when not measured yet).
    pub latency_ms: Option<f64>,
    /// 0..=1 (1 for this node).
    pub reputation: f64,
    /// Its prices (zero for this node: running here costs no one anything).
    pub price: Price,
}

impl NodeView {
    /// A peer as its latest advert, and this node's measurements, describe it.
    pub fn of_peer(peer: PeerId, p: &hanzo_network::PeerInfo) -> NodeView {
        NodeView {
            peer: Some(peer),
            runtimes: p.runtimes.clone(),
            ceilings: p.ceilings.unwrap_or_default(),
            capacity: p.resources.capacity,
            free: p.resources.free,
            queue_depth: p.resources.queue_depth,
            latency_ms: p.latency_ms,
            reputation: p.reputation,
            price: p.price.unwrap_or_default(),
        }
    }

    /// The name used in reasons: the peer id, or "this node".
    pub fn name(&self) -> String {
        self.peer
            .map_or_else(|| "this node".to_string(), |p| p.to_string())
    }
}

/// A hard filter: a node that fails it is never offered the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// It offers the job's runtime.
    RuntimeOffered,
    /// The job's limits are within its ceilings.
    WithinCeilings,
    /// The job's demand fits its total capacity (it could ever run there).
    FitsCapacity,
}

/// A score in 0..=1, higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Share of its slots and memory that is free.
    FreeCapacity,
    /// 1 / (1 + queue depth).
    Queue,
    /// 1 / (1 + rtt / 10 ms); 0.5 when not measured yet.
    Latency,
    /// Its reputation.
    Reputation,
    /// The cheapest candidate's price for the job over this one's (1 when free).
    Price,
}

/// The chain: filters in order, then weighted scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chain {
    /// Applied in order; the first that fails names the reason.
    pub filters: Vec<Filter>,
    /// Summed with their weights.
    pub scores: Vec<(Score, f64)>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            filters: vec![
                Filter::RuntimeOffered,
                Filter::WithinCeilings,
                Filter::FitsCapacity,
            ],
            scores: vec![
                (Score::FreeCapacity, 0.3),
                (Score::Queue, 0.2),
                (Score::Latency, 0.2),
                (Score::Reputation, 0.2),
                (Score::Price, 0.1),
            ],
        }
    }
}

/// A node that passed every filter, with its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The node.
    pub node: NodeView,
    /// Weighted sum of the scores.
    pub score: f64,
}

/// The most a job can cost on `price` (its limits, held for its whole timeout), in
/// micro-credits.
pub fn price_ceiling(spec: &JobSpec, price: &Price) -> u64 {
    let secs = spec.limits.timeout_ms.div_ceil(1000);
    let cores = u64::from(spec.limits.cpu_shares).div_ceil(1024).max(1);
    let gib = spec.limits.memory_mb.div_ceil(1024).max(1);
    price
        .per_job
        .saturating_add(price.per_cpu_second.saturating_mul(secs).saturating_mul(cores))
        .saturating_add(price.per_gib_second.saturating_mul(secs).saturating_mul(gib))
}

impl Chain {
    /// Why `node` cannot take `spec`, or `None`.
    pub fn filter(&self, spec: &JobSpec, node: &NodeView) -> Option<String> {
        let l = &spec.limits;
        for f in &self.filters {
            let why = match f {
                Filter::RuntimeOffered => (!node.runtimes.iter().any(|r| r == spec.runtime.name()))
                    .then(|| format!("does not offer the {} runtime", spec.runtime)),
                Filter::WithinCeilings => {
                    let c = &node.ceilings;
                    let over = [
                        ("memory_mb", l.memory_mb, c.memory_mb),
                        ("timeout_ms", l.timeout_ms, c.timeout_ms),
                        ("disk_mb", l.disk_mb, c.disk_mb),
                        ("max_output_bytes", l.max_output_bytes, c.output_bytes),
                        ("fuel", l.fuel.unwrap_or(0), c.fuel),
                    ]
                    .into_iter()
                    .find(|(_, want, max)| want > max);
                    over.map(|(name, want, max)| format!("{name} {want} is over its ceiling {max}"))
                }
                Filter::FitsCapacity => {
                    let mem = l.memory_mb;
                    let milli = (u64::from(l.cpu_shares) * 1000).div_ceil(1024);
                    let cap = &node.capacity;
                    if cap.slots == 0 {
                        Some("runs no jobs".to_string())
                    } else if mem > cap.memory_mb {
                        Some(format!("has {} MiB in all, the job asks {mem}", cap.memory_mb))
                    } else if milli > cap.cpu_millicores {
                        Some(format!(
                            "has {} millicores in all, the job asks {milli}",
                            cap.cpu_millicores
                        ))
                    } else {
                        None
                    }
                }
            };
            if why.is_some() {
                return why;
            }
        }
        None
    }

    /// The nodes that pass every filter, best first, and the reason of each that did
    /// not (in the order given).
    pub fn rank(&self, spec: &JobSpec, nodes: Vec<NodeView>) -> (Vec<Candidate>, Vec<(String, String)>) {
        let mut passed = Vec::new();
        let mut reasons = Vec::new();
        for node in nodes {
            match self.filter(spec, &node) {
                Some(why) => reasons.push((node.name(), why)),
                None => passed.push(node),
            }
        }
        let cheapest = passed
            .iter()
            .map(|n| price_ceiling(spec, &n.price))
            .min()
            .unwrap_or(0);
        let mut out: Vec<Candidate> = passed
            .into_iter()
            .map(|node| {
                let score = self
                    .scores
                    .iter()
                    .map(|(s, w)| w * score(*s, spec, &node, cheapest))
                    .sum::<f64>();
                Candidate { node, score }
            })
            .collect();
        // Best first; ties go to this node, then to the lower peer id (stable).
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.node.peer.is_some().cmp(&b.node.peer.is_some()))
                .then_with(|| a.node.peer.cmp(&b.node.peer))
        });
        (out, reasons)
    }
}

fn ratio(free: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (free as f64 / total as f64).clamp(0.0, 1.0)
    }
}

fn score(s: Score, spec: &JobSpec, n: &NodeView, cheapest: u64) -> f64 {
    match s {
        Score::FreeCapacity => {
            (ratio(n.free.slots, n.capacity.slots) + ratio(n.free.memory_mb, n.capacity.memory_mb)) / 2.0
        }
        Score::Queue => 1.0 / (1.0 + n.queue_depth as f64),
        Score::Latency => n.latency_ms.map_or(0.5, |ms| 1.0 / (1.0 + ms.max(0.0) / 10.0)),
        Score::Reputation => n.reputation.clamp(0.0, 1.0),
        Score::Price => {
            let cost = price_ceiling(spec, &n.price);
            if cost == 0 {
                1.0
            } else {
                cheapest as f64 / cost as f64
            }
        }
    }
}

/// The runtimes named in `names` that this build knows.
pub fn known_runtimes(names: &[String]) -> Vec<RuntimeKind> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(peer: Option<PeerId>, free_slots: u64, latency: f64, reputation: f64) -> NodeView {
        NodeView {
            peer,
            runtimes: vec!["wasm".into()],
            ceilings: Ceilings {
                memory_mb: 4096,
                timeout_ms: 3_600_000,
                fuel: u64::MAX,
                disk_mb: 4096,
                output_bytes: 1 << 24,
            },
            capacity: Capacity {
                slots: 4,
                memory_mb: 8192,
                cpu_millicores: 4000,
            },
            free: Capacity {
                slots: free_slots,
                memory_mb: 8192,
                cpu_millicores: 4000,
            },
            queue_depth: 0,
            latency_ms: Some(latency),
            reputation,
            price: Price::default(),
        }
    }

    #[test]
    fn filters_name_why_and_scores_order_the_rest() {
        let spec = JobSpec::new(RuntimeKind::Wasm, "sha256:00");
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut docker_only = view(Some(c), 4, 1.0, 0.5);
        docker_only.runtimes = vec!["docker".into()];
        let (ranked, reasons) = Chain::default().rank(
            &spec,
            vec![
                view(Some(a), 1, 5.0, 0.5),
                view(Some(b), 4, 1.0, 0.9),
                docker_only,
            ],
        );
        assert_eq!(
            ranked.iter().map(|c| c.node.peer).collect::<Vec<_>>(),
            vec![Some(b), Some(a)]
        );
        assert_eq!(
            reasons,
            vec![(c.to_string(), "does not offer the wasm runtime".to_string())]
        );
    }

    #[test]
    fn limits_over_a_ceiling_or_the_capacity_filter_a_node_out() {
        let mut spec = JobSpec::new(RuntimeKind::Wasm, "sha256:00");
        spec.limits.memory_mb = 5000;
        let (_, reasons) = Chain::default().rank(&spec, vec![view(None, 4, 0.0, 1.0)]);
        assert_eq!(reasons[0].1, "memory_mb 5000 is over its ceiling 4096");
        let mut small = view(None, 4, 0.0, 1.0);
        small.capacity.memory_mb = 1024;
        spec.limits.memory_mb = 2048;
        let (_, reasons) = Chain::default().rank(&spec, vec![small]);
        assert_eq!(
            reasons[0],
            (
                "this node".to_string(),
                "has 1024 MiB in all, the job asks 2048".to_string()
            )
        );
    }

    #[test]
    fn the_cheaper_node_wins_when_all_else_is_equal() {
        let spec = JobSpec::new(RuntimeKind::Wasm, "sha256:00");
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut dear = view(Some(a), 4, 1.0, 0.5);
        dear.price.per_job = 1000;
        let mut cheap = view(Some(b), 4, 1.0, 0.5);
        cheap.price.per_job = 10;
        let (ranked, _) = Chain::default().rank(&spec, vec![dear, cheap]);
        assert_eq!(ranked[0].node.peer, Some(b));
        assert_eq!(
            price_ceiling(
                &spec,
                &Price {
                    per_job: 1,
                    per_cpu_second: 2,
                    per_gib_second: 3
                }
            ),
            1 + 2 * 30 + 3 * 30
        );
    }
}
