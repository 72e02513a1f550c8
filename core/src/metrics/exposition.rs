//! `GET /metrics`: a node's [`Stats`], read at scrape time, written in the
//! Prometheus text format (0.0.4) or OpenMetrics 1.0 by the
//! `prometheus-client` crate's encoders, through one custom collector.
//!
//! Every series is node-level: nothing is labelled by topic (a node may hold
//! millions), only by peer (`peer`, `peer_id`: bounded by the cluster's
//! size; `peer_id` keeps two peers that claim the same name apart). Series
//! of the cluster appear only on a node with a `secret`. docs/OPERATIONS.md
//! documents every series this file writes, and a test checks that it does.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, text, DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::stats::{ClusterStats, FlushDurations, PeerState, PeerStats, Stats};

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// The Prometheus text format, version 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, when the scraper's `Accept` names it (as
    /// Prometheus's does by default).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub(super) fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a body in this format.
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// `stats` in `format`; an error only if an encoder refuses a value.
pub(super) fn render(stats: Stats, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatsCollector(stats)));
    let mut out = String::with_capacity(16 * 1024);
    match format {
        Format::Prometheus => prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

/// How a series gets its value from a `T` ([`Stats`], [`ClusterStats`] or
/// [`PeerStats`]).
enum Value<T> {
    /// A counter: only grows (or restarts from 0 with the process).
    Counter(fn(&T) -> u64),
    /// A gauge: goes up and down.
    Gauge(fn(&T) -> u64),
    /// A gauge of milliseconds, written in seconds; no sample when `None`.
    Seconds(fn(&T) -> Option<u64>),
}

/// One row of a series table: the name (without the unit and `_total`
/// suffixes the encoder adds), its help text, unit and value.
struct Series<T> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: Value<T>,
}

impl<T> Series<T> {
    const fn new(name: &'static str, help: &'static str, value: Value<T>) -> Self {
        let unit = match value {
            Value::Seconds(_) => Some(Unit::Seconds),
            Value::Counter(_) | Value::Gauge(_) => None,
        };
        Series { name, help, unit, value }
    }

    const fn bytes(name: &'static str, help: &'static str, value: fn(&T) -> u64) -> Self {
        Series { name, help, unit: Some(Unit::Bytes), value: Value::Counter(value) }
    }

    fn metric_type(&self) -> MetricType {
        match self.value {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) | Value::Seconds(_) => MetricType::Gauge,
        }
    }

    /// Starts this series: its HELP and TYPE lines.
    fn describe<'s>(&'s self, e: &'s mut DescriptorEncoder<'_>) -> Result<MetricEncoder<'s>, fmt::Error> {
        e.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.metric_type())
    }

    /// Writes this series' sample for `t` (none for a missing value).
    fn sample(&self, t: &T, m: MetricEncoder<'_>) -> fmt::Result {
        match self.value {
            Value::Counter(f) => ConstCounter::new(f(t)).encode(m),
            Value::Gauge(f) => ConstGauge::new(f(t)).encode(m),
            Value::Seconds(f) => match f(t) {
                Some(ms) => ConstGauge::new(ms as f64 / 1000.0).encode(m),
                None => Ok(()),
            },
        }
    }

    /// Whether `t` has a sample of this series.
    fn has_sample(&self, t: &T) -> bool {
        !matches!(self.value, Value::Seconds(f) if f(t).is_none())
    }
}

use Value::{Counter, Gauge, Seconds};

/// Series of every node, read from [`Stats`].
#[rustfmt::skip]
static NODE: &[Series<Stats>] = &[
    Series::new("headcount_topics", "Topics that exist on this node.", Gauge(|s| s.topics as u64)),
    Series::new("headcount_tracked_pairs", "(topic, connection) pairs tracked on this node.", Gauge(|s| s.tracked_pairs as u64)),
    Series::new("headcount_tracked_connections", "Connections tracked in at least one topic on this node.", Gauge(|s| s.connections as u64)),
    Series::new("headcount_local_count", "The sum of this node's own counts over all topics.", Gauge(|s| s.total_local)),
    Series::new("headcount_flush_topics_drained", "Topic changes drained by flushes (each is shipped once to every peer).", Counter(|s| s.flush.topics_drained)),
    Series::new("headcount_topics_collected", "Topics garbage-collected after sitting at zero for gc_after_ms.", Counter(|s| s.flush.topics_collected)),
    Series::new("headcount_watches", "Change-feed watches open on this node.", Gauge(|s| s.watches as u64)),
    Series::new("headcount_watch_backlog", "Changes queued in this node's watches and not yet read (at most one per topic per watch).", Gauge(|s| s.watch_backlog as u64)),
];

/// Series of a node with a `secret`, read from [`ClusterStats`].
#[rustfmt::skip]
static CLUSTER: &[Series<ClusterStats>] = &[
    Series::new("headcount_remote_topics", "Distinct topics reported by peers.", Gauge(|c| c.remote_topics as u64)),
    Series::new("headcount_remote_count", "The sum of every counted peer's counts.", Gauge(|c| c.remote_total)),
    Series::new("headcount_peer_connections", "Peer connections open now (handshaking ones included).", Gauge(|c| c.connections_open as u64)),
    Series::new("headcount_peer_connections_accepted", "Peer connections accepted (refused ones included).", Counter(|c| c.connections_accepted)),
    Series::new("headcount_peer_connections_dialed", "Peer connections dialed.", Counter(|c| c.connections_dialed)),
    Series::new("headcount_peer_connections_refused_busy", "Peer connections closed at accept: too many handshakes pending.", Counter(|c| c.connections_refused_busy)),
    Series::new("headcount_peer_connections_refused_source", "Peer connections closed at accept: too many handshakes pending from their source address.", Counter(|c| c.connections_refused_source)),
    Series::new("headcount_peer_handshakes_pending", "Accepted peer connections in their handshake now.", Gauge(|c| c.handshakes_pending as u64)),
    Series::new("headcount_peer_handshakes_timed_out", "Peer handshakes not finished within handshake_timeout_ms.", Counter(|c| c.handshakes_timed_out)),
    Series::new("headcount_peer_addresses_dropped", "Peer addresses learned and not kept: malformed, or the address table was full.", Counter(|c| c.addresses_dropped)),
    Series::new("headcount_auth_failures", "Peer handshakes that failed authentication.", Counter(|c| c.auth_failures)),
    Series::new("headcount_protocol_errors", "Peer connections closed for a protocol error.", Counter(|c| c.protocol_errors)),
    Series::new("headcount_peers_too_large", "Peers refused for passing a per-peer limit (max_topic_len, max_peer_topics, max_peer_topic_bytes).", Counter(|c| c.peers_too_large)),
];

/// Series of each peer, read from its [`PeerStats`], labelled `peer` and
/// `peer_id`.
#[rustfmt::skip]
static PEER: &[Series<PeerStats>] = &[
    Series::new("headcount_peer_up", "1 while the peer is up (connected and synced), else 0.", Gauge(|p| u64::from(p.state == PeerState::Up))),
    Series::new("headcount_peer_counted", "1 while the peer's counts are summed into count(), else 0.", Gauge(|p| u64::from(p.counted))),
    Series::new("headcount_peer_last_frame_age", "Time since this node last received a frame from the peer (docs/OPERATIONS.md: propagation lag).", Seconds(|p| p.last_frame_age_ms)),
    Series::new("headcount_peer_reported_topics", "Topics the peer reports non-zero.", Gauge(|p| p.topics as u64)),
    Series::new("headcount_peer_reported_count", "The sum of the peer's reported counts.", Gauge(|p| p.total)),
    Series::bytes("headcount_peer_received", "Bytes received from the peer.", |p| p.traffic.bytes_in),
    Series::bytes("headcount_peer_sent", "Bytes sent to the peer.", |p| p.traffic.bytes_out),
    Series::new("headcount_peer_received_frames", "Frames received from the peer.", Counter(|p| p.traffic.frames_in)),
    Series::new("headcount_peer_sent_frames", "Frames sent to the peer.", Counter(|p| p.traffic.frames_out)),
    Series::new("headcount_peer_sent_state_frames", "SNAPSHOT and DELTA frames sent to the peer.", Counter(|p| p.traffic.state_frames_out)),
    Series::new("headcount_peer_sent_topic_updates", "Topic entries in the SNAPSHOT and DELTA frames sent to the peer.", Counter(|p| p.traffic.topics_out)),
    Series::new("headcount_peer_outbox_coalesces", "Outbox entries overwritten by a newer count before they were sent.", Counter(|p| p.traffic.outbox_coalesces)),
    Series::new("headcount_peer_outbox_pending", "Outbox entries waiting for the peer's writer.", Gauge(|p| p.outbox_pending as u64)),
    Series::new("headcount_peer_outbox_overflows", "Times the peer's outbox overflowed into a snapshot (this connection; restarts at 0 on reconnect).", Counter(|p| p.outbox_overflows)),
    Series::new("headcount_peer_connects", "Connections to the peer that authenticated.", Counter(|p| p.connects)),
];

/// The collector: one scrape's stats, written as series.
#[derive(Debug)]
struct StatsCollector(Stats);

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.0;
        let mut info = vec![("node".to_owned(), s.node.clone())];
        if let Some(c) = &s.cluster {
            info.push(("cluster".to_owned(), c.cluster.clone()));
            info.push(("node_id".to_owned(), format!("{:016x}", c.node_id)));
        }
        let help = "This node's name, and on a node with a secret its cluster and node id.";
        let info = Info::new(info);
        info.encode(e.encode_descriptor("headcount_node", help, None, info.metric_type())?)?;
        let flush = Histogram(&s.flush.durations);
        let (help, unit) = ("How long each flush took.", Some(Unit::Seconds));
        flush.encode(e.encode_descriptor("headcount_flush_duration", help, unit.as_ref(), flush.metric_type())?)?;
        for series in NODE {
            series.sample(s, series.describe(&mut e)?)?;
        }
        let Some(c) = &s.cluster else { return Ok(()) };
        let mut by_state = e.encode_descriptor("headcount_peers", "Known peers, by state.", None, MetricType::Gauge)?;
        for state in PeerState::ALL {
            let n = s.peers.iter().filter(|p| p.state == state).count() as u64;
            ConstGauge::new(n).encode(by_state.encode_family(&[("state", state.as_str())])?)?;
        }
        let counted = ConstGauge::new(s.peers.iter().filter(|p| p.counted).count() as u64);
        let help = "Peers whose counts are summed into count() now.";
        counted.encode(e.encode_descriptor("headcount_peers_counted", help, None, MetricType::Gauge)?)?;
        for series in CLUSTER {
            series.sample(c, series.describe(&mut e)?)?;
        }
        for series in PEER {
            let mut m = series.describe(&mut e)?;
            for p in s.peers.iter().filter(|p| series.has_sample(p)) {
                let id = format!("{:016x}", p.node_id);
                series.sample(p, m.encode_family(&[("peer", p.name.as_str()), ("peer_id", id.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// The flush-duration histogram, in seconds.
#[derive(Debug)]
struct Histogram<'a>(&'a FlushDurations);

impl EncodeMetric for Histogram<'_> {
    fn encode(&self, mut e: MetricEncoder<'_>) -> fmt::Result {
        let d = self.0;
        let bounds = FlushDurations::BOUNDS_US.iter().map(|&us| us as f64 / 1e6).chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(d.buckets).collect();
        e.encode_histogram::<NoLabelSet>(d.sum_ns as f64 / 1e9, d.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
