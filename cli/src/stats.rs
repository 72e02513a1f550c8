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

/// Wire counters of one node (or a sum over nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wire {
    /// Bytes sent to peers: the top-level `bytes_out`, else the sum of each
    /// peer's.
    pub(crate) bytes_out: u64,
    /// Topic entries sent to peers (`topics_out`), where the build counts them.
    pub(crate) topics_out: Option<u64>,
    /// Topic changes the flusher shipped (`topics_drained`): each is sent
    /// once to every peer.
    pub(crate) topics_drained: Option<u64>,
}

impl Wire {
    /// Adds another node's counters; a counter missing on either side is missing.
    pub(crate) fn add(self, o: Wire) -> Wire {
        Wire {
            bytes_out: self.bytes_out + o.bytes_out,
            topics_out: self.topics_out.zip(o.topics_out).map(|(a, b)| a + b),
            topics_drained: self.topics_drained.zip(o.topics_drained).map(|(a, b)| a + b),
        }
    }

    /// `self - earlier`, counter by counter (saturating: a forgotten peer's
    /// bytes can leave the sum).
    pub(crate) fn since(self, earlier: Wire) -> Wire {
        Wire {
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            topics_out: self.topics_out.zip(earlier.topics_out).map(|(a, b)| a.saturating_sub(b)),
            topics_drained: self.topics_drained.zip(earlier.topics_drained).map(|(a, b)| a.saturating_sub(b)),
        }
    }
}

/// The wire counters in a stats line, or `None` when this build has no
/// byte counters (a local-only build).
pub(crate) fn wire(stats: &str) -> Option<Wire> {
    let v: Value = serde_json::from_str(stats).ok()?;
    let u = |obj: &Value, key: &str| obj.get(key).and_then(Value::as_u64);
    let peers = v.get("peers").and_then(Value::as_array);
    let per_peer = |key: &str| -> Option<u64> { peers?.iter().map(|p| u(p, key)).sum() };
    let bytes_out = u(&v, "bytes_out").or_else(|| per_peer("bytes_out"))?;
    let topics_out = u(&v, "topics_out").or_else(|| per_peer("topics_out"));
    Some(Wire { bytes_out, topics_out, topics_drained: u(&v, "topics_drained") })
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
        // A local-only build: no byte counters at all.
        assert_eq!(wire(r#"{"topics_drained":5}"#), None);
        assert_eq!(
            wire(r#"{"bytes_out":10,"topics_out":2,"topics_drained":1}"#),
            Some(Wire { bytes_out: 10, topics_out: Some(2), topics_drained: Some(1) })
        );
        assert_eq!(
            wire(r#"{"topics_drained":4,"peers":[{"bytes_out":10},{"bytes_out":5}]}"#),
            Some(Wire { bytes_out: 15, topics_out: None, topics_drained: Some(4) })
        );
        // No peers yet: zero bytes sent.
        assert_eq!(wire(r#"{"peers":[]}"#), Some(Wire { bytes_out: 0, topics_out: Some(0), topics_drained: None }));
        // One peer lacks the counter: the sum is unknown.
        assert_eq!(wire(r#"{"peers":[{"bytes_out":10},{"name":"x"}]}"#), None);
    }

    #[test]
    fn sums_and_differences() {
        let a = Wire { bytes_out: 100, topics_out: None, topics_drained: Some(10) };
        let b = Wire { bytes_out: 50, topics_out: Some(3), topics_drained: Some(5) };
        assert_eq!(a.add(b), Wire { bytes_out: 150, topics_out: None, topics_drained: Some(15) });
        assert_eq!(b.since(a), Wire { bytes_out: 0, topics_out: None, topics_drained: Some(0) });
    }
}
