//! `headcount demo`: a cluster of in-process nodes on loopback, simulated
//! users churning through Zipf-popular topics, a progress row a second,
//! then a check that every node's count of every topic equals the truth.
//!
//! Phases:
//! 1. start `--nodes` nodes on 127.0.0.1 (port 0) with a random secret, all
//!    seeded with the first, and wait until each knows all the others;
//! 2. warm-up: every user joins one topic, and the demo waits until every
//!    node's total is the truth (the first flush has landed), so the first
//!    row shows a settled cluster;
//! 3. load: `--workers` threads churn at `--churn` joins+leaves per second
//!    for `--seconds`, while a probe measures propagation latency
//!    ([`probe`]) and [`progress`] prints a row a second;
//! 4. stop the load and poll until every node's `count` of every topic (and
//!    its `total`) equals the truth kept by the workers, or a timeout.
//!
//! [`report`] renders the result as text or, with `--json`, one JSON object;
//! `--plot FILE.svg` draws it ([`plot`]). The exit status is 0 only when
//! everything converged, each node's local counts were exact, and the
//! library never answered unexpectedly.

mod load;
mod plot;
mod probe;
mod progress;
mod report;
mod zipf;

use crate::fmt::{duration, thousands};
use crate::stats;
use clap::Args;
use headcount::{Config, Node};
use load::{LoadStats, Worker};
use progress::{Progress, Sample};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report::{Params, Report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
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
  headcount demo --json --plot demo.svg   # a machine-readable report, and charts
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
    /// Print the report as one JSON object on stdout, and nothing else.
    #[arg(long)]
    json: bool,
    /// Also draw each node's distance from the truth over time and the
    /// propagation histogram, as SVG, to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

fn zipf_exponent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number in 0..=10")),
    }
}

/// How often the nodes' distances from the truth are sampled (a row is
/// printed every [`ROW`]).
const TICK: Duration = Duration::from_millis(100);

/// One progress row per this much load time.
const ROW: Duration = Duration::from_secs(1);

/// How long the demo waits for the cluster to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a probe observation may take before it counts as lost.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn run(args: &DemoArgs) -> ExitCode {
    let demo = match Demo::start(args) {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let report = demo.run();
    for node in &demo.nodes {
        node.close();
    }
    if args.json {
        println!("{}", report.json());
    }
    if let Some(path) = &args.plot {
        if let Err(e) = plot::write(path, &report) {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
    /// Text on stdout (not `--json`).
    text: bool,
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
        let zipf = Zipf::new(args.topics as usize, args.zipf);
        Ok(Self { args, nodes, names, zipf, seed, flush, formed_in, text: !args.json })
    }

    /// A line of the text report (nothing with `--json`).
    fn say(&self, line: &str) {
        if self.text {
            println!("{line}");
        }
    }

    /// Runs the warm-up, the load and the check, printing as it goes.
    fn run(&self) -> Report {
        let args = self.args;
        self.print_header();
        let stats = LoadStats::default();
        let workers = usize::from(args.workers);
        let users = args.users as usize;
        let mut pool: Vec<Worker<'_>> = (0..workers)
            .map(|w| Worker::new(w, workers, users, &self.nodes, &self.names, &self.zipf, self.seed))
            .collect();

        // Warm-up, then wait for the first flush to land everywhere.
        let t = Instant::now();
        let warm: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = pool.iter_mut().map(|w| s.spawn(|| w.warm_up(&stats))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let warm_took = t.elapsed();
        let agreed = self.wait_totals(warm, Duration::from_secs(5) + self.flush * 10);
        self.say(&format!(
            "warm-up     {} users joined a first topic in {}; {}",
            thousands(warm),
            duration(warm_took),
            match agreed {
                Some(d) => format!("every node's total agreed {} later", duration(d)),
                None => "the nodes' totals did not agree in time".to_owned(),
            }
        ));
        self.say("");

        // Load.
        let wire_before = self.wire();
        // Each worker's share of the rate follows its share of the users.
        let per_user = args.churn as f64 / users as f64;
        let load_for = Duration::from_secs(args.seconds);
        let node_names: Vec<&str> = self.nodes.iter().map(Node::name).collect();
        let mut progress = Progress::new(&node_names, self.text);
        let (lag_tx, lag_rx) = mpsc::channel();
        let start = Instant::now();
        // The first row: the settled cluster, before any churn.
        progress.tick(Sample::take(Duration::ZERO, warm, &self.nodes), 0, &lag_rx, true);
        let (stopped, latencies) = std::thread::scope(|s| {
            let churners: Vec<_> = pool
                .iter_mut()
                .map(|w| {
                    let stats = &stats;
                    let rate = per_user * w.users.len() as f64;
                    s.spawn(move || w.churn(rate, stats))
                })
                .collect();
            let probe = s.spawn(|| probe::run(&self.nodes, &stats.stop, PROBE_TIMEOUT, self.flush, self.seed, &lag_tx));
            let mut next_row = ROW;
            // `--seconds 0`: the first row is the only one.
            for tick in (1u32..).take_while(|_| !load_for.is_zero()) {
                let due = (TICK * tick).min(load_for);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                let at = start.elapsed();
                let last = due >= load_for;
                let truth = u64::try_from(stats.pairs.load(Ordering::Relaxed)).unwrap_or(0);
                // Rows by schedule, not by the clock: a late tick is not an extra row.
                let row = due >= next_row || last;
                progress.tick(Sample::take(at, truth, &self.nodes), stats.ops.load(Ordering::Relaxed), &lag_rx, row);
                if row {
                    next_row += ROW;
                }
                if last {
                    break;
                }
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
        let trace = progress.finish(&lag_rx);
        let load_time = stopped - start;
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

        self.say(&format!(
            "stopped     the load after {}; checking {} node{} × {} topics against the truth...",
            duration(load_time),
            n,
            if n == 1 { "" } else { "s" },
            thousands(self.names.len() as u64 + 1)
        ));
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
        match converged {
            Some(t) => self.say(&format!(
                "converged   every node agrees with the truth ({} pairs) {} after the load stopped",
                thousands(pairs),
                duration(t)
            )),
            None => {
                self.say(&format!("NOT converged after {}: {} counts differ, e.g.", duration(timeout), wrong.len()));
                for m in wrong.iter().take(5) {
                    self.say(&format!("              {m}"));
                }
            }
        }
        self.say("");
        let report = Report {
            params: Params {
                nodes: args.nodes,
                users: args.users,
                topics: args.topics,
                churn: args.churn,
                seconds: args.seconds,
                zipf: args.zipf,
                workers: args.workers,
                flush: self.flush,
                seed: self.seed,
            },
            nodes: self.nodes.iter().map(|n| (n.name().to_owned(), n.local_addr().map(|a| a.to_string()))).collect(),
            formed_in: (n > 1).then_some(self.formed_in),
            warm_joins: warm,
            warm_took,
            warm_agreed: agreed,
            trace,
            load_time,
            ops,
            pairs,
            converged,
            converge_timeout: timeout,
            wrong,
            probe: latencies,
            wire: (wire_before, wire_after),
            local_wrong,
            anomalies: stats.anomalies.count(),
            first_anomaly: stats.anomalies.first(),
        };
        for line in report.summary_lines() {
            self.say(&line);
        }
        report
    }

    fn print_header(&self) {
        let a = self.args;
        self.say(&format!(
            "headcount demo · {} node{} on loopback · {} users · {} topics · {} joins+leaves/s for {} s",
            a.nodes,
            if a.nodes == 1 { "" } else { "s" },
            thousands(a.users),
            thousands(a.topics),
            thousands(a.churn),
            a.seconds
        ));
        self.say("");
        for (i, node) in self.nodes.iter().enumerate() {
            let addr = node.local_addr().map_or_else(|| "local-only".to_owned(), |a| a.to_string());
            let role = if i == 0 && self.nodes.len() > 1 { "  (seed)" } else { "" };
            self.say(&format!("  {:<10} {addr}{role}", node.name()));
        }
        self.say("");
        self.say(&format!(
            "topics      Zipf s={}: room:1 gets {:.1}% of joins, room:{} {:.3}%",
            a.zipf,
            self.zipf.probability(0) * 100.0,
            self.names.len(),
            self.zipf.probability(self.names.len() - 1) * 100.0
        ));
        let formed = if self.nodes.len() > 1 {
            format!("formed in {} · random 256-bit secret", duration(self.formed_in))
        } else {
            "one local-only node".to_owned()
        };
        self.say(&format!(
            "cluster     {formed} · flush every {} · {} load workers · seed {}",
            duration(self.flush),
            a.workers,
            self.seed
        ));
    }

    /// Waits until every node's total is `want`; how long that took.
    fn wait_totals(&self, want: u64, timeout: Duration) -> Option<Duration> {
        let t = Instant::now();
        loop {
            if self.nodes.iter().all(|n| n.total().ok() == Some(want)) {
                return Some(t.elapsed());
            }
            if t.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
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
