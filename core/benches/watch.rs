//! Change-feed and `top` benchmark, through the public API of a local-only
//! node holding `--topics` topics (1M by default).
//!
//! ```text
//! cargo bench -p headcount --bench watch -- [--topics 1000000] [--changes 10000] [--rounds 7]
//! ```
//!
//! Run without `--bench` (as `cargo test --benches` does) it is a smoke run
//! on 20k topics.
//!
//! **Per delivered change.** Each round changes `--changes` distinct topics
//! (one `add` of ±1 each, so every one really changes), waits until the
//! flusher has drained them all, and (with watches) until the watches hold
//! them, then takes them with `next_batch`. The cost of a delivered change is
//! the extra flusher time over the same round without watches (the flush
//! duration sum from `Stats`, so the tracking calls are not in it) plus the
//! consumer's `next_batch` time, divided by the changes delivered. Three
//! setups run side by side, interleaved round by round, on the same topics:
//! no watch (the baseline), one watch of every topic, and one exact-topic
//! watch per changed topic (10,000 watches by default). Medians over rounds.
//!
//! **top.** `top(10, "")` over all topics, median of `--rounds` calls.

use std::time::{Duration, Instant};

use headcount::{Config, Node, Watch};

struct Options {
    topics: usize,
    changes: usize,
    rounds: usize,
    smoke: bool,
}

fn options() -> Options {
    let mut o = Options { topics: 1_000_000, changes: 10_000, rounds: 7, smoke: true };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> usize {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match a.as_str() {
            "--bench" => o.smoke = false,
            "--topics" => o.topics = num("--topics"),
            "--changes" => o.changes = num("--changes"),
            "--rounds" => o.rounds = num("--rounds"),
            _ => {}
        }
    }
    if o.smoke {
        (o.topics, o.changes, o.rounds) = (20_000, 2_000, 2);
    }
    o.changes = o.changes.min(o.topics);
    o
}

fn name(i: usize) -> String {
    format!("room:{i:07}")
}

/// Every exact-topic watch needs an fd: lift the soft limit to the hard one.
fn raise_fd_limit() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Polls `f` every 20 ms: each poll reads `Stats`, whose `total_local`
/// scans every topic, so polling faster would compete with the flusher
/// being measured (on a 2-CPU machine, visibly).
fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One round: flusher ns and consumer ns spent on `changes` changes, and
/// the changes delivered.
fn round(node: &Node, watches: &mut [Watch], topics: &[String], sign: i64) -> (u64, u64, usize) {
    let s0 = node.stats().unwrap();
    for t in topics {
        node.add(t, sign).unwrap();
    }
    let want = s0.flush.topics_drained + topics.len() as u64;
    wait("the drain", || node.stats().unwrap().flush.topics_drained >= want);
    // One more flush, so that the one that drained has finished.
    let flushes = node.stats().unwrap().flush.flushes;
    wait("a flush", || node.stats().unwrap().flush.flushes > flushes);
    let flush_ns = node.stats().unwrap().flush.durations.sum_ns - s0.flush.durations.sum_ns;
    let queued: usize = watches.iter().map(|w| w.pending()).sum();
    let expect = if watches.is_empty() { 0 } else { topics.len() };
    assert_eq!(queued, expect, "every change is queued once");
    let t0 = Instant::now();
    let mut delivered = 0;
    for w in watches.iter_mut() {
        delivered += w.next_batch(Duration::ZERO).unwrap().len();
    }
    (flush_ns, t0.elapsed().as_nanos() as u64, delivered)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let o = options();
    raise_fd_limit();
    println!(
        "headcount watch bench{}: {} topics, {} changes per flush, {} rounds; {} cpus; load avg {}",
        if o.smoke { " (SMOKE RUN: pass --bench for real numbers)" } else { "" },
        o.topics,
        o.changes,
        o.rounds,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?"),
    );
    let mut cfg = Config::new();
    cfg.set("flush_interval_ms", "2").unwrap();
    cfg.set("gc_after_ms", "3600000").unwrap();
    let node = Node::start(&cfg).unwrap();
    let t0 = Instant::now();
    for i in 0..o.topics {
        node.add(name(i), 1 + (i % 1000) as i64).unwrap();
    }
    wait("the first drain", || node.stats().unwrap().flush.topics_drained >= o.topics as u64);
    println!("setup: {} topics in {:.2} s", o.topics, t0.elapsed().as_secs_f64());
    // The changed topics: spread over the table.
    let step = o.topics / o.changes;
    let changed: Vec<String> = (0..o.changes).map(|i| name(i * step)).collect();

    const SETUPS: [&str; 3] = ["no watch", "one watch of all topics", "one exact watch per changed topic"];
    let mut flush: [Vec<f64>; 3] = Default::default();
    let mut consume: [Vec<f64>; 3] = Default::default();
    let mut sign = 1;
    for r in 0..o.rounds {
        for k in 0..3 {
            let s = (k + r) % 3;
            let mut watches: Vec<Watch> = match s {
                0 => Vec::new(),
                1 => vec![node.watch("", false).unwrap()],
                _ => changed.iter().map(|t| node.watch(t, false).unwrap()).collect(),
            };
            let (f, c, delivered) = round(&node, &mut watches, &changed, sign);
            sign = -sign;
            assert_eq!(delivered, if s == 0 { 0 } else { o.changes });
            flush[s].push(f as f64 / o.changes as f64);
            consume[s].push(c as f64 / o.changes as f64);
        }
    }
    let base = median(flush[0].clone());
    println!("\nper changed topic (median of {} rounds):", o.rounds);
    println!("| setup | flush ns/change | extra flush ns | next_batch ns | per delivered change ns |");
    println!("|---|---|---|---|---|");
    let mut per = [0.0; 3];
    for s in 0..3 {
        let (f, c) = (median(flush[s].clone()), median(consume[s].clone()));
        per[s] = (f - base).max(0.0) + c;
        println!(
            "| {} | {f:.0} | {:.0} | {c:.0} | {} |",
            SETUPS[s],
            f - base,
            if s == 0 { "-".into() } else { format!("{:.0}", per[s]) }
        );
    }
    println!(
        "one watch: {:.0} ns per delivered change (goal <= 100); {} exact watches / one watch: {:.2}x (goal <= 2x)",
        per[1],
        o.changes,
        per[2] / per[1]
    );

    let mut tops = Vec::new();
    let mut got = Vec::new();
    for _ in 0..o.rounds {
        let t = Instant::now();
        got = node.top(10, "").unwrap();
        tops.push(t.elapsed().as_secs_f64() * 1e3);
    }
    assert_eq!(got.len(), 10.min(o.topics));
    println!("top(10) over {} topics, by scan: {:.2} ms (median; goal <= 20 ms)", o.topics, median(tops));
    if o.smoke {
        println!("(smoke run: no verdicts)");
    }
}
