//! Propagation latency: one probe connection joins a probe topic on one
//! node, and the time until every other node's `count` shows it is one
//! observation per observing node; then it leaves, and the time until the
//! others show 0 is another. The source node rotates. Observers are polled
//! every [`POLL`], so each figure is late by at most that much.

use headcount::Node;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The probe topic (not one the simulated users use).
pub(crate) const TOPIC: &[u8] = b"probe:latency";

/// The probe's connection id (above every user's).
const CONN: u64 = u64::MAX;

/// How often observers are polled.
pub(crate) const POLL: Duration = Duration::from_micros(250);

/// What the probe saw.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    /// One per (probe change, observing node) that arrived, unsorted.
    pub(crate) samples: Vec<Duration>,
    /// Observations that did not arrive within the timeout.
    pub(crate) timeouts: u64,
    /// Calls on a node that failed (first message kept).
    pub(crate) errors: Vec<String>,
}

/// Probes until `stop`; with fewer than two nodes there is nothing to observe.
pub(crate) fn run(nodes: &[Node], stop: &AtomicBool, timeout: Duration, seed: u64) -> Latencies {
    let mut out = Latencies::default();
    if nodes.len() < 2 {
        return out;
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0050_524f_4245);
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let source = &nodes[round % nodes.len()];
        let observers: Vec<&Node> =
            nodes.iter().enumerate().filter(|&(i, _)| i != round % nodes.len()).map(|(_, n)| n).collect();
        round += 1;
        // After a join that some observer never saw, its leave would look
        // instant there: observe it (to resynchronise) without recording.
        let mut record = true;
        for (want, change) in [(1, true), (0, false)] {
            let changed = if change { source.track(TOPIC, CONN) } else { source.untrack(TOPIC, CONN) };
            let start = Instant::now();
            if let Err(e) = changed {
                out.errors.push(format!("probe on {}: {e}", source.name()));
                return out;
            }
            if record {
                let before = out.timeouts;
                observe(&observers, want, start, timeout, &mut out);
                record = out.timeouts == before;
            } else {
                observe(&observers, want, start, timeout, &mut Latencies::default());
            }
        }
        // Start the next probe at a random point of the flush cycle.
        std::thread::sleep(Duration::from_micros(rng.random_range(1_000..20_000)));
    }
    out
}

/// Polls `observers` until each shows `want`, recording when each first did.
fn observe(observers: &[&Node], want: u64, start: Instant, timeout: Duration, out: &mut Latencies) {
    let mut pending: Vec<&Node> = observers.to_vec();
    while !pending.is_empty() {
        let now = Instant::now();
        let elapsed = now - start;
        pending.retain(|node| match node.count(TOPIC) {
            Ok(n) if n == want => {
                out.samples.push(elapsed);
                false
            }
            Ok(_) => true,
            Err(e) => {
                out.errors.push(format!("count on {}: {e}", node.name()));
                false
            }
        });
        if elapsed >= timeout {
            out.timeouts += pending.len() as u64;
            return;
        }
        std::thread::sleep(POLL);
    }
}
