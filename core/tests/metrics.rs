//! The metrics and health server (`metrics_listen`, docs/OPERATIONS.md):
//! what each endpoint answers, `/readyz` following the peers, the bounds on
//! bad requests, and that nothing outlives the node. The values of
//! `/metrics`, parsed by the `prometheus_client` Python package, are checked
//! against the node's stats by `scrape_parsed_by_prometheus_client_matches_stats`
//! (ignored by plain `cargo test`: `tests/metrics/run.sh` runs it with that
//! package installed, as `scripts/test` does).
//!
//! Every client here talks to 127.0.0.1 with timeouts; every wait is bounded.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use headcount::{Config, Node, PeerState, Stats};
use serde_json::Value;
use support::{addr, node, wait_for, SECRET};

/// A node with the metrics server on a free port (and `kv`).
fn served(name: &str, seeds: &[String], kv: &[(&str, &str)]) -> Node {
    let mut kv = kv.to_vec();
    kv.push(("metrics_listen", "127.0.0.1:0"));
    node(name, seeds, &kv)
}

/// A local-only node (no secret) with the metrics server.
fn local(name: &str) -> Node {
    let mut c = Config::new();
    c.set("node_name", name).unwrap();
    c.set("metrics_listen", "127.0.0.1:0").unwrap();
    Node::start(&c).unwrap()
}

fn maddr(n: &Node) -> SocketAddr {
    n.metrics_addr().expect("metrics server runs")
}

/// An answer: status, head (status line and headers), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status in {head:?}"));
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
    Answer { status, head: head.to_owned(), body: body.to_owned() }
}

/// Sends `raw` and reads the whole answer (the server closes after it).
fn request(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    parse_answer(&out)
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
}

fn get_accept(addr: SocketAddr, path: &str, accept: &str) -> Answer {
    request(addr, format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\n\r\n").as_bytes())
}

/// What Prometheus 2.x and 3.x send by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn the_three_endpoints_answer_and_others_are_refused() {
    let n = local("ep");
    n.track(b"room:1", 7).unwrap();
    n.track(b"room:2", 7).unwrap();
    let a = maddr(&n);

    let h = get(a, "/healthz");
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    assert_eq!(h.header("connection"), Some("close"));
    assert_eq!(h.header("content-length"), Some("3"));
    let r = get(a, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"), "a node without seeds is ready");

    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(m.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(m.header("content-length"), Some(m.body.len().to_string().as_str()));
    for line in ["headcount_tracked_pairs 2", "headcount_topics 2", "headcount_tracked_connections 1"] {
        assert!(m.body.lines().any(|l| l == line), "no {line:?} in\n{}", m.body);
    }
    assert!(m.body.contains("headcount_node_info{node=\"ep\"} 1"), "{}", m.body);
    // A local-only node has no cluster series.
    assert!(!m.body.contains("headcount_peers"), "{}", m.body);

    // Prometheus asks for OpenMetrics, and gets it.
    let om = get_accept(a, "/metrics", PROMETHEUS_ACCEPT);
    assert_eq!(om.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.lines().any(|l| l == "headcount_tracked_pairs 2"));

    // A query string is ignored; HTTP/1.0 is answered too.
    assert_eq!(get(a, "/metrics?debug=1").status, 200);
    assert_eq!(request(a, b"GET /healthz HTTP/1.0\r\n\r\n").status, 200);

    let nf = get(a, "/metrics/x");
    assert_eq!(nf.status, 404);
    assert!(nf.body.contains("/metrics, /healthz and /readyz"), "{}", nf.body);
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let r = request(a, format!("{method} /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes());
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET"), "{method}");
    }
    assert_eq!(request(a, b"POST /nowhere HTTP/1.1\r\n\r\n").status, 404);

    // The bound address is in the stats (and so in every binding's JSON).
    let v: Value = serde_json::from_str(&n.stats_json().unwrap()).unwrap();
    assert_eq!(v["metrics_listen"], a.to_string());
}

#[test]
fn a_bad_metrics_listen_fails_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = Config::new();
    c.set("metrics_listen", &taken.local_addr().unwrap().to_string()).unwrap();
    let e = Node::start(&c).unwrap_err().to_string();
    assert!(e.contains("metrics_listen") && e.contains("cannot listen"), "{e}");
    assert!(Config::new().set("metrics_listen", "9464").is_err());
}

/// A port that was free a moment ago (for a node started later).
fn free_port() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

fn ready(n: &Node) -> Answer {
    get(maddr(n), "/readyz")
}

fn peer_state(n: &Node) -> Option<PeerState> {
    n.stats().unwrap().peers.first().map(|p| p.state)
}

/// `/readyz` on a seeded node: 503 until a peer is up, 200 while one is,
/// 503 again when it crashes or leaves, 200 when it is back.
#[test]
fn readyz_follows_the_peers_of_a_seeded_node() {
    let seed = free_port();
    let kv = [("flush_interval_ms", "10"), ("down_after_ms", "300")];
    let b = served("rb", std::slice::from_ref(&seed), &kv);

    let r = ready(&b);
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with(&format!("not ready: no peer is up (seeds {seed}; peers:")), "{}", r.body);
    assert!(r.body.len() < 200, "{}", r.body);

    let listen_on_seed = [("listen", seed.as_str()), ("flush_interval_ms", "10")];
    let a = node("ra", &[], &listen_on_seed);
    let t = wait_for(Duration::from_secs(10), || ready(&b).status == 200).expect("ready once the seed is up");
    assert_eq!(peer_state(&b), Some(PeerState::Up));
    eprintln!("ready {t:?} after the seed started");

    // A crash: the connection is cut, the peer goes down, the node is not ready.
    a.abort();
    wait_for(Duration::from_secs(10), || ready(&b).status == 503).expect("not ready once the seed crashed");
    // Down; or left, when a link of ra's authenticated while it was
    // aborting (the cluster answers such a link with BYE SHUTDOWN).
    let state = peer_state(&b);
    assert!(matches!(state, Some(PeerState::Down | PeerState::Left)), "{state:?}");
    let body = ready(&b).body;
    assert!(body.contains("ra down") || body.contains("ra left"), "{body}");

    // Back on the same address: ready again.
    let a = node("ra", &[], &listen_on_seed);
    wait_for(Duration::from_secs(10), || ready(&b).status == 200).expect("ready once the seed is back");

    // A graceful leave: the peer says BYE, the node is not ready at once.
    a.close();
    wait_for(Duration::from_secs(5), || ready(&b).status == 503).expect("not ready once the seed left");
    assert!(ready(&b).body.contains("ra left"), "{}", ready(&b).body);
}

/// `/readyz` counts only `up` peers: a peer that goes silent (frozen, its
/// TCP connection still open) keeps the node ready until `down_after_ms`
/// marks it down.
#[test]
fn readyz_turns_503_when_a_silent_peer_passes_down_after() {
    use support::{Mode, Proxy};
    let a = node("sa", &[], &[("flush_interval_ms", "10")]);
    let proxy = Proxy::new(a.local_addr().unwrap());
    // b does not listen, so a cannot dial it around the proxy.
    let mut c = Config::new();
    for (k, v) in [
        ("node_name", "sb"),
        ("secret", SECRET),
        ("seeds", &proxy.addr.to_string()),
        ("flush_interval_ms", "10"),
        ("down_after_ms", "400"),
        ("metrics_listen", "127.0.0.1:0"),
    ] {
        c.set(k, v).unwrap();
    }
    let b = Node::start(&c).unwrap();
    wait_for(Duration::from_secs(10), || ready(&b).status == 200).expect("ready");
    proxy.set("sb", Mode::Freeze);
    let frozen = Instant::now();
    let t = wait_for(Duration::from_secs(10), || ready(&b).status == 503).expect("not ready after down_after");
    assert!(frozen.elapsed() >= Duration::from_millis(400), "503 after {t:?}, before down_after_ms");
    // Down, or already redialing through the frozen proxy: not up.
    assert_ne!(peer_state(&b), Some(PeerState::Up));
}

/// Threads named `hc-metrics-<name>` in this process (Linux keeps the first
/// 15 bytes of a thread's name: `name` has at most 4).
fn metrics_threads(name: &str) -> usize {
    assert!(name.len() <= 4);
    let want = format!("hc-metrics-{name}");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == want)
        .count()
}

fn refused(a: SocketAddr) -> bool {
    TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_err()
}

#[test]
fn the_server_stops_with_the_node() {
    for how in ["clos", "drop", "abrt", "idle"] {
        let n = local(how);
        let a = maddr(&n);
        assert_eq!(get(a, "/healthz").status, 200);
        assert_eq!(metrics_threads(how), 1, "{how}");
        // "idle": a client connected and silent while the node closes.
        let idle = (how == "idle").then(|| {
            let s = TcpStream::connect(a).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s
        });
        let t = Instant::now();
        match how {
            "drop" => drop(n),
            "abrt" => n.abort(),
            _ => n.close(),
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{how}: closing took {:?}", t.elapsed());
        // Joined already; the kernel may take a moment more to drop its
        // /proc entry (a leaked thread would stay there).
        let gone = wait_for(Duration::from_secs(2), || metrics_threads(how) == 0);
        assert!(gone.is_some(), "{how}: the server thread outlived the node");
        assert!(refused(a), "{how}: {a} still accepts connections");
        if let Some(mut s) = idle {
            // The idle client was dropped, unanswered.
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            assert!(matches!(s.read_to_end(&mut buf), Ok(0) | Err(_)), "{buf:?}");
        }
    }
}

#[test]
fn a_clustered_node_stops_its_server_too() {
    let a = served("cls", &[], &[]);
    let m = maddr(&a);
    assert_eq!(get(m, "/readyz").status, 200, "a node without seeds is ready");
    assert_eq!(metrics_threads("cls"), 1);
    a.close();
    assert!(wait_for(Duration::from_secs(2), || metrics_threads("cls") == 0).is_some());
    assert!(refused(m));
}

/// A request head over 8 KiB is refused as soon as 8 KiB have arrived: the
/// answer comes back while the client is still in the middle of its line.
#[test]
fn an_oversized_request_is_refused_not_buffered() {
    let n = local("big");
    let a = maddr(&n);

    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = b"GET /".to_vec();
    line.resize(9000, b'a');
    s.write_all(&line).unwrap();
    // No newline sent, and the connection stays open: a server that
    // waited for the end of the line would never answer.
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = parse_answer(&out);
    assert_eq!(r.status, 414, "{}", r.head);

    let mut big_header = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    big_header.resize(9000, b'b');
    big_header.extend_from_slice(b"\r\n\r\n");
    assert_eq!(request(a, &big_header).status, 431);

    let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(request(a, format!("GET /metrics HTTP/1.1\r\n{many}\r\n").as_bytes()).status, 431);

    assert_eq!(request(a, b"\x01\x02 what\r\n\r\n").status, 400);
    assert_eq!(request(a, b"GET /metrics HTTP/9.9\r\n\r\n").status, 400);

    // Still serving.
    assert_eq!(get(a, "/healthz").status, 200);
}

/// A client that starts a request and stalls gets a 408 after the 2 s
/// deadline, and holds the server no longer than that.
#[test]
fn a_stalled_request_times_out() {
    let n = local("slow");
    let a = maddr(&n);
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metr").unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert_eq!(parse_answer(&out).status, 408);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "408 after {took:?}");
    assert_eq!(get(a, "/healthz").status, 200);
}

/// Every series the server writes is documented in docs/OPERATIONS.md with
/// its type, and every documented series exists.
#[test]
fn every_series_is_documented_in_operations_md() {
    let a = served("da", &[], &[("flush_interval_ms", "10")]);
    let b = served("db", &[addr(&a)], &[("flush_interval_ms", "10")]);
    wait_for(Duration::from_secs(10), || peer_state(&b) == Some(PeerState::Up)).expect("b syncs");
    let body = get(maddr(&b), "/metrics").body;
    let served: BTreeSet<(String, String)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, ty) = l.split_once(' ').unwrap();
            (name.to_owned(), ty.to_owned())
        })
        .collect();
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    // Rows of the series tables: | `name` | type | labels | meaning |
    let documented: BTreeSet<(String, String)> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `headcount_"))
        .map(|l| {
            let mut cols = l.split('|').map(str::trim);
            let name = format!("headcount_{}", cols.next().unwrap().trim_end_matches('`'));
            (name, cols.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(served, documented, "docs/OPERATIONS.md and /metrics disagree (left: served, right: documented)");
}

/// One sample, as the Python parser saw it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    family_type: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition with `prometheus_client`'s parser for `format`
/// (`prometheus` or `openmetrics`), through `tests/metrics/parse.py`.
fn parse_with_python(body: &str, format: &str) -> Vec<Sample> {
    let python = std::env::var("HEADCOUNT_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/metrics/parse.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} {} {format} failed:\n{}\n--- input:\n{body}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|s| Sample {
            family_type: s["type"].as_str().unwrap().to_owned(),
            name: s["name"].as_str().unwrap().to_owned(),
            labels: serde_json::from_value(s["labels"].clone()).unwrap(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

/// The samples named `name` whose labels include `labels`.
fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect()
}

/// The value of the one sample named `name` with `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(samples, name, labels)[..] {
        [s] => s.value,
        ref v => panic!("{} samples {name} {labels:?}: {v:?}", v.len()),
    }
}

/// Checks one parsed scrape of `b` against its stats taken just `before`
/// and just `after` it: equal where nothing moved, in between where
/// counters run (heartbeats, flushes).
fn check_against_stats(s: &[Sample], before: &Stats, after: &Stats, peer_a: &str) {
    let eq = |name: &str, want: u64| assert_eq!(value(s, name, &[]), want as f64, "{name}");
    eq("headcount_tracked_pairs", after.tracked_pairs as u64);
    eq("headcount_topics", after.topics as u64);
    eq("headcount_tracked_connections", after.connections as u64);
    eq("headcount_local_count", after.total_local);
    let c = after.cluster.as_ref().unwrap();
    eq("headcount_remote_topics", c.remote_topics as u64);
    eq("headcount_remote_count", c.remote_total);
    eq("headcount_auth_failures_total", c.auth_failures);
    eq("headcount_protocol_errors_total", c.protocol_errors);
    eq("headcount_peers_too_large_total", c.peers_too_large);
    eq("headcount_peers_counted", 1);
    for state in PeerState::ALL {
        let want = after.peers.iter().filter(|p| p.state == state).count() as f64;
        assert_eq!(value(s, "headcount_peers", &[("state", state.as_str())]), want, "{state:?}");
    }
    assert_eq!(value(s, "headcount_node_info", &[("node", &after.node)]), 1.0);

    let (p0, p1) = (&before.peers[0], &after.peers[0]);
    let id = format!("{:016x}", p1.node_id);
    let peer = [("peer", peer_a), ("peer_id", id.as_str())];
    assert_eq!(p1.name, peer_a, "the peer's name survives label escaping");
    let between = |name: &str, lo: u64, hi: u64| {
        let v = value(s, name, &peer);
        assert!(lo as f64 <= v && v <= hi as f64 && v > 0.0, "{name} = {v}, stats {lo}..={hi}");
    };
    between("headcount_peer_received_bytes_total", p0.traffic.bytes_in, p1.traffic.bytes_in);
    between("headcount_peer_sent_bytes_total", p0.traffic.bytes_out, p1.traffic.bytes_out);
    between("headcount_peer_received_frames_total", p0.traffic.frames_in, p1.traffic.frames_in);
    between("headcount_peer_sent_frames_total", p0.traffic.frames_out, p1.traffic.frames_out);
    assert_eq!(value(s, "headcount_peer_up", &peer), 1.0);
    assert_eq!(value(s, "headcount_peer_reported_count", &peer), p1.total as f64);
    assert_eq!(value(s, "headcount_peer_reported_topics", &peer), p1.topics as f64);
    assert_eq!(value(s, "headcount_peer_connects_total", &peer), p1.connects as f64);
    let age = value(s, "headcount_peer_last_frame_age_seconds", &peer);
    assert!((0.0..5.0).contains(&age), "last frame {age} s ago");

    // The flush histogram: cumulative buckets ending in +Inf = count, the
    // count between the flushes before and after.
    let count = value(s, "headcount_flush_duration_seconds_count", &[]);
    let (lo, hi) = (before.flush.flushes, after.flush.flushes);
    assert!(lo as f64 <= count && count <= hi as f64 && count > 0.0, "{count} flushes, stats {lo}..={hi}");
    let buckets = find(s, "headcount_flush_duration_seconds_bucket", &[]);
    assert_eq!(buckets.len(), headcount::FlushDurations::BUCKETS);
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
    assert_eq!(buckets.last().unwrap().value, count);
    assert_eq!(buckets.last().unwrap().family_type, "histogram");
    assert!(value(s, "headcount_flush_duration_seconds_sum", &[]) > 0.0);
}

#[test]
#[ignore = "needs Python's prometheus_client: tests/metrics/run.sh (part of scripts/test) runs it"]
fn scrape_parsed_by_prometheus_client_matches_stats() {
    let kv = [("flush_interval_ms", "10")];
    // A name that needs escaping in a label value.
    let name_a = "a \"quoted\" \\ name\nwith a newline";
    let a = served(name_a, &[], &kv);
    let b = served("pb", &[addr(&a)], &kv);
    for conn in 0..3 {
        a.track(b"room:1", conn).unwrap();
    }
    a.track(b"room:2", 9).unwrap();
    b.track(b"room:1", 100).unwrap();
    // A node with the wrong secret: one authentication failure on b.
    let mut bad = Config::new();
    bad.set("seeds", &addr(&b)).unwrap();
    bad.set("secret", &format!("not-{SECRET}")).unwrap();
    let intruder = Node::start(&bad).unwrap();
    wait_for(Duration::from_secs(10), || {
        let s = b.stats().unwrap();
        let synced = s.peers.len() == 1 && s.peers[0].total == 4;
        // (The snapshot that syncs b does not wait for a flush; the
        // histogram checks want some.)
        synced && s.cluster.as_ref().unwrap().auth_failures >= 1 && s.flush.flushes >= 3
    })
    .expect("b syncs with a, refuses the intruder and flushes");
    intruder.close();

    let m = maddr(&b);
    for (format, accept) in [("prometheus", "text/plain"), ("openmetrics", PROMETHEUS_ACCEPT)] {
        let before = b.stats().unwrap();
        let body = get_accept(m, "/metrics", accept).body;
        let after = b.stats().unwrap();
        let samples = parse_with_python(&body, format);
        check_against_stats(&samples, &before, &after, name_a);
        let ty = |name: &str| find(&samples, name, &[])[0].family_type.clone();
        assert_eq!(ty("headcount_auth_failures_total"), "counter", "{format}");
        assert_eq!(ty("headcount_tracked_pairs"), "gauge", "{format}");
        if format == "openmetrics" {
            assert_eq!(ty("headcount_node_info"), "info");
        }
    }
    // Bytes move: a later scrape sees more traffic (heartbeats every 10 ms).
    let first =
        value(&parse_with_python(&get(m, "/metrics").body, "prometheus"), "headcount_peer_received_frames_total", &[]);
    std::thread::sleep(Duration::from_millis(100));
    let later =
        value(&parse_with_python(&get(m, "/metrics").body, "prometheus"), "headcount_peer_received_frames_total", &[]);
    assert!(later > first, "frames in {first} -> {later}");
}
