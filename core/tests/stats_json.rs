//! `Node::stats_json` is a contract (the C ABI's `hc_stats_json`, every
//! binding and the CLI read it): these tests pin its keys, the type of every
//! value and its exact text form (one line, compact, keys in sorted order).

mod support;

use std::time::Duration;

use headcount::{Config, Node};
use serde_json::Value;
use support::{addr, node, wait_for};

/// `v` with every number made 0, every string "" and every bool false, so
/// that two stats lines compare by shape: keys, nesting and value types.
fn shape(v: &Value) -> Value {
    match v {
        Value::Number(_) => Value::from(0),
        Value::String(_) => Value::from(""),
        Value::Bool(_) => Value::from(false),
        Value::Null => Value::Null,
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// Parses a stats line and checks its text form: exactly what serde_json
/// writes for the parsed value (compact, no spaces, keys sorted).
fn parse(line: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(serde_json::to_string(&v).unwrap(), line, "not compact JSON with sorted keys");
    assert!(!line.contains('\n'));
    v
}

#[test]
fn local_node_stats_are_exactly_these_bytes() {
    let mut cfg = Config::new();
    cfg.set("node_name", "solo").unwrap();
    // No flush runs during the test: in adaptive mode a lone change would
    // ship at once, so the schedule is the fixed one-minute tick.
    cfg.set("flush_interval_ms", "60000").unwrap();
    cfg.set("flush_mode", "fixed").unwrap();
    let n = Node::start(&cfg).unwrap();
    n.track(b"room:1", 7).unwrap();
    let stripes = parse(&n.stats_json().unwrap())["stripes"].as_u64().unwrap();
    assert!(stripes >= 1);
    assert_eq!(
        n.stats_json().unwrap(),
        format!(
            "{{\"connections\":1,\"flush_us_avg\":0,\"flush_us_max\":0,\"flushes\":0,\"node\":\"solo\",\
             \"peers\":[],\"stripes\":{stripes},\"topics\":1,\"topics_collected\":0,\"topics_drained\":0,\
             \"total_local\":1,\"tracked_pairs\":1,\"watch_backlog\":0,\"watches\":0}}"
        )
    );
}

/// With the metrics server on, one key is added: where it listens.
#[test]
fn metrics_listen_adds_one_key() {
    let mut cfg = Config::new();
    cfg.set("node_name", "solo").unwrap();
    cfg.set("flush_interval_ms", "60000").unwrap();
    cfg.set("metrics_listen", "127.0.0.1:0").unwrap();
    let n = Node::start(&cfg).unwrap();
    let at = n.metrics_addr().unwrap();
    assert_ne!(at.port(), 0);
    let stripes = parse(&n.stats_json().unwrap())["stripes"].as_u64().unwrap();
    assert_eq!(
        n.stats_json().unwrap(),
        format!(
            "{{\"connections\":0,\"flush_us_avg\":0,\"flush_us_max\":0,\"flushes\":0,\"metrics_listen\":\"{at}\",\
             \"node\":\"solo\",\"peers\":[],\"stripes\":{stripes},\"topics\":0,\"topics_collected\":0,\
             \"topics_drained\":0,\"total_local\":0,\"tracked_pairs\":0,\"watch_backlog\":0,\"watches\":0}}"
        )
    );
}

const PEER_KEYS: &str = r#"{"address":"","bytes_in":0,"bytes_out":0,"connects":0,"counted":false,"frames_in":0,"frames_out":0,"incarnation":"","last_frame_age_ms":0,"name":"","node_id":"","outbox_coalesces":0,"outbox_overflows":0,"outbox_pending":0,"snapshots_sent":0,"state":"","state_age_ms":0,"state_bytes_out":0,"state_frames_out":0,"topics":0,"topics_out":0,"total":0}"#;

fn node_keys(listen: &str, peers: &str) -> String {
    format!(
        r#"{{"addresses_dropped":0,"auth_failures":0,"cluster":"","connections":0,"connections_accepted":0,"connections_dialed":0,"connections_open":0,"connections_refused_busy":0,"connections_refused_source":0,"flush_us_avg":0,"flush_us_max":0,"flushes":0,"handshakes_pending":0,"handshakes_timed_out":0,"incarnation":"","known_addresses":0,"listen":{listen},"node":"","node_id":"","peers":[{peers}],"peers_known":0,"peers_too_large":0,"protocol_errors":0,"remote_topics":0,"remote_total":0,"stripes":0,"topics":0,"topics_collected":0,"topics_drained":0,"total_local":0,"tracked_pairs":0,"watch_backlog":0,"watches":0}}"#
    )
}

#[test]
fn clustered_node_stats_have_these_keys_and_types() {
    let a = node("sa", &[], &[("flush_interval_ms", "10")]);
    let b = node("sb", &[addr(&a)], &[("flush_interval_ms", "10")]);
    a.track(b"t", 1).unwrap();
    let up = |n: &Node| {
        let v = parse(&n.stats_json().unwrap());
        v["peers"].as_array().is_some_and(|p| p.len() == 1 && p[0]["state"] == "up")
    };
    assert!(wait_for(Duration::from_secs(10), || up(&a) && up(&b)).is_some());
    for n in [&a, &b] {
        let v = parse(&n.stats_json().unwrap());
        assert_eq!(shape(&v), serde_json::from_str::<Value>(&node_keys("\"\"", PEER_KEYS)).unwrap());
    }
    let v = parse(&a.stats_json().unwrap());
    assert_eq!(v["node"], "sa");
    assert_eq!(v["cluster"], "headcount");
    assert_eq!(v["listen"], addr(&a));
    assert_eq!(v["node_id"].as_str().unwrap().len(), 16);
    assert_eq!(v["peers"][0]["name"], "sb");
    assert_eq!(v["peers"][0]["counted"], true);

    // With a secret but no listener: `listen` is null and there are no peers.
    let mut cfg = Config::new();
    cfg.set("secret", "s").unwrap();
    let c = Node::start(&cfg).unwrap();
    let v = parse(&c.stats_json().unwrap());
    assert_eq!(shape(&v), serde_json::from_str::<Value>(&node_keys("null", "")).unwrap());
}
