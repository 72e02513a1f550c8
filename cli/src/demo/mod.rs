//! `headcount demo`: a cluster of in-process nodes on loopback, simulated
//! users churning through Zipf-popular topics, a live progress line, then a
//! check that every node's count of every topic equals the truth.
//!
//! Phases:
//! 1. start `--nodes` nodes on 127.0.0.1 (port 0) with a random secret, all
//!    seeded with the first, and wait until each knows all the others;
//! 2. warm-up: every user joins one topic;
//! 3. load: `--workers` threads churn at `--churn` joins+leaves per second
//!    for `--seconds`, while a probe measures propagation latency
//!    ([`probe`]) and the progress line is redrawn 4 times a second;
//! 4. stop the load and poll until every node's `count` of every topic (and
//!    its `total`) equals the truth kept by the workers, or a timeout.
//!
//! The exit status is 0 only when everything converged, each node's local
//! counts were exact, and the library never answered unexpectedly.

mod load;
mod probe;
mod zipf;

use crate::fmt::{bytes, duration, percentile, thousands};
use crate::stats;
use clap::Args;
use headcount::{Config, Node};
use load::{LoadStats, Worker};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use zipf::Zipf;

/// Start a cluster on loopback, churn simulated users through it, check every count.
#[derive(Debug, Args)]
#[command(after_help = "The nodes run in this process, on 127.0.0.1 with a random secret; nothing
leaves the machine. The exit status is 0 when, after the load stopped, every
node's count of every topic matched the truth, 1 otherwise.

Examples:
  headcount demo
  headcount demo --nodes 5 --users 200000 --churn 50000 --seconds 10
  headcount demo --seconds 2 --users 2000 --topics 50 --churn 2000
  headcount demo --nodes 1            # one local-only node, no network")]
pub(crate) struct DemoArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    nodes: u16,
    /// Simulated users (connections); each is homed on one node.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    users: u64,
    /// Topics (rooms); popularity follows Zipf's law.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    topics: u64,
    /// Churn: joins + leaves per second, across all nodes.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    churn: u64,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    seconds: u64,
    /// Zipf exponent s: topic k is chosen in proportion to 1/k^s (0 = uniform).
    #[arg(long, default_value_t = 1.0, value_parser = zipf_exponent)]
    zipf: f64,
    /// Worker threads generating the load.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: u16,
    /// The nodes' flush interval: how often changed counts are sent.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    flush_interval_ms: u64,
    /// Seed for the simulated users' choices [default: random].
    #[arg(long)]
    seed: Option<u64>,
}

fn zipf_exponent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number in 0..=10")),
    }
}

/// Topics whose spread between nodes makes up the progress line's "lag"
/// (the most popular ones, where churn is heaviest).
const LAG_TOPICS: usize = 2_000;

/// Progress refresh period.
const TICK: Duration = Duration::from_millis(250);

/// How long the demo waits for the cluster to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a probe observation may take before it counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    match Demo::start(args) {
        Ok(demo) => {
            let ok = demo.run();
            for node in &demo.nodes {
                node.close();
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("headcount demo: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug)]
struct Demo<'a> {
    args: &'a DemoArgs,
    nodes: Vec<Node>,
    names: Vec<Vec<u8>>,
    zipf: Zipf,
    seed: u64,
    flush: Duration,
    formed_in: Duration,
}

impl<'a> Demo<'a> {
    fn start(args: &'a DemoArgs) -> Result<Self, String> {
        let mut os = StdRng::from_os_rng();
        let seed = args.seed.unwrap_or_else(|| os.random());
        let secret: String = (0..32).map(|_| format!("{:02x}", os.random::<u8>())).collect();
        let n = usize::from(args.nodes);
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        let mut seed_addr: Option<String> = None;
        let started = Instant::now();
        for i in 0..n {
            let name = format!("node-{}", i + 1);
            let mut cfg = Config::new();
            let mut set = |k: &str, v: &str| cfg.set(k, v).map_err(|e| format!("{name}: {e}"));
            set("node_name", &name)?;
            set("flush_interval_ms", &args.flush_interval_ms.to_string())?;
            if n > 1 {
                set("cluster", "headcount-demo")?;
                set("secret", &secret)?;
                set("listen", "127.0.0.1:0")?;
                if let Some(addr) = &seed_addr {
                    set("seeds", addr)?;
                }
            }
            let node = Node::start(&cfg).map_err(|e| {
                format!("cannot start {name}: {e}{}", if n > 1 { " (--nodes 1 runs one local-only node)" } else { "" })
            })?;
            if n > 1 && seed_addr.is_none() {
                let addr = node.local_addr().ok_or_else(|| format!("{name} started without a listen address"))?;
                seed_addr = Some(addr.to_string());
            }
            nodes.push(node);
        }
        let formed_in = wait_formed(&nodes, started)?;
        let names = (1..=args.topics).map(|k| format!("room:{k}").into_bytes()).collect();
        let flush = Duration::from_millis(args.flush_interval_ms);
        Ok(Self { args, nodes, names, zipf: Zipf::new(args.topics as usize, args.zipf), seed, flush, formed_in })
    }

    /// Runs the warm-up, the load and the check; prints the report. True
    /// when everything converged and checked out.
    fn run(&self) -> bool {
        let args = self.args;
        self.print_header();
        let stats = LoadStats::default();
        let workers = usize::from(args.workers);
        let users = args.users as usize;
        let mut pool: Vec<Worker<'_>> = (0..workers)
            .map(|w| Worker::new(w, workers, users, &self.nodes, &self.names, &self.zipf, self.seed))
            .collect();

        // Warm-up.
        let t = Instant::now();
        let warm: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = pool.iter_mut().map(|w| s.spawn(|| w.warm_up(&stats))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        println!("warm-up     {} users joined a first topic in {}", thousands(warm), duration(t.elapsed()));
        println!();

        // Load.
        let wire_before = self.wire();
        // Each worker's share of the rate follows its share of the users.
        let per_user = args.churn as f64 / users as f64;
        let load_for = Duration::from_secs(args.seconds);
        let mut progress = Progress::new(&self.nodes);
        let start = Instant::now();
        let (stopped, latencies) = std::thread::scope(|s| {
            let churners: Vec<_> = pool
                .iter_mut()
                .map(|w| {
                    let stats = &stats;
                    let rate = per_user * w.users.len() as f64;
                    s.spawn(move || w.churn(rate, stats))
                })
                .collect();
            let probe = s.spawn(|| probe::run(&self.nodes, &stats.stop, PROBE_TIMEOUT, self.flush, self.seed));
            loop {
                let elapsed = start.elapsed();
                let last = elapsed >= load_for;
                progress.tick(elapsed, last, &stats, &self.nodes, &self.names);
                if last {
                    break;
                }
                std::thread::sleep(TICK.min(load_for - elapsed));
            }
            stats.stop.store(true, Ordering::Relaxed);
            for h in churners {
                if h.join().is_err() {
                    stats.anomalies.record("a load worker panicked".into());
                }
            }
            // The load has stopped; the probe leaves its topic and ends.
            let stopped = Instant::now();
            let latencies = probe.join().unwrap_or_else(|_| probe::Latencies {
                errors: vec!["the probe thread panicked".into()],
                ..probe::Latencies::default()
            });
            (stopped, latencies)
        });
        let load_time = stopped - start;
        progress.finish();
        let ops = stats.ops.load(Ordering::Relaxed);

        // The truth, from the workers' users.
        let n = self.nodes.len();
        let mut truth = vec![0u64; self.names.len()];
        let mut local_truth = vec![vec![0u64; self.names.len()]; n];
        for w in &pool {
            for (j, user) in w.users.iter().enumerate() {
                for &t in user.topics() {
                    truth[t as usize] += 1;
                    local_truth[w.home(j)][t as usize] += 1;
                }
            }
        }
        let pairs: u64 = truth.iter().sum();
        let local_wrong = self.local_mismatches(&local_truth);

        println!(
            "stopped     the load after {}; checking {} node{} × {} topics against the truth...",
            duration(load_time),
            n,
            if n == 1 { "" } else { "s" },
            thousands(self.names.len() as u64 + 1)
        );
        let timeout = Duration::from_secs(5) + self.flush * 10;
        let (converged, wrong) = loop {
            let wrong = self.mismatches(&truth, pairs);
            if wrong.is_empty() {
                break (Some(stopped.elapsed()), wrong);
            }
            if stopped.elapsed() >= timeout {
                break (None, wrong);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let wire_after = self.wire();

        // The report.
        match converged {
            Some(t) => println!(
                "converged   every node agrees with the truth ({} pairs) {} after the load stopped",
                thousands(pairs),
                duration(t)
            ),
            None => {
                println!("NOT converged after {}: {} counts differ, e.g.", duration(timeout), wrong.len());
                for m in wrong.iter().take(5) {
                    println!("              {m}");
                }
            }
        }
        println!();
        let row = |label: &str, value: String| println!("  {label:<13} {value}");
        row(
            "operations",
            format!("{} joins+leaves in {} (+{} warm-up joins)", thousands(ops), duration(load_time), thousands(warm)),
        );
        let avg = if load_time.is_zero() { 0.0 } else { ops as f64 / load_time.as_secs_f64() };
        row("average rate", format!("{} ops/s (asked for {})", thousands(avg.round() as u64), thousands(args.churn)));
        row(
            "peak rate",
            match progress.peak {
                Some(p) => format!("{} ops/s (busiest 1 s window)", thousands(p.round() as u64)),
                None => "n/a (the load ran under 1 s)".into(),
            },
        );
        row("propagation", self.latency_line(&latencies));
        row("wire bytes", wire_line(wire_before, wire_after, n - 1));
        row(
            "converge",
            match converged {
                Some(t) => format!("{} after the load stopped (flush every {})", duration(t), duration(self.flush)),
                None => format!("did not converge within {}", duration(timeout)),
            },
        );
        row(
            "local counts",
            if local_wrong == 0 {
                "exact on every node".to_owned()
            } else {
                format!("{local_wrong} (node, topic) local counts differ from the truth")
            },
        );
        let anomalies = stats.anomalies.count();
        if anomalies > 0 {
            row(
                "anomalies",
                format!(
                    "{anomalies} unexpected answers from the library, first: {}",
                    stats.anomalies.first().unwrap_or_default()
                ),
            );
        }
        let ok = converged.is_some() && local_wrong == 0 && anomalies == 0 && latencies.errors.is_empty();
        for e in latencies.errors.iter().take(3) {
            row("probe error", e.clone());
        }
        println!();
        println!("  {:<13} {}", "result", if ok { "CONVERGED ✓" } else { "FAILED ✗" });
        ok
    }

    fn print_header(&self) {
        let a = self.args;
        println!(
            "headcount demo · {} node{} on loopback · {} users · {} topics · {} joins+leaves/s for {} s",
            a.nodes,
            if a.nodes == 1 { "" } else { "s" },
            thousands(a.users),
            thousands(a.topics),
            thousands(a.churn),
            a.seconds
        );
        println!();
        for (i, node) in self.nodes.iter().enumerate() {
            let addr = node.local_addr().map_or_else(|| "local-only".to_owned(), |a| a.to_string());
            let role = if i == 0 && self.nodes.len() > 1 { "  (seed)" } else { "" };
            println!("  {:<10} {addr}{role}", node.name());
        }
        println!();
        println!(
            "topics      Zipf s={}: room:1 gets {:.1}% of joins, room:{} {:.3}%",
            a.zipf,
            self.zipf.probability(0) * 100.0,
            self.names.len(),
            self.zipf.probability(self.names.len() - 1) * 100.0
        );
        let formed = if self.nodes.len() > 1 {
            format!("formed in {} · random 256-bit secret", duration(self.formed_in))
        } else {
            "one local-only node".to_owned()
        };
        println!(
            "cluster     {formed} · flush every {} · {} load workers · seed {}",
            duration(self.flush),
            a.workers,
            self.seed
        );
    }

    /// Summed wire counters of all nodes (`None` if a node's stats could
    /// not be read: it closed).
    fn wire(&self) -> Option<stats::Wire> {
        let mut sum = stats::Wire::default();
        for node in &self.nodes {
            sum = sum.add(stats::Wire::of(&node.stats().ok()?));
        }
        Some(sum)
    }

    fn latency_line(&self, l: &probe::Latencies) -> String {
        if self.nodes.len() < 2 {
            return "n/a (one node: nothing to propagate to)".into();
        }
        let mut s = l.samples.clone();
        s.sort_unstable();
        let (Some(p50), Some(p99), Some(max)) = (percentile(&s, 50.0), percentile(&s, 99.0), s.last()) else {
            return format!("n/a (no probe arrived; {} timed out)", l.timeouts);
        };
        let lost = if l.timeouts > 0 {
            format!(", {} lost after {}", l.timeouts, duration(PROBE_TIMEOUT))
        } else {
            String::new()
        };
        format!(
            "p50 {} · p99 {} · max {}  ({} observations, ±{}{lost})",
            duration(p50),
            duration(p99),
            duration(*max),
            thousands(s.len() as u64),
            duration(probe::POLL)
        )
    }

    /// Every (node, topic) whose cluster-wide count differs from the truth,
    /// plus each node whose total does.
    fn mismatches(&self, truth: &[u64], pairs: u64) -> Vec<String> {
        let mut wrong = Vec::new();
        for node in &self.nodes {
            let check = |what: &str, got: headcount::Result<u64>, want: u64, wrong: &mut Vec<String>| match got {
                Ok(n) if n == want => {}
                Ok(n) => wrong.push(format!("{}: {what} is {n}, truth {want}", node.name())),
                Err(e) => wrong.push(format!("{}: {what}: {e}", node.name())),
            };
            for (name, &want) in self.names.iter().zip(truth) {
                check(&String::from_utf8_lossy(name), node.count(name), want, &mut wrong);
            }
            check("probe:latency", node.count(probe::TOPIC), 0, &mut wrong);
            check("total", node.total(), pairs, &mut wrong);
        }
        wrong
    }

    /// (node, topic) pairs whose local count differs from the users homed there.
    fn local_mismatches(&self, local_truth: &[Vec<u64>]) -> usize {
        let mut wrong = 0;
        for (node, truth) in self.nodes.iter().zip(local_truth) {
            for (name, &want) in self.names.iter().zip(truth) {
                if node.count_local(name).ok() != Some(want) {
                    wrong += 1;
                }
            }
        }
        wrong
    }
}

/// Waits until every node knows every other one.
fn wait_formed(nodes: &[Node], started: Instant) -> Result<Duration, String> {
    let want = nodes.len() as u32 - 1;
    loop {
        let mut missing = Vec::new();
        for node in nodes {
            let known = node.count_info(probe::TOPIC).map_err(|e| format!("{}: {e}", node.name()))?.peers_known;
            if known < want {
                missing.push(format!("{} knows {known} of {want} peers", node.name()));
            }
        }
        if missing.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= FORM_TIMEOUT {
            return Err(format!("the cluster did not form within {}: {}", duration(FORM_TIMEOUT), missing.join("; ")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The wire cost of the load phase, from the nodes' own counters only.
fn wire_line(before: Option<stats::Wire>, after: Option<stats::Wire>, peers: usize) -> String {
    if peers == 0 {
        return "n/a (one node: nothing to send)".into();
    }
    let (Some(b), Some(a)) = (before, after) else {
        return "n/a (a node's stats could not be read)".into();
    };
    let d = a.since(b);
    let sent = d.bytes_out;
    if d.topics_out > 0 {
        let entries = d.topics_out;
        return format!(
            "{:.1} B per topic update sent ({} out for {} updates, all frames counted)",
            sent as f64 / entries as f64,
            bytes(sent),
            thousands(entries)
        );
    }
    match d.topics_drained {
        0 => format!("n/a (no changed topics counted; {} out)", bytes(sent)),
        changed => format!(
            "{:.1} B per changed topic, {:.1} B to each of {peers} peer{} ({} out for {} changed topics, all frames counted)",
            sent as f64 / changed as f64,
            sent as f64 / (changed * peers as u64) as f64,
            if peers == 1 { "" } else { "s" },
            bytes(sent),
            thousands(changed)
        ),
    }
}

/// The live progress line: redrawn in place on a terminal, one plain line a
/// second otherwise.
#[derive(Debug)]
struct Progress {
    tty: bool,
    window: RateWindow,
    peak: Option<f64>,
    last_line: Option<Duration>,
    per_node: bool,
}

impl Progress {
    fn new(nodes: &[Node]) -> Self {
        let per_node = nodes.len() <= 6;
        println!(
            "{}: each node's view of the cluster-wide total · lag: widest gap between two nodes' counts of one topic",
            if per_node { "node-N" } else { "total" }
        );
        println!();
        let mut header = format!("  {:>8} {:>10} {:>10}", "elapsed", "ops/s", "pairs");
        if per_node {
            for node in nodes {
                header.push_str(&format!(" {:>10}", node.name()));
            }
        } else {
            header.push_str(&format!(" {:>10} {:>10}", "total min", "total max"));
        }
        header.push_str(&format!(" {:>7}", "lag"));
        println!("{header}");
        Self {
            tty: std::io::stdout().is_terminal(),
            window: RateWindow::default(),
            peak: None,
            last_line: None,
            per_node,
        }
    }

    /// Samples the counters; draws a line when one is due (or `last`).
    fn tick(&mut self, elapsed: Duration, last: bool, stats: &LoadStats, nodes: &[Node], names: &[Vec<u8>]) {
        let (rate, window) = self.window.push(elapsed, stats.ops.load(Ordering::Relaxed));
        // Ticks start a few µs after the load and drift: a window within
        // 50 ms of a second counts as one.
        if window >= Duration::from_millis(950) {
            self.peak = Some(self.peak.map_or(rate, |p| p.max(rate)));
        }
        let rate = (window >= Duration::from_millis(500)).then_some(rate);
        let since_line = self.last_line.map(|t| elapsed - t);
        let due = self.tty || last || !matches!(since_line, Some(d) if d < Duration::from_millis(990));
        if !due {
            return;
        }
        self.last_line = Some(elapsed);
        let totals: Vec<Option<u64>> = nodes.iter().map(|n| n.total().ok()).collect();
        let line = row(elapsed, rate, stats.pairs.load(Ordering::Relaxed), &totals, lag(nodes, names), self.per_node);
        let mut out = std::io::stdout().lock();
        let _ = if self.tty { write!(out, "\r{line}\x1b[K") } else { writeln!(out, "{line}") };
        let _ = out.flush();
    }

    fn finish(&self) {
        if self.tty {
            println!();
        }
        println!();
    }
}

/// Operations per second over the last second of (elapsed, ops) samples.
#[derive(Debug, Default)]
struct RateWindow {
    samples: VecDeque<(Duration, u64)>,
}

impl RateWindow {
    /// Adds a sample; returns the rate since the newest sample at least 1 s
    /// old (or the oldest one), and how long that window is.
    fn push(&mut self, elapsed: Duration, ops: u64) -> (f64, Duration) {
        self.samples.push_back((elapsed, ops));
        while self.samples.len() > 1 && elapsed - self.samples[1].0 >= Duration::from_secs(1) {
            self.samples.pop_front();
        }
        let (t0, ops0) = self.samples[0];
        let window = elapsed - t0;
        let rate = if window.is_zero() { 0.0 } else { ops.saturating_sub(ops0) as f64 / window.as_secs_f64() };
        (rate, window)
    }
}

fn row(elapsed: Duration, rate: Option<f64>, pairs: i64, totals: &[Option<u64>], lag: u64, per_node: bool) -> String {
    let num = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), thousands);
    let mut line = format!(
        "  {:>8} {:>10} {:>10}",
        format!("{:.1} s", elapsed.as_secs_f64()),
        num(rate.map(|r| r.round() as u64)),
        num(u64::try_from(pairs).ok())
    );
    if per_node {
        for t in totals {
            line.push_str(&format!(" {:>10}", num(*t)));
        }
    } else {
        let known = totals.iter().flatten();
        line.push_str(&format!(" {:>10} {:>10}", num(known.clone().min().copied()), num(known.max().copied())));
    }
    line.push_str(&format!(" {:>7}", thousands(lag)));
    line
}

/// The largest difference between two nodes' counts of one topic, over
/// the [`LAG_TOPICS`] most popular topics.
fn lag(nodes: &[Node], names: &[Vec<u8>]) -> u64 {
    let mut worst = 0;
    for name in names.iter().take(LAG_TOPICS) {
        let counts = nodes.iter().filter_map(|n| n.count(name).ok());
        let (lo, hi) = counts.fold((u64::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
        worst = worst.max(hi.saturating_sub(lo));
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned() {
        let a = row(Duration::from_millis(1250), Some(20011.4), 100_480, &[Some(100_480), Some(9)], 3, true);
        let b = row(Duration::from_secs(20), None, 7, &[None, Some(1_000_000)], 12_345, true);
        assert_eq!(a, "     1.2 s     20,011    100,480    100,480          9       3");
        assert_eq!(a.len(), b.len());
        assert!(b.contains("   -  ") && b.contains("1,000,000"), "{b}");
        let c = row(Duration::ZERO, Some(0.0), 0, &[Some(4), None, Some(2)], 0, false);
        assert!(c.ends_with("         2          4       0"), "{c}");
    }

    #[test]
    fn the_rate_window_spans_a_second() {
        let mut w = RateWindow::default();
        let ms = Duration::from_millis;
        assert_eq!(w.push(ms(0), 0), (0.0, ms(0)));
        assert_eq!(w.push(ms(250), 500), (2000.0, ms(250)));
        w.push(ms(500), 1000);
        w.push(ms(750), 1500);
        // Ticks drift late: the window still reaches back a full second.
        let (rate, window) = w.push(ms(1001), 2002);
        assert_eq!(window, ms(1001));
        assert!((rate - 2000.0).abs() < 1e-6, "{rate}");
        let (rate, window) = w.push(ms(1251), 5002);
        assert_eq!(window, ms(1001));
        assert!((rate - 4502.0 / 1.001).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn wire_is_na_without_counters() {
        assert!(wire_line(None, None, 2).starts_with("n/a (a node's stats"));
        assert!(wire_line(None, None, 0).starts_with("n/a (one node"));
        let w = |b, t, d| Some(stats::Wire { bytes_out: b, topics_out: t, topics_drained: d });
        assert!(wire_line(w(100, 0, 0), w(200, 0, 0), 2).starts_with("n/a (no changed topics"));
        assert!(wire_line(w(100, 0, 5), w(100, 0, 5), 2).starts_with("n/a"));
        // No topic entries sent (only heartbeats, say): estimated from drains.
        assert_eq!(
            wire_line(w(100, 0, 10), w(1100, 0, 110), 2),
            "10.0 B per changed topic, 5.0 B to each of 2 peers (1000 B out for 100 changed topics, all frames counted)"
        );
        // An exact count of entries sent wins over the estimate from drains.
        assert!(wire_line(w(0, 0, 0), w(600, 200, 100), 2).starts_with("3.0 B per topic update sent"));
    }

    #[test]
    fn lag_is_the_widest_spread() {
        let nodes: Vec<Node> = (0..3).map(|_| Node::start(&Config::new()).unwrap()).collect();
        let names = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(lag(&nodes, &names), 0);
        nodes[0].add(b"b", 5).unwrap();
        nodes[2].add(b"b", 2).unwrap();
        nodes[1].add(b"a", 1).unwrap();
        // Local-only nodes never converge: b is 5, 0, 2 across them.
        assert_eq!(lag(&nodes, &names), 5);
    }
}
