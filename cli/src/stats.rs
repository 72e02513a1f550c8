//! Reading the node's `stats_json` for what the CLI shows: the peers array
//! and the wire counters.
//!
//! The CLI only reads keys the core writes; where a key is absent (a
//! local-only build has no wire counters) it says so instead of guessing.

use serde_json::Value;

/// The `"peers"` array of a stats line, as one line of JSON.
pub(crate) fn peers_json(stats: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(stats).map_err(|e| format!("stats are not JSON: {e}"))?;
    match v.get("peers") {
        Some(p @ Value::Array(_)) => Ok(p.to_string()),
        _ => Err("this build's stats have no \"peers\" array".into()),
    }
}

/// Wire counters of one node: bytes sent to peers and topic entries sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wire {
    pub(crate) bytes_out: u64,
    pub(crate) topics_out: u64,
}

/// Keys that hold bytes sent and topic entries sent, at the top level of the
/// stats object or per entry of its `"peers"` array (summed).
const BYTES_OUT: &[&str] = &["bytes_out", "bytes_sent"];
const TOPICS_OUT: &[&str] = &["topics_out", "topics_sent"];

/// The wire counters in a stats line, or `None` when this build has none.
pub(crate) fn wire(stats: &str) -> Option<Wire> {
    let v: Value = serde_json::from_str(stats).ok()?;
    let pick = |obj: &Value, keys: &[&str]| keys.iter().find_map(|k| obj.get(*k).and_then(Value::as_u64));
    if let (Some(bytes_out), Some(topics_out)) = (pick(&v, BYTES_OUT), pick(&v, TOPICS_OUT)) {
        return Some(Wire { bytes_out, topics_out });
    }
    let peers = v.get("peers")?.as_array()?;
    let mut sum = Wire::default();
    for p in peers {
        sum.bytes_out += pick(p, BYTES_OUT)?;
        sum.topics_out += pick(p, TOPICS_OUT)?;
    }
    (!peers.is_empty()).then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_array_is_passed_through() {
        assert_eq!(peers_json(r#"{"peers":[]}"#).unwrap(), "[]");
        assert_eq!(peers_json(r#"{"peers":[{"name":"b","up":true}]}"#).unwrap(), r#"[{"name":"b","up":true}]"#);
        assert!(peers_json(r#"{"node":"a"}"#).unwrap_err().contains("no \"peers\""));
        assert!(peers_json("nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn wire_counters_top_level_or_per_peer() {
        assert_eq!(wire(r#"{"peers":[]}"#), None);
        assert_eq!(wire(r#"{"bytes_out":10,"topics_out":2}"#), Some(Wire { bytes_out: 10, topics_out: 2 }));
        assert_eq!(
            wire(r#"{"peers":[{"bytes_out":10,"topics_sent":2},{"bytes_sent":5,"topics_out":1}]}"#),
            Some(Wire { bytes_out: 15, topics_out: 3 })
        );
        assert_eq!(wire(r#"{"peers":[{"bytes_out":10}]}"#), None);
    }
}
