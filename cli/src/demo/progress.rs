//! The progress rows: while the load runs, one row a second, printed as a
//! plain line that stays on screen (nothing is redrawn), each showing the
//! signal rather than raw counts:
//!
//! * `truth`: the (topic, user) pairs the simulated users hold right now;
//! * `node-N`: that node's cluster-wide total minus the truth (0: exact;
//!   the flush interval bounds how far behind a node can be);
//! * `lag`: the slowest probe change ([`super::probe`]) that reached every
//!   other node during that second.
//!
//! With more than [`PER_NODE_MAX`] nodes the node columns become the lowest
//! and highest distance. Between rows the distances are sampled every
//! tick for `--plot`.

use crate::fmt::{duration, thousands};
use headcount::Node;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// The most nodes shown one column each.
const PER_NODE_MAX: usize = 6;

/// Every node's distance from the truth at one instant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Since the load started.
    pub(crate) at: Duration,
    pub(crate) truth: u64,
    /// Each node's total minus the truth (`None`: the node did not answer).
    pub(crate) off: Vec<Option<i64>>,
}

impl Sample {
    /// Reads every node's total right after the truth.
    pub(crate) fn take(at: Duration, truth: u64, nodes: &[Node]) -> Self {
        let off = nodes.iter().map(|n| n.total().ok().map(|t| t as i64 - truth as i64)).collect();
        Self { at, truth, off }
    }
}

/// One progress row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) sample: Sample,
    /// Joins+leaves per second since the previous row (`None` on the first).
    pub(crate) rate: Option<f64>,
    /// How long the rate was measured over.
    pub(crate) window: Duration,
    /// The slowest probe observation since the previous row, and how many.
    pub(crate) lag: Option<Duration>,
    pub(crate) lag_samples: usize,
}

/// What the load phase recorded.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) rows: Vec<Row>,
    /// One per tick, for the plot.
    pub(crate) samples: Vec<Sample>,
    /// Every probe observation, in arrival order.
    pub(crate) lags: Vec<Duration>,
}

impl Trace {
    /// The busiest second (rows measured over at least 0.95 s).
    pub(crate) fn peak(&self) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| r.window >= Duration::from_millis(950))
            .filter_map(|r| r.rate)
            .max_by(f64::total_cmp)
    }
}

/// Collects samples and rows, printing each row when `print`.
#[derive(Debug)]
pub(crate) struct Progress {
    trace: Trace,
    per_node: bool,
    print: bool,
    /// (at, ops) of the last row.
    last: Option<(Duration, u64)>,
    /// Probe observations since the last row.
    window: Vec<Duration>,
}

impl Progress {
    /// Prints the legend and the column header (when `print`).
    pub(crate) fn new(names: &[&str], print: bool) -> Self {
        let per_node = names.len() <= PER_NODE_MAX;
        if print {
            println!(
                "each second: truth = (topic, user) pairs held now · {} = {} total minus the truth",
                if per_node { "node-N" } else { "min/max off" },
                if per_node { "the node's" } else { "the nodes' lowest/highest" }
            );
            println!("             lag = slowest probe change to reach every other node in that second");
            println!();
            println!("{}", header(names, per_node));
        }
        Self { trace: Trace::default(), per_node, print, last: None, window: Vec::new() }
    }

    /// Records a sample; with `row`, also a row (printed at once).
    pub(crate) fn tick(&mut self, sample: Sample, ops: u64, probe: &Receiver<Duration>, row: bool) {
        let arrived: Vec<Duration> = probe.try_iter().collect();
        self.trace.lags.extend(&arrived);
        self.window.extend(arrived);
        if row {
            let at = sample.at;
            let (rate, window) = match self.last {
                Some((t, o)) if at > t => {
                    let w = at - t;
                    (Some(ops.saturating_sub(o) as f64 / w.as_secs_f64()), w)
                }
                _ => (None, Duration::ZERO),
            };
            let row = Row {
                sample: sample.clone(),
                rate,
                window,
                lag: self.window.iter().max().copied(),
                lag_samples: self.window.len(),
            };
            self.window.clear();
            self.last = Some((at, ops));
            if self.print {
                println!("{}", format_row(&row, self.per_node));
            }
            self.trace.rows.push(row);
        }
        self.trace.samples.push(sample);
    }

    /// The trace, with the probe observations that arrived since the last tick.
    pub(crate) fn finish(mut self, probe: &Receiver<Duration>) -> Trace {
        self.trace.lags.extend(probe.try_iter());
        if self.print {
            println!();
        }
        self.trace
    }
}

/// Column widths: elapsed, ops/s, truth, a node, lag.
const W: [usize; 5] = [8, 10, 10, 8, 9];

/// The column header.
pub(crate) fn header(names: &[&str], per_node: bool) -> String {
    let mut h = format!("  {:>w0$} {:>w1$} {:>w2$}", "elapsed", "ops/s", "truth", w0 = W[0], w1 = W[1], w2 = W[2]);
    let cols: Vec<&str> = if per_node { names.to_vec() } else { vec!["min off", "max off"] };
    for c in cols {
        h.push_str(&format!(" {c:>w$}", w = W[3].max(c.len())));
    }
    h.push_str(&format!(" {:>w$}", "lag", w = W[4]));
    h
}

/// One row, aligned under [`header`] (node names up to [`W`]`[3]` wide).
pub(crate) fn format_row(row: &Row, per_node: bool) -> String {
    let s = &row.sample;
    let mut line = format!(
        "  {:>w0$} {:>w1$} {:>w2$}",
        format!("{:.1} s", s.at.as_secs_f64()),
        row.rate.map_or_else(|| "-".to_owned(), |r| thousands(r.round() as u64)),
        thousands(s.truth),
        w0 = W[0],
        w1 = W[1],
        w2 = W[2],
    );
    let cols: Vec<Option<i64>> = if per_node {
        s.off.clone()
    } else {
        let known = s.off.iter().flatten();
        vec![known.clone().min().copied(), known.max().copied()]
    };
    for c in cols {
        line.push_str(&format!(" {:>w$}", signed(c), w = W[3]));
    }
    line.push_str(&format!(" {:>w$}", row.lag.map_or_else(|| "-".to_owned(), duration), w = W[4]));
    line
}

/// `+12`, `0`, `-3`; `-` for no answer.
fn signed(n: Option<i64>) -> String {
    match n {
        None => "-".to_owned(),
        Some(0) => "0".to_owned(),
        Some(n) if n > 0 => format!("+{}", thousands(n as u64)),
        Some(n) => format!("-{}", thousands(n.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn sample(ms: u64, truth: u64, off: &[Option<i64>]) -> Sample {
        Sample { at: Duration::from_millis(ms), truth, off: off.to_vec() }
    }

    #[test]
    fn rows_are_aligned_under_the_header() {
        let names = ["node-1", "node-2", "node-3"];
        let h = header(&names, true);
        assert_eq!(h, "   elapsed      ops/s      truth   node-1   node-2   node-3       lag");
        let row = Row {
            sample: sample(1000, 100_596, &[Some(-29), Some(0), Some(1_234)]),
            rate: Some(19_824.4),
            window: Duration::from_secs(1),
            lag: Some(Duration::from_micros(104_200)),
            lag_samples: 3,
        };
        let r = format_row(&row, true);
        assert_eq!(r, "     1.0 s     19,824    100,596      -29        0   +1,234    104 ms");
        assert_eq!(r.len(), h.len());
        let first = Row { rate: None, lag: None, lag_samples: 0, window: Duration::ZERO, ..row.clone() };
        assert!(format_row(&first, true).contains("         -    100,596"));
        assert!(format_row(&first, true).ends_with("         -"));
        let many = format_row(&Row { sample: sample(0, 5, &[Some(3), None, Some(-2)]), ..first }, false);
        assert!(many.ends_with("       -2       +3         -"), "{many:?}");
        assert_eq!(header(&names, false).len(), many.len());
    }

    #[test]
    fn rows_rate_over_their_window_and_keep_their_lag() {
        let (tx, rx) = mpsc::channel();
        let mut p = Progress::new(&["a"], false);
        p.tick(sample(0, 10, &[Some(0)]), 0, &rx, true);
        tx.send(Duration::from_millis(40)).unwrap();
        p.tick(sample(500, 10, &[Some(0)]), 600, &rx, false);
        tx.send(Duration::from_millis(90)).unwrap();
        tx.send(Duration::from_millis(20)).unwrap();
        p.tick(sample(1000, 12, &[Some(-2)]), 2000, &rx, true);
        p.tick(sample(1900, 12, &[Some(0)]), 2900, &rx, true);
        tx.send(Duration::from_millis(7)).unwrap();
        let t = p.finish(&rx);
        assert_eq!(t.samples.len(), 4);
        assert_eq!(t.rows.len(), 3);
        assert_eq!((t.rows[0].rate, t.rows[0].lag), (None, None));
        assert_eq!(t.rows[1].rate, Some(2000.0));
        assert_eq!((t.rows[1].lag, t.rows[1].lag_samples), (Some(Duration::from_millis(90)), 3));
        assert_eq!(t.rows[2].lag, None);
        assert_eq!(t.lags.len(), 4);
        assert_eq!(t.peak(), Some(2000.0), "the 0.9 s row does not count");
    }
}
