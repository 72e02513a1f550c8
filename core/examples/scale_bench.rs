//! Scale benchmark: one node at millions of topics and tracked pairs, the
//! local figures of BENCHMARKS.md's issue-13 section.
//!
//! ```text
//! cargo run --release -p headcount --example scale_bench            # both parts
//! cargo run --release -p headcount --example scale_bench -- pairs   # one part
//! ```
//!
//! - `pairs`: 10M tracked (connection, topic) pairs on one node (1M
//!   connections in 10 topics each, over 1M topics): the process's RSS, and
//!   the rate of the tracks, per million, from the first to the last.
//! - `flush`: a pair of nodes, A holding 1M non-zero topics, in sync with B;
//!   then 1% of A's topics change at once, and the flush that ships them is
//!   timed by A's own flush timings (`flush_us_avg` x `flushes`, before and
//!   after: the time A's flusher spent, wall clock on its thread). Fixed
//!   flush schedule, one flush a second, so the change lands in one flush.

use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::procfs::rss_mib;
use support::{addr, stats, wait_for};

fn pairs() {
    const CONNS: u64 = 1_000_000;
    const PER_CONN: u64 = 10;
    const TOPICS: u64 = 1_000_000;
    let node = headcount::Node::start(&headcount::Config::new()).unwrap();
    let base = rss_mib();
    let names: Vec<Vec<u8>> = (0..TOPICS).map(|t| format!("room:{t}").into_bytes()).collect();
    let start = Instant::now();
    let mut last = start;
    let mut slowest = f64::INFINITY;
    for c in 0..CONNS {
        for k in 0..PER_CONN {
            node.track(&names[((c * 7 + k * 100_003) % TOPICS) as usize], c).unwrap();
        }
        if (c + 1) % (CONNS / 10) == 0 {
            let rate = (CONNS / 10 * PER_CONN) as f64 / last.elapsed().as_secs_f64();
            slowest = slowest.min(rate);
            last = Instant::now();
        }
    }
    let took = start.elapsed();
    let n = stats(&node)["tracked_pairs"].as_u64().unwrap();
    println!(
        "pairs: {n} tracked pairs ({CONNS} connections x {PER_CONN} topics over {TOPICS} topics) in {:.2} s: \
         {:.2}M tracks/s overall, slowest million {:.2}M/s; RSS {:.0} MiB ({:.0} MiB over the idle node's {base:.0}; \
         {:.1} B per pair, topic names included)   (goal: <= 640 MB, >= 1M tracks/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64() / 1e6,
        slowest / 1e6,
        rss_mib(),
        rss_mib() - base,
        (rss_mib() - base) * 1048576.0 / n as f64
    );
}

/// Microseconds A's flusher has spent in flushes so far.
fn flush_us_total(n: &headcount::Node) -> u64 {
    let s = stats(n);
    s["flush_us_avg"].as_u64().unwrap() * s["flushes"].as_u64().unwrap()
}

fn flush() {
    const TOPICS: u64 = 1_000_000;
    let kv = [("flush_mode", "fixed"), ("flush_interval_ms", "1000")];
    let a = support::node("scale-a", &[], &kv);
    let names: Vec<Vec<u8>> = (0..TOPICS).map(|t| format!("room:{t}").into_bytes()).collect();
    for (i, t) in names.iter().enumerate() {
        a.track(t, i as u64).unwrap();
    }
    let b = support::node("scale-b", &[addr(&a)], &kv);
    wait_for(Duration::from_secs(120), || b.total().unwrap() == TOPICS).expect("B never synced");
    for round in 0..3 {
        // Just after a flush, so that the changes all land in the next one.
        let flushes = stats(&a)["flushes"].as_u64().unwrap();
        wait_for(Duration::from_secs(5), || stats(&a)["flushes"].as_u64().unwrap() > flushes).unwrap();
        let before = flush_us_total(&a);
        let flushes = stats(&a)["flushes"].as_u64().unwrap();
        let changed = TOPICS / 100;
        for i in 0..changed {
            let t = (i * 97 + round * 13) % TOPICS;
            a.track(&names[t as usize], 10_000_000 + i).unwrap();
        }
        // The flush that ships them has ended once the one after it began.
        wait_for(Duration::from_secs(5), || stats(&a)["flushes"].as_u64().unwrap() > flushes + 1).unwrap();
        let spent = flush_us_total(&a) - before;
        let n = stats(&a)["flushes"].as_u64().unwrap() - flushes;
        let want = TOPICS + changed * (round + 1);
        let seen = wait_for(Duration::from_secs(10), || b.total().unwrap() == want).is_some();
        println!(
            "flush: 1M topics, {changed} changed (1%), round {round}: {spent} us in {n} flushes \
             (flusher wall time; goal <= 1 ms of flusher CPU); B {} ({} reconnects so far)",
            if seen { "in sync" } else { "NOT in sync after 10 s" },
            stats(&b)["peers"][0]["connects"].as_u64().unwrap_or(0).saturating_sub(1)
        );
    }
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if run("flush") {
        flush();
    }
    if run("pairs") {
        pairs();
    }
}
