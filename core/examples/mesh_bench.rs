//! Full-mesh benchmark: what a cluster of N nodes costs each node, the
//! figures of docs/SCALING.md.
//!
//! ```text
//! cargo run --release -p headcount --example mesh_bench             # N = 4 8 16 32
//! cargo run --release -p headcount --example mesh_bench -- 4 8      # chosen sizes
//! cargo run --release -p headcount --example mesh_bench -- 32 handshake_timeout_ms=3000
//! ```
//!
//! A `key=value` argument sets that config key on every node.
//!
//! For each N, N nodes run in this process on 127.0.0.1 with the default
//! configuration (flush_interval_ms 100, flush_mode adaptive, one seed: the
//! first node; gossip completes the mesh). Measured, in this order:
//!
//! - **formed**: time from the first start until every node has N-1 peers up;
//! - **threads, fds per node**: this process's threads and open descriptors,
//!   before and after, divided by N;
//! - **idle bytes/s per node**: bytes sent by all nodes over 2 s without
//!   changes (heartbeats), divided by N;
//! - **churn**: 20,000 calls/s for 3 s, paced in 10 ms steps, spread over the
//!   nodes round robin, each call a track or untrack that changes a count,
//!   over 10,000 topics. Reported per change: bytes sent by all nodes
//!   divided by N (so per node), and CPU of the nodes' threads (the process
//!   minus the load generator's thread) divided by N; and the time from the
//!   last call until every node counts every topic as the sum of local counts;
//! - **join**: every node tracks 10,000 topics of its own, then a new node
//!   seeded with the first one joins: time until it counts all N x 10,000
//!   topics (its total equals the cluster's), the bytes it received, and
//!   how many times its links reconnected (goal: 0).
//!
//! The machine is shared: CPU and time figures vary from run to run; bytes
//! and counts of threads and descriptors do not.

use std::time::{Duration, Instant};

use headcount::Node;
#[path = "../tests/support/mod.rs"]
mod support;
use support::{addr, peers_in_state, procfs, stats, wait_for, Rng};

const CHURN_TOPICS: usize = 10_000;
const CHURN_CALLS_PER_SEC: usize = 20_000;
const CHURN_SECS: usize = 3;
const JOIN_TOPICS_PER_NODE: u64 = 10_000;

/// Sum of one per-peer stat over every peer of every node.
fn peer_sum(nodes: &[Node], key: &str) -> u64 {
    nodes
        .iter()
        .flat_map(|n| stats(n)["peers"].as_array().cloned().unwrap_or_default())
        .map(|p| p[key].as_u64().unwrap_or(0))
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    n: usize,
    formed: Duration,
    threads: f64,
    fds: f64,
    idle_bps: f64,
    churn_changes: u64,
    bytes_per_change: f64,
    cpu_us_per_change: f64,
    converged: Option<Duration>,
    join: Option<Duration>,
    join_bytes: u64,
    join_reconnects: u64,
}

fn mesh(n: usize, kv: &[(&str, &str)]) -> (Vec<Node>, Duration) {
    let start = Instant::now();
    let first = support::node("mesh-0", &[], kv);
    let seed = [addr(&first)];
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(support::node(&format!("mesh-{i}"), &seed, kv));
    }
    wait_for(Duration::from_secs(120), || nodes.iter().all(|x| peers_in_state(x, "up") == n - 1))
        .unwrap_or_else(|| panic!("{n} nodes: the mesh did not form in 120 s"));
    (nodes, start.elapsed())
}

/// Paced churn; returns (changes, bytes sent by all nodes, CPU of the
/// nodes' threads, convergence time after the last call).
fn churn(nodes: &[Node]) -> (u64, u64, Duration, Option<Duration>) {
    let topics = support::topics("churn:", CHURN_TOPICS);
    let mut rng = Rng(7);
    let mut joined: Vec<(usize, u64, usize)> = Vec::new(); // (topic, conn, node)
    let bytes0 = peer_sum(nodes, "bytes_out");
    let (cpu0, me0) = (support::cpu::process(), support::cpu::thread());
    let per_step = CHURN_CALLS_PER_SEC / 100;
    let start = Instant::now();
    let mut changes = 0u64;
    for step in 0..(CHURN_SECS * 100) {
        for k in 0..per_step {
            // Joins while few are joined, then alternately a join and a leave.
            if joined.len() < 1_000 || k % 2 == 0 {
                let (t, c, at) =
                    ((rng.next() % CHURN_TOPICS as u64) as usize, rng.next(), changes as usize % nodes.len());
                if nodes[at].track(&topics[t], c).unwrap() {
                    joined.push((t, c, at));
                }
            } else {
                let i = (rng.next() % joined.len() as u64) as usize;
                let (t, c, at) = joined.swap_remove(i);
                nodes[at].untrack(&topics[t], c).unwrap();
            }
            changes += 1;
        }
        if let Some(d) = Duration::from_millis(10 * (step as u64 + 1)).checked_sub(start.elapsed()) {
            std::thread::sleep(d);
        }
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    let truth = support::truth(&refs, &topics);
    let converged = wait_for(Duration::from_secs(30), || support::all_agree(&refs, &topics, &truth));
    let cpu = (support::cpu::process() - cpu0).saturating_sub(support::cpu::thread() - me0);
    (changes, peer_sum(nodes, "bytes_out") - bytes0, cpu, converged)
}

/// A node joining `nodes` once each holds its own 10,000 topics; returns
/// (sync time, bytes received, reconnects).
fn join(nodes: &[Node], kv: &[(&str, &str)]) -> (Option<Duration>, u64, u64) {
    for (i, x) in nodes.iter().enumerate() {
        for k in 0..JOIN_TOPICS_PER_NODE {
            x.track(format!("join:{i}:{k}").as_bytes(), 1).unwrap();
        }
    }
    let want: u64 = nodes.iter().map(|x| stats(x)["total_local"].as_u64().unwrap()).sum();
    if wait_for(Duration::from_secs(60), || nodes.iter().all(|x| x.total().unwrap() == want)).is_none() {
        let connects = peer_sum(nodes, "connects");
        eprintln!(
            "{} nodes: not in sync 60 s after each tracked {JOIN_TOPICS_PER_NODE} topics ({connects} link connects \
             in all, {} links); the join is not measured",
            nodes.len(),
            nodes.len() * (nodes.len() - 1)
        );
        return (None, 0, 0);
    }
    let start = Instant::now();
    let joiner = support::node("mesh-joiner", &[addr(&nodes[0])], kv);
    let synced = wait_for(Duration::from_secs(60), || {
        peers_in_state(&joiner, "up") == nodes.len() && joiner.total().unwrap() == want
    })
    .map(|_| start.elapsed());
    let peers = stats(&joiner)["peers"].as_array().cloned().unwrap_or_default();
    let bytes = peers.iter().map(|p| p["bytes_in"].as_u64().unwrap_or(0)).sum();
    let reconnects = peers.iter().map(|p| p["connects"].as_u64().unwrap_or(1).saturating_sub(1)).sum();
    (synced, bytes, reconnects)
}

fn run(n: usize, kv: &[(&str, &str)]) -> Row {
    let (threads0, fds0) = (procfs::threads(), procfs::open_fds());
    let (nodes, formed) = mesh(n, kv);
    std::thread::sleep(Duration::from_millis(500));
    let threads = (procfs::threads() - threads0) as f64 / n as f64;
    let fds = (procfs::open_fds() - fds0) as f64 / n as f64;

    let b0 = peer_sum(&nodes, "bytes_out");
    std::thread::sleep(Duration::from_secs(2));
    let idle_bps = (peer_sum(&nodes, "bytes_out") - b0) as f64 / 2.0 / n as f64;

    let (changes, bytes, cpu, converged) = churn(&nodes);
    let (join, join_bytes, join_reconnects) = join(&nodes, kv);
    Row {
        n,
        formed,
        threads,
        fds,
        idle_bps,
        churn_changes: changes,
        bytes_per_change: bytes as f64 / changes as f64 / n as f64,
        cpu_us_per_change: cpu.as_secs_f64() * 1e6 / changes as f64 / n as f64,
        converged,
        join,
        join_bytes,
        join_reconnects,
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("did not".into(), |d| format!("{:.0} ms", ms(d)))
}

/// Least-squares line `y = a + b x` through the points.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

/// Cluster-wide change rate the projection assumes.
const MODEL_CHANGES_PER_SEC: f64 = 100_000.0;

/// Per-node costs at 100 and 1,000 nodes, from lines fitted to the
/// measured rows against the number of links per node (N - 1): threads,
/// descriptors, heartbeat bytes, and the cluster-wide bytes and CPU one
/// change costs (the change is sent over N - 1 links and applied by N - 1
/// peers); a join receives every node's topics at the largest run's rate.
fn model(rows: &[Row]) {
    let line = |f: &dyn Fn(&Row) -> f64| fit(&rows.iter().map(|r| ((r.n - 1) as f64, f(r))).collect::<Vec<_>>());
    let threads = line(&|r| r.threads);
    let fds = line(&|r| r.fds);
    let idle = line(&|r| r.idle_bps);
    let bytes = line(&|r| r.bytes_per_change * r.n as f64);
    let cpu = line(&|r| r.cpu_us_per_change * r.n as f64);
    let joined = rows.iter().filter(|r| r.join.is_some()).max_by_key(|r| r.n);
    println!(
        "\nModel (fitted on N - 1 links per node: threads {:.1} + {:.2}/link, fds {:.1} + {:.2}/link, idle {:.0} B/s \
         per link; per change, cluster-wide: {:.1} B + {:.1} B/link, {:.2} µs + {:.2} µs/link), at \
         {MODEL_CHANGES_PER_SEC:.0} changes/s cluster-wide and {JOIN_TOPICS_PER_NODE} topics per node:\n",
        threads.0, threads.1, fds.0, fds.1, idle.1, bytes.0, bytes.1, cpu.0, cpu.1
    );
    println!("| nodes | threads / node | fds / node | idle bytes/s / node | bytes out/s / node | CPU / node (cores) | join: topics | join: bytes in | join: time |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in [100.0f64, 1000.0] {
        let at = |(a, b): (f64, f64)| a + b * (n - 1.0);
        let per_node = MODEL_CHANGES_PER_SEC / n;
        let topics = n * JOIN_TOPICS_PER_NODE as f64;
        let (join_bytes, join_time) = joined.map_or(("-".into(), "-".into()), |r| {
            let measured = (r.n as u64 * JOIN_TOPICS_PER_NODE) as f64;
            let secs = r.join.unwrap().as_secs_f64() * topics / measured;
            (format!("{:.0} MB", r.join_bytes as f64 * topics / measured / 1e6), format!("{secs:.1} s"))
        });
        println!(
            "| {n:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {topics:.0} | {join_bytes} | {join_time} |",
            at(threads),
            at(fds),
            idle.0 + idle.1 * (n - 1.0),
            at(bytes) * per_node,
            at(cpu) * 1e-6 * per_node,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kv: Vec<(&str, &str)> = args.iter().filter_map(|a| a.split_once('=')).collect();
    let sizes: Vec<usize> =
        args.iter().filter(|a| !a.contains('=')).map(|a| a.parse().expect("sizes are node counts")).collect();
    let sizes = if sizes.is_empty() { vec![4, 8, 16, 32] } else { sizes };
    println!(
        "| nodes | mesh formed | threads / node | fds / node | idle bytes/s / node | churn changes | \
         bytes sent / node / change | node CPU / node / change | converged after | join: synced | \
         join: bytes in | join: reconnects |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for n in sizes {
        let r = run(n, &kv);
        println!(
            "| {} | {:.0} ms | {:.1} | {:.1} | {:.0} | {} | {:.1} | {:.2} µs | {} | {} ({} topics) | {} | {} |",
            r.n,
            ms(r.formed),
            r.threads,
            r.fds,
            r.idle_bps,
            r.churn_changes,
            r.bytes_per_change,
            r.cpu_us_per_change,
            opt_ms(r.converged),
            opt_ms(r.join),
            r.n as u64 * JOIN_TOPICS_PER_NODE,
            r.join_bytes,
            r.join_reconnects
        );
        rows.push(r);
    }
    if rows.len() >= 2 {
        model(&rows);
    }
}
