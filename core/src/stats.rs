//! Typed stats: what [`crate::Node::stats`] returns, and the one place that
//! renders it as the JSON line of [`crate::Node::stats_json`] (which the C
//! ABI's `hc_stats_json` and every binding pass on).
//!
//! The structs are plain values, `#[non_exhaustive]` so that fields can be
//! added; the JSON keys are a contract (`core/tests/stats_json.rs` pins
//! them) and are written out in [`Stats::to_json`] alone.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use crate::sync::{AtomicU64, Ordering};

/// Declares the traffic counters once: the [`Traffic`] value, the atomic
/// `TrafficCounters` a connection increments, and the JSON key of each.
macro_rules! traffic {
    ($( #[doc = $doc:literal] $field:ident => $key:literal, )+) => {
        /// Cumulative traffic with one peer, over every connection to it.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Traffic {
            $( #[doc = $doc] pub $field: u64, )+
        }

        impl std::ops::Add for Traffic {
            type Output = Traffic;
            fn add(self, o: Traffic) -> Traffic {
                Traffic { $($field: self.$field + o.$field,)+ }
            }
        }

        impl Traffic {
            fn json_into(&self, obj: &mut Map<String, Value>) {
                $( obj.insert($key.to_owned(), self.$field.into()); )+
            }
        }

        /// One connection's live [`Traffic`] counters.
        #[derive(Debug, Default)]
        pub(crate) struct TrafficCounters {
            $( #[doc = $doc] pub(crate) $field: AtomicU64, )+
        }

        impl TrafficCounters {
            /// The counters now.
            pub(crate) fn load(&self) -> Traffic {
                Traffic { $($field: self.$field.load(Ordering::Relaxed),)+ }
            }
        }
    };
}

traffic! {
    /// Bytes received.
    bytes_in => "bytes_in",
    /// Bytes sent.
    bytes_out => "bytes_out",
    /// Frames received.
    frames_in => "frames_in",
    /// Frames sent.
    frames_out => "frames_out",
    /// SNAPSHOT and DELTA frames sent.
    state_frames_out => "state_frames_out",
    /// Topic entries in the SNAPSHOT and DELTA frames sent.
    topics_out => "topics_out",
    /// Bytes of those SNAPSHOT and DELTA frames (header and CRC included).
    state_bytes_out => "state_bytes_out",
    /// Outbox entries overwritten by a newer count before they were sent.
    outbox_coalesces => "outbox_coalesces",
}

/// Where a peer stands (docs/CLUSTER.md has the state table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerState {
    /// Connected and authenticated; its first snapshot has not arrived.
    Syncing,
    /// Connected and synced.
    Up,
    /// Connection lost.
    Down,
    /// Said BYE SHUTDOWN.
    Left,
}

impl PeerState {
    /// Every state, in the order of the state table.
    pub const ALL: [PeerState; 4] = [PeerState::Syncing, PeerState::Up, PeerState::Down, PeerState::Left];

    /// The state's name in the stats JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Syncing => "syncing",
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Left => "left",
        }
    }
}

/// One peer, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Its node name.
    pub name: String,
    /// Its node id.
    pub node_id: u64,
    /// Its incarnation (new on every start).
    pub incarnation: u64,
    /// Where it listens, or else where its connection comes from.
    pub address: String,
    /// Where it stands.
    pub state: PeerState,
    /// Whether its counts are summed into `count` now.
    pub counted: bool,
    /// Time since it last sent a frame, if it ever connected.
    pub last_frame_age_ms: Option<u64>,
    /// Time in the current state.
    pub state_age_ms: u64,
    /// Topics it reports non-zero.
    pub topics: usize,
    /// The sum of its counts.
    pub total: u64,
    /// Traffic over every connection to it.
    pub traffic: Traffic,
    /// Outbox entries waiting for its writer.
    pub outbox_pending: usize,
    /// Times its outbox overflowed into a snapshot (last connection).
    pub outbox_overflows: u64,
    /// Snapshots sent to it (last connection).
    pub snapshots_sent: u64,
    /// Connections to it that authenticated.
    pub connects: u64,
}

/// The node's flusher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushStats {
    /// Flushes run.
    pub flushes: u64,
    /// Mean duration of a flush, in microseconds.
    pub flush_us_avg: u64,
    /// Longest flush, in microseconds.
    pub flush_us_max: u64,
    /// Topic changes drained (each is shipped once to every peer).
    pub topics_drained: u64,
    /// Topics garbage-collected.
    pub topics_collected: u64,
    /// Every flush's duration, in fixed buckets.
    pub durations: FlushDurations,
}

/// Flush durations in fixed buckets: the `headcount_flush_duration_seconds`
/// histogram of docs/OPERATIONS.md. `buckets[i]` counts the flushes that
/// took more than `BOUNDS_US[i - 1]` and at most `BOUNDS_US[i]`
/// microseconds; the last bucket, those that took longer than every bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushDurations {
    /// Flushes per bucket (not cumulative).
    pub buckets: [u64; FlushDurations::BUCKETS],
    /// The sum of every recorded duration, in nanoseconds.
    pub sum_ns: u64,
}

impl FlushDurations {
    /// The buckets' upper bounds, in microseconds: 10 us to 1 s, about three
    /// per decade (a flush of a few changed topics takes microseconds, one
    /// of a million takes tens of milliseconds).
    pub const BOUNDS_US: [u64; 16] =
        [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];
    /// How many buckets: one per bound, and one above them all.
    pub const BUCKETS: usize = Self::BOUNDS_US.len() + 1;

    /// The bucket a flush of `nanos` nanoseconds falls in.
    pub(crate) fn bucket_of(nanos: u64) -> usize {
        Self::BOUNDS_US.partition_point(|&us| us.saturating_mul(1000) < nanos)
    }

    /// Flushes recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Node-wide cluster state (nodes with a `secret` only).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// This node's id.
    pub node_id: u64,
    /// This node's incarnation.
    pub incarnation: u64,
    /// The cluster name.
    pub cluster: String,
    /// The listener's address, if the node listens.
    pub listen: Option<SocketAddr>,
    /// Peers known: connected, or down within their grace.
    pub peers_known: u32,
    /// Distinct topics reported by peers.
    pub remote_topics: usize,
    /// The sum of every counted peer's counts.
    pub remote_total: u64,
    /// Connections open now.
    pub connections_open: usize,
    /// Connections accepted (including refused ones).
    pub connections_accepted: u64,
    /// Connections dialed.
    pub connections_dialed: u64,
    /// Connections closed at accept: too many handshakes pending.
    pub connections_refused_busy: u64,
    /// Connections closed at accept: too many handshakes pending from
    /// their source address.
    pub connections_refused_source: u64,
    /// Accepted connections in their handshake now.
    pub handshakes_pending: usize,
    /// Handshakes (accepted or dialed) not finished within
    /// `handshake_timeout_ms`.
    pub handshakes_timed_out: u64,
    /// Handshakes that failed authentication.
    pub auth_failures: u64,
    /// Connections closed for a protocol error.
    pub protocol_errors: u64,
    /// Peers refused (BYE PEER_TOO_LARGE, counts dropped) for passing
    /// `max_topic_len`, `max_peer_topics` or `max_peer_topic_bytes`.
    pub peers_too_large: u64,
    /// Addresses this node dials (or tried to).
    pub known_addresses: usize,
    /// Addresses learned (gossip, HELLO) and not kept: malformed, or the
    /// address table was full.
    pub addresses_dropped: u64,
}

/// A node's counters and state, from [`crate::Node::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The node's name.
    pub node: String,
    /// Topics that exist locally.
    pub topics: usize,
    /// (topic, connection) pairs tracked.
    pub tracked_pairs: usize,
    /// Connections tracked in at least one topic.
    pub connections: usize,
    /// The sum of all local counts.
    pub total_local: u64,
    /// Counter stripes.
    pub stripes: usize,
    /// The flusher.
    pub flush: FlushStats,
    /// Watches open on this node (`Node::watch`).
    pub watches: usize,
    /// Changes queued in those watches and not yet read: at most one per
    /// distinct topic per watch (the change feed coalesces).
    pub watch_backlog: usize,
    /// Node-wide cluster state; `None` on a local-only node.
    pub cluster: Option<ClusterStats>,
    /// Every known peer, by name.
    pub peers: Vec<PeerStats>,
    /// Where the metrics server listens (with the real port when
    /// `metrics_listen` had port 0); `None` when `metrics_listen` is unset.
    pub metrics_listen: Option<SocketAddr>,
}

fn hex(n: u64) -> String {
    format!("{n:016x}")
}

impl PeerStats {
    fn to_value(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "node_id": hex(self.node_id),
            "address": self.address,
            "state": self.state.as_str(),
            "counted": self.counted,
            "incarnation": hex(self.incarnation),
            "last_frame_age_ms": self.last_frame_age_ms,
            "state_age_ms": self.state_age_ms,
            "topics": self.topics,
            "total": self.total,
            "outbox_pending": self.outbox_pending,
            "outbox_overflows": self.outbox_overflows,
            "snapshots_sent": self.snapshots_sent,
            "connects": self.connects,
        });
        if let Value::Object(obj) = &mut v {
            self.traffic.json_into(obj);
        }
        v
    }
}

impl Stats {
    /// The stats as one line of JSON: what [`crate::Node::stats_json`] and
    /// `hc_stats_json` return (keys in sorted order).
    pub fn to_json(&self) -> String {
        let f = &self.flush;
        let mut v = json!({
            "node": self.node,
            "topics": self.topics,
            "tracked_pairs": self.tracked_pairs,
            "connections": self.connections,
            "total_local": self.total_local,
            "stripes": self.stripes,
            "flushes": f.flushes,
            "flush_us_avg": f.flush_us_avg,
            "flush_us_max": f.flush_us_max,
            "topics_drained": f.topics_drained,
            "topics_collected": f.topics_collected,
            "watches": self.watches,
            "watch_backlog": self.watch_backlog,
            "peers": self.peers_value(),
        });
        if let (Some(a), Value::Object(obj)) = (self.metrics_listen, &mut v) {
            obj.insert("metrics_listen".to_owned(), a.to_string().into());
        }
        if let (Some(c), Value::Object(obj)) = (&self.cluster, &mut v) {
            let cluster = json!({
                "node_id": hex(c.node_id),
                "incarnation": hex(c.incarnation),
                "cluster": c.cluster,
                "listen": c.listen.map(|a| a.to_string()),
                "peers_known": c.peers_known,
                "remote_topics": c.remote_topics,
                "remote_total": c.remote_total,
                "connections_open": c.connections_open,
                "connections_accepted": c.connections_accepted,
                "connections_dialed": c.connections_dialed,
                "connections_refused_busy": c.connections_refused_busy,
                "connections_refused_source": c.connections_refused_source,
                "handshakes_pending": c.handshakes_pending,
                "handshakes_timed_out": c.handshakes_timed_out,
                "auth_failures": c.auth_failures,
                "protocol_errors": c.protocol_errors,
                "peers_too_large": c.peers_too_large,
                "known_addresses": c.known_addresses,
                "addresses_dropped": c.addresses_dropped,
            });
            if let Value::Object(cluster) = cluster {
                obj.extend(cluster);
            }
        }
        v.to_string()
    }

    /// The `peers` array of [`Stats::to_json`], alone, as one line of JSON.
    pub fn peers_json(&self) -> String {
        self.peers_value().to_string()
    }

    fn peers_value(&self) -> Value {
        Value::Array(self.peers.iter().map(PeerStats::to_value).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerStats {
        PeerStats {
            name: "b".into(),
            node_id: 0xab,
            incarnation: 2,
            address: "127.0.0.1:7402".into(),
            state: PeerState::Up,
            counted: true,
            last_frame_age_ms: Some(5),
            state_age_ms: 6,
            topics: 7,
            total: 8,
            traffic: Traffic {
                bytes_in: 9,
                bytes_out: 10,
                frames_in: 11,
                frames_out: 12,
                state_frames_out: 20,
                topics_out: 13,
                state_bytes_out: 14,
                outbox_coalesces: 15,
            },
            outbox_pending: 16,
            outbox_overflows: 17,
            snapshots_sent: 18,
            connects: 19,
        }
    }

    /// Every field lands under its documented key, with its value.
    #[test]
    fn every_field_is_rendered_under_its_key() {
        let s = Stats {
            node: "a".into(),
            topics: 1,
            tracked_pairs: 2,
            connections: 3,
            total_local: 4,
            stripes: 5,
            flush: FlushStats {
                flushes: 6,
                flush_us_avg: 7,
                flush_us_max: 8,
                topics_drained: 9,
                topics_collected: 10,
                durations: FlushDurations::default(),
            },
            watches: 21,
            watch_backlog: 22,
            cluster: Some(ClusterStats {
                node_id: 0x1f,
                incarnation: 0x2e,
                cluster: "c".into(),
                listen: Some("127.0.0.1:7401".parse().unwrap()),
                peers_known: 11,
                remote_topics: 12,
                remote_total: 13,
                connections_open: 14,
                connections_accepted: 15,
                connections_dialed: 16,
                connections_refused_busy: 17,
                connections_refused_source: 23,
                handshakes_pending: 24,
                handshakes_timed_out: 25,
                auth_failures: 18,
                protocol_errors: 19,
                peers_too_large: 27,
                known_addresses: 20,
                addresses_dropped: 26,
            }),
            peers: vec![peer()],
            metrics_listen: None,
        };
        let peer = r#"{"address":"127.0.0.1:7402","bytes_in":9,"bytes_out":10,"connects":19,"counted":true,"frames_in":11,"frames_out":12,"incarnation":"0000000000000002","last_frame_age_ms":5,"name":"b","node_id":"00000000000000ab","outbox_coalesces":15,"outbox_overflows":17,"outbox_pending":16,"snapshots_sent":18,"state":"up","state_age_ms":6,"state_bytes_out":14,"state_frames_out":20,"topics":7,"topics_out":13,"total":8}"#;
        assert_eq!(s.peers_json(), format!("[{peer}]"));
        assert_eq!(
            s.to_json(),
            format!(
                r#"{{"addresses_dropped":26,"auth_failures":18,"cluster":"c","connections":3,"connections_accepted":15,"connections_dialed":16,"connections_open":14,"connections_refused_busy":17,"connections_refused_source":23,"flush_us_avg":7,"flush_us_max":8,"flushes":6,"handshakes_pending":24,"handshakes_timed_out":25,"incarnation":"000000000000002e","known_addresses":20,"listen":"127.0.0.1:7401","node":"a","node_id":"000000000000001f","peers":[{peer}],"peers_known":11,"peers_too_large":27,"protocol_errors":19,"remote_topics":12,"remote_total":13,"stripes":5,"topics":1,"topics_collected":10,"topics_drained":9,"total_local":4,"tracked_pairs":2,"watch_backlog":22,"watches":21}}"#
            )
        );
        let local = Stats { cluster: None, peers: vec![], ..s };
        let local_json = r#"{"connections":3,"flush_us_avg":7,"flush_us_max":8,"flushes":6,"node":"a","peers":[],"stripes":5,"topics":1,"topics_collected":10,"topics_drained":9,"total_local":4,"tracked_pairs":2,"watch_backlog":22,"watches":21}"#;
        assert_eq!(local.to_json(), local_json);
        // `metrics_listen` appears only when the metrics server runs.
        let served = Stats { metrics_listen: Some("127.0.0.1:9464".parse().unwrap()), ..local };
        assert_eq!(
            served.to_json(),
            local_json.replace(r#""node":"a","#, r#""metrics_listen":"127.0.0.1:9464","node":"a","#)
        );
    }

    /// A flush lands in the first bucket whose bound is at least its
    /// duration (Prometheus's `le`), and past the last bound in the last.
    #[test]
    fn flush_durations_fall_in_the_first_bucket_that_holds_them() {
        assert_eq!(FlushDurations::bucket_of(0), 0);
        assert_eq!(FlushDurations::bucket_of(10_000), 0);
        assert_eq!(FlushDurations::bucket_of(10_001), 1);
        assert_eq!(FlushDurations::bucket_of(1_000_000), 6);
        assert_eq!(FlushDurations::bucket_of(1_000_000_000), 15);
        assert_eq!(FlushDurations::bucket_of(1_000_000_001), 16);
        assert_eq!(FlushDurations::bucket_of(u64::MAX), FlushDurations::BUCKETS - 1);
        assert!(FlushDurations::BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn traffic_adds_field_by_field() {
        let t = peer().traffic;
        let sum = t + t;
        assert_eq!((sum.bytes_in, sum.outbox_coalesces, sum.state_bytes_out), (18, 30, 28));
        let live = TrafficCounters::default();
        live.bytes_out.fetch_add(3, Ordering::Relaxed);
        assert_eq!(live.load(), Traffic { bytes_out: 3, ..Traffic::default() });
    }
}
