//! The demo's result: everything it measured, rendered as the text summary
//! or as one JSON object (`--json`).

use super::probe;
use super::progress::Trace;
use crate::fmt::{bytes, duration, percentile, thousands};
use crate::stats::Wire;
use serde_json::{json, Value};
use std::time::Duration;

/// The run's parameters, as given.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) nodes: u16,
    pub(crate) users: u64,
    pub(crate) topics: u64,
    pub(crate) churn: u64,
    pub(crate) seconds: u64,
    pub(crate) zipf: f64,
    pub(crate) workers: u16,
    pub(crate) flush: Duration,
    pub(crate) seed: u64,
}

/// Everything the demo measured.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) params: Params,
    /// Each node's name and peer address.
    pub(crate) nodes: Vec<(String, Option<String>)>,
    /// How long the cluster took to form (`None`: one node).
    pub(crate) formed_in: Option<Duration>,
    pub(crate) warm_joins: u64,
    pub(crate) warm_took: Duration,
    /// How long after the warm-up every node's total was the truth.
    pub(crate) warm_agreed: Option<Duration>,
    pub(crate) trace: Trace,
    pub(crate) load_time: Duration,
    pub(crate) ops: u64,
    /// The truth when the load stopped.
    pub(crate) pairs: u64,
    pub(crate) converged: Option<Duration>,
    pub(crate) converge_timeout: Duration,
    /// The counts still wrong when the check gave up.
    pub(crate) wrong: Vec<String>,
    pub(crate) probe: probe::Latencies,
    /// Summed wire counters before and after the load (`None`: no counters).
    pub(crate) wire: (Option<Wire>, Option<Wire>),
    pub(crate) local_wrong: usize,
    pub(crate) anomalies: u64,
    pub(crate) first_anomaly: Option<String>,
}

impl Report {
    /// True when everything converged and checked out.
    pub(crate) fn ok(&self) -> bool {
        self.converged.is_some() && self.local_wrong == 0 && self.anomalies == 0 && self.probe.errors.is_empty()
    }

    fn sorted_lags(&self) -> Vec<Duration> {
        let mut s = self.trace.lags.clone();
        s.sort_unstable();
        s
    }

    fn average_rate(&self) -> f64 {
        if self.load_time.is_zero() {
            0.0
        } else {
            self.ops as f64 / self.load_time.as_secs_f64()
        }
    }

    /// The summary block after the load, one line each.
    pub(crate) fn summary_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut row = |label: &str, value: String| out.push(format!("  {label:<13} {value}"));
        row(
            "operations",
            format!(
                "{} joins+leaves in {} (+{} warm-up joins)",
                thousands(self.ops),
                duration(self.load_time),
                thousands(self.warm_joins)
            ),
        );
        row(
            "average rate",
            format!(
                "{} ops/s (asked for {})",
                thousands(self.average_rate().round() as u64),
                thousands(self.params.churn)
            ),
        );
        row(
            "peak rate",
            match self.trace.peak() {
                Some(p) => format!("{} ops/s (busiest 1 s window)", thousands(p.round() as u64)),
                None => "n/a (the load ran under 1 s)".into(),
            },
        );
        row("propagation", self.latency_line());
        row("wire bytes", wire_line(self.wire.0, self.wire.1, self.nodes.len() - 1));
        row(
            "converge",
            match self.converged {
                Some(t) => {
                    format!("{} after the load stopped (flush every {})", duration(t), duration(self.params.flush))
                }
                None => format!("did not converge within {}", duration(self.converge_timeout)),
            },
        );
        row(
            "local counts",
            if self.local_wrong == 0 {
                "exact on every node".to_owned()
            } else {
                format!("{} (node, topic) local counts differ from the truth", self.local_wrong)
            },
        );
        if self.anomalies > 0 {
            row(
                "anomalies",
                format!(
                    "{} unexpected answers from the library, first: {}",
                    self.anomalies,
                    self.first_anomaly.clone().unwrap_or_default()
                ),
            );
        }
        for e in self.probe.errors.iter().take(3) {
            row("probe error", e.clone());
        }
        out.push(String::new());
        out.push(format!("  {:<13} {}", "result", if self.ok() { "CONVERGED ✓" } else { "FAILED ✗" }));
        out
    }

    fn latency_line(&self) -> String {
        if self.nodes.len() < 2 {
            return "n/a (one node: nothing to propagate to)".into();
        }
        let s = self.sorted_lags();
        let (Some(p50), Some(p99), Some(max)) = (percentile(&s, 50.0), percentile(&s, 99.0), s.last()) else {
            return format!("n/a (no probe arrived; {} timed out)", self.probe.timeouts);
        };
        let lost = if self.probe.timeouts > 0 {
            format!(", {} lost after {}", self.probe.timeouts, duration(super::PROBE_TIMEOUT))
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

    /// The whole report as one JSON object (durations in milliseconds).
    pub(crate) fn json(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p = &self.params;
        let lags = self.sorted_lags();
        let pct = |q: f64| percentile(&lags, q).map(ms);
        let wire = match self.wire {
            (Some(b), Some(a)) => {
                let d = a.since(b);
                json!({"bytes_out": d.bytes_out, "topics_out": d.topics_out, "topics_drained": d.topics_drained})
            }
            _ => Value::Null,
        };
        json!({
            "params": {
                "nodes": p.nodes, "users": p.users, "topics": p.topics, "churn_per_s": p.churn,
                "seconds": p.seconds, "zipf": p.zipf, "workers": p.workers,
                "flush_interval_ms": ms(p.flush), "seed": p.seed,
            },
            "nodes": self.nodes.iter().map(|(n, a)| json!({"name": n, "address": a})).collect::<Vec<_>>(),
            "formed_ms": self.formed_in.map(ms),
            "warm_up": {"joins": self.warm_joins, "ms": ms(self.warm_took), "agreed_ms": self.warm_agreed.map(ms)},
            "rows": self.trace.rows.iter().map(|r| json!({
                "elapsed_s": r.sample.at.as_secs_f64(),
                "ops_per_s": r.rate,
                "truth": r.sample.truth,
                "off": r.sample.off,
                "lag_ms": r.lag.map(ms),
                "lag_samples": r.lag_samples,
            })).collect::<Vec<_>>(),
            "load_s": self.load_time.as_secs_f64(),
            "operations": self.ops,
            "average_ops_per_s": self.average_rate(),
            "peak_ops_per_s": self.trace.peak(),
            "pairs": self.pairs,
            "converged_ms": self.converged.map(ms),
            "not_converged": self.wrong.iter().take(20).collect::<Vec<_>>(),
            "propagation": {
                "observations": lags.len(), "timeouts": self.probe.timeouts,
                "p50_ms": pct(50.0), "p99_ms": pct(99.0), "max_ms": lags.last().copied().map(ms),
                "poll_ms": ms(probe::POLL),
            },
            "wire": wire,
            "local_mismatches": self.local_wrong,
            "anomalies": self.anomalies,
            "probe_errors": self.probe.errors,
            "result": if self.ok() { "converged" } else { "failed" },
        })
    }
}

/// The wire cost of the load phase, from the nodes' own counters only.
pub(crate) fn wire_line(before: Option<Wire>, after: Option<Wire>, peers: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_is_na_without_counters() {
        assert!(wire_line(None, None, 2).starts_with("n/a (a node's stats"));
        assert!(wire_line(None, None, 0).starts_with("n/a (one node"));
        let w = |b, t, d| Some(Wire { bytes_out: b, topics_out: t, topics_drained: d });
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
}
