//! Propagation latency: one probe connection joins a probe topic on one
//! node, and the time until every other node's `count` shows it is one
//! observation per observing node; then it leaves, and the time until the
//! others show 0 is another. The source node rotates, and each join and
//! each leave comes after a random pause of up to one flush interval, so the
//! changes land at random points of the flush cycle (as real joins do;
//! without the pause every change would follow a flush and wait a whole
//! interval). Observers are polled
//! every [`POLL`], so each figure is late by at most that much. Each
//! observation is sent as it is made, so the progress rows can show the
//! lag of the last second.

use headcount::Node;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// The probe topic (not one the simulated users use).
pub(crate) const TOPIC: &[u8] = b"probe:latency";

/// The probe's connection id (above every user's).
const CONN: u64 = u64::MAX;

/// How often observers are polled.
pub(crate) const POLL: Duration = Duration::from_micros(250);

/// What the probe saw besides the observations it sent.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    /// Observations that did not arrive within the timeout.
    pub(crate) timeouts: u64,
    /// Calls on a node that failed.
    pub(crate) errors: Vec<String>,
}

/// How one round of observation ended.
enum Observed {
    All,
    TimedOut,
    Stopped,
}

/// Probes until `stop`, then leaves the probe topic at 0 on every node's
/// side (so the truth for it is 0). With fewer than two nodes there is
/// nothing to observe.
/// Each observation (one per probe change and observing node that
/// arrived) goes to `samples`.
pub(crate) fn run(
    nodes: &[Node],
    stop: &AtomicBool,
    timeout: Duration,
    pause: Duration,
    seed: u64,
    samples: &Sender<Duration>,
) -> Latencies {
    let mut out = Latencies::default();
    if nodes.len() < 2 {
        return out;
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0050_524f_4245);
    let max_pause = pause.as_micros().max(1) as u64;
    for round in 0.. {
        let pause = Duration::from_micros(rng.random_range(0..max_pause));
        if sleep_unless(stop, pause) {
            break;
        }
        let s = round % nodes.len();
        let (source, observers): (&Node, Vec<&Node>) =
            (&nodes[s], nodes.iter().enumerate().filter(|&(i, _)| i != s).map(|(_, n)| n).collect());
        if let Err(e) = source.track(TOPIC, CONN) {
            out.errors.push(format!("probe track on {}: {e}", source.name()));
            break;
        }
        let joined = observe(&observers, 1, Instant::now(), timeout, stop, Some(samples), &mut out);
        // Observers saw the join just after a flush: leave at a random
        // point of the cycle too, not right after it.
        if let Observed::All = joined {
            let _ = sleep_unless(stop, Duration::from_micros(rng.random_range(0..max_pause)));
        }
        let left_at = Instant::now();
        if let Err(e) = source.untrack(TOPIC, CONN) {
            out.errors.push(format!("probe untrack on {}: {e}", source.name()));
            break;
        }
        match joined {
            Observed::All => {}
            // An observer that never saw the join would see the leave at
            // once: resynchronise on it without recording.
            Observed::TimedOut => {
                observe(&observers, 0, left_at, timeout, stop, None, &mut Latencies::default());
                continue;
            }
            Observed::Stopped => break,
        }
        if let Observed::Stopped = observe(&observers, 0, left_at, timeout, stop, Some(samples), &mut out) {
            break;
        }
    }
    out
}

/// Sleeps `d` in short steps; true if `stop` was set meanwhile.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(5)));
    }
}

/// Polls `observers` until each shows `want`, sending to `samples` how
/// long each took. An observation cut short by `stop` sends nothing.
fn observe(
    observers: &[&Node],
    want: u64,
    start: Instant,
    timeout: Duration,
    stop: &AtomicBool,
    samples: Option<&Sender<Duration>>,
    out: &mut Latencies,
) -> Observed {
    let send = |seen: Vec<Duration>| {
        for d in seen {
            // The receiver outlives the probe; if not, nobody is listening.
            let _ = samples.map(|s| s.send(d));
        }
    };
    let mut pending: Vec<&Node> = observers.to_vec();
    let mut seen = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Observed::Stopped;
        }
        let elapsed = start.elapsed();
        pending.retain(|node| match node.count(TOPIC) {
            Ok(n) if n == want => {
                seen.push(elapsed);
                false
            }
            Ok(_) => true,
            Err(e) => {
                out.errors.push(format!("count on {}: {e}", node.name()));
                false
            }
        });
        if !pending.is_empty() && elapsed >= timeout {
            send(seen);
            out.timeouts += pending.len() as u64;
            return Observed::TimedOut;
        }
        std::thread::sleep(POLL);
    }
    send(seen);
    Observed::All
}

#[cfg(test)]
mod tests {
    use super::*;
    use headcount::Config;
    use std::sync::mpsc;

    #[test]
    fn local_only_nodes_never_see_each_other() {
        // Two unconnected nodes: every observation times out, and the probe
        // topic is left at 0.
        let nodes: Vec<Node> = (0..2).map(|_| Node::start(&Config::new()).unwrap()).collect();
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        let l = std::thread::scope(|s| {
            let h = s.spawn(|| run(&nodes, &stop, Duration::from_millis(30), Duration::from_millis(1), 1, &tx));
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
            h.join().unwrap()
        });
        assert_eq!(rx.try_iter().count(), 0);
        assert!(l.timeouts >= 2, "{}", l.timeouts);
        assert!(l.errors.is_empty());
        for n in &nodes {
            assert_eq!(n.count(TOPIC).unwrap(), 0);
        }
    }

    #[test]
    fn one_node_is_not_probed() {
        let nodes = vec![Node::start(&Config::new()).unwrap()];
        let (tx, rx) = mpsc::channel();
        let l = run(&nodes, &AtomicBool::new(false), Duration::from_secs(1), Duration::from_millis(1), 1, &tx);
        assert!(rx.try_iter().next().is_none() && l.timeouts == 0);
    }
}
