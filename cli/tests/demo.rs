//! `headcount demo` runs, converges and exits 0, in a few seconds.

mod common;

use common::bin;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn demo(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = bin().arg("demo").args(args).stdin(Stdio::null()).output().expect("run headcount demo");
    (out, start.elapsed())
}

fn check_report(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed ({:?})\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for label in ["operations", "peak rate", "propagation", "wire bytes", "converge", "result"] {
        assert!(text.contains(label), "report lacks {label:?}:\n{text}");
    }
    assert!(text.contains("CONVERGED"), "{text}");
    // Not a terminal: plain lines, no carriage returns or escapes.
    assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
    text
}

#[test]
fn a_one_node_demo_converges() {
    let (out, took) = demo(&["--nodes", "1", "--seconds", "2", "--users", "2000", "--topics", "50", "--churn", "2000"]);
    let text = check_report(&out);
    assert!(text.contains("n/a (one node"), "{text}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn the_short_demo_converges() {
    let (out, took) = demo(&["--seconds", "2", "--users", "2000", "--topics", "50", "--churn", "2000"]);
    let text = check_report(&out);
    assert!(text.contains("node-3"), "{text}");
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [&["--nodes", "0"][..], &["--topics", "0"], &["--zipf", "nan"], &["--users", "x"]] {
        let (out, _) = demo(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
