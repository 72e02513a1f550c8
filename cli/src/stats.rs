//! What the CLI shows of a node's typed stats ([`headcount::Stats`]): the
//! wire counters of the demo's summary line.

use headcount::Stats;

/// Wire counters of one node (or a sum over nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wire {
    /// Bytes sent to peers (the sum over every peer).
    pub(crate) bytes_out: u64,
    /// Topic entries sent to peers in SNAPSHOT and DELTA frames.
    pub(crate) topics_out: u64,
    /// Topic changes the flusher shipped (`topics_drained`): each is sent
    /// once to every peer.
    pub(crate) topics_drained: u64,
}

impl Wire {
    /// The wire counters in `stats`.
    pub(crate) fn of(stats: &Stats) -> Wire {
        Wire {
            bytes_out: stats.peers.iter().map(|p| p.traffic.bytes_out).sum(),
            topics_out: stats.peers.iter().map(|p| p.traffic.topics_out).sum(),
            topics_drained: stats.flush.topics_drained,
        }
    }

    /// Adds another node's counters.
    pub(crate) fn add(self, o: Wire) -> Wire {
        Wire {
            bytes_out: self.bytes_out + o.bytes_out,
            topics_out: self.topics_out + o.topics_out,
            topics_drained: self.topics_drained + o.topics_drained,
        }
    }

    /// `self - earlier`, counter by counter (saturating: a forgotten peer's
    /// bytes can leave the sum).
    pub(crate) fn since(self, earlier: Wire) -> Wire {
        Wire {
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            topics_out: self.topics_out.saturating_sub(earlier.topics_out),
            topics_drained: self.topics_drained.saturating_sub(earlier.topics_drained),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headcount::{Config, Node};

    #[test]
    fn wire_counters_of_a_local_node_are_zero_but_its_drains() {
        let mut cfg = Config::new();
        cfg.set("flush_interval_ms", "1").unwrap();
        let n = Node::start(&cfg).unwrap();
        n.add(b"t", 1).unwrap();
        let start = std::time::Instant::now();
        while n.stats().unwrap().flush.topics_drained == 0 {
            assert!(start.elapsed().as_secs() < 10, "no flush drained the change");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let w = Wire::of(&n.stats().unwrap());
        assert_eq!((w.bytes_out, w.topics_out, w.topics_drained), (0, 0, 1));
    }

    #[test]
    fn sums_and_differences() {
        let a = Wire { bytes_out: 100, topics_out: 0, topics_drained: 10 };
        let b = Wire { bytes_out: 50, topics_out: 3, topics_drained: 5 };
        assert_eq!(a.add(b), Wire { bytes_out: 150, topics_out: 3, topics_drained: 15 });
        assert_eq!(b.since(a), Wire { bytes_out: 0, topics_out: 3, topics_drained: 0 });
    }
}
