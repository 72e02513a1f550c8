//! `headcount demo` runs, converges and exits 0, in a few seconds; `--json`
//! and `--plot` give a valid report and SVG; and the sample output in the
//! READMEs has the shape of the real output.

mod common;

use common::bin;
use common::serve::TempDir;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A short run: 3 nodes, 2 s of load.
const SHORT: &[&str] = &["--seconds", "2", "--users", "2000", "--topics", "50", "--churn", "2000"];

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
    // Plain lines that stay on screen: no carriage returns or escapes.
    assert!(!text.contains('\r') && !text.contains('\x1b'), "{text:?}");
    text
}

#[test]
fn a_one_node_demo_converges() {
    let (out, took) = demo(&[&["--nodes", "1"], SHORT].concat());
    let text = check_report(&out);
    assert!(text.contains("n/a (one node"), "{text}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn the_short_demo_converges_with_a_row_a_second() {
    let (out, took) = demo(SHORT);
    let text = check_report(&out);
    assert!(text.contains("node-3"), "{text}");
    assert!(text.contains("p50") && text.contains("p99"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().split(' ').nth(1) == Some("s")).collect();
    assert_eq!(rows.len(), 3, "rows at 0, 1 and 2 s:\n{text}");
    // The first row comes after the warm-up's first flush: every node exact.
    let first: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(&first[..2], ["0.0", "s"], "{}", rows[0]);
    assert_eq!(&first[4..7], ["0", "0", "0"], "first row: {}", rows[0]);
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn json_and_plot_are_valid() {
    let dir = TempDir::new("demo-plot");
    let svg = dir.path("demo.svg");
    let (out, _) = demo(&[SHORT, &["--json", "--plot", svg.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "--json prints one line, nothing else:\n{stdout}");
    let r: serde_json::Value = serde_json::from_str(&stdout).expect("--json is JSON");
    assert_eq!(r["result"], "converged");
    assert_eq!(r["params"]["nodes"], 3);
    assert_eq!(r["nodes"].as_array().unwrap().len(), 3);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["off"], serde_json::json!([0, 0, 0]));
    assert_eq!(rows[0]["truth"], 2000);
    assert!(rows[1]["ops_per_s"].as_f64().unwrap() > 0.0, "{}", rows[1]);
    for row in rows {
        assert_eq!(row["off"].as_array().unwrap().len(), 3, "{row}");
    }
    let p = &r["propagation"];
    assert!(p["observations"].as_u64().unwrap() > 0 && p["p50_ms"].as_f64().unwrap() > 0.0, "{p}");
    assert!(r["converged_ms"].as_f64().is_some());
    assert!(r["wire"]["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(r["warm_up"]["joins"], 2000);
    assert!(r["operations"].as_u64().unwrap() > 0);

    let text = std::fs::read_to_string(&svg).expect("--plot wrote the SVG");
    let doc = roxmltree::Document::parse(&text).expect("the SVG is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> =
        doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
    for want in ["node-1", "node-2", "node-3", "each node's total minus the truth, while the load runs"] {
        assert!(texts.contains(&want), "the SVG has no text {want:?}: {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t.starts_with("propagation: probe change") && t.contains(" observations)")),
        "{texts:?}"
    );
    // One line per node (plotters draws a series as a polyline), and bars.
    let lines = doc.descendants().filter(|n| n.has_tag_name("polyline")).count();
    assert!(lines >= 3, "{lines} polylines");
    let bars = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!(bars >= 2, "{bars} rects");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [&["--nodes", "0"][..], &["--topics", "0"], &["--zipf", "nan"], &["--users", "x"]] {
        let (out, _) = demo(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// A plot path that cannot be written fails the run, after the report.
#[test]
fn an_unwritable_plot_is_an_error() {
    let (out, _) = demo(&[&["--nodes", "1", "--plot", "/nonexistent/dir/x.svg"], SHORT].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot draw /nonexistent/dir/x.svg"), "{err}");
}

// ---- the READMEs' samples against the real output -----------------------

/// A line with every number (and its unit) replaced by `#`, runs of
/// spaces squeezed: what stays is the format.
fn skeleton(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        let after_space = out.is_empty() || out.ends_with(' ') || out.ends_with('(');
        let signed = (c == '+' || c == '-') && after_space && chars.peek().is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || signed {
            // Digits, and separators between digits (1,000 · 2.5 · 127.0.0.1:80).
            loop {
                let mut ahead = chars.clone();
                match (ahead.next(), ahead.next()) {
                    (Some(d), _) if d.is_ascii_digit() => {}
                    (Some(',' | '.' | ':'), Some(d)) if d.is_ascii_digit() => {
                        chars.next();
                    }
                    _ => break,
                }
                chars.next();
            }
            // A unit after one space: part of the number.
            let rest: String = chars.clone().collect();
            for unit in [" µs", " ms", " s", " B", " KiB", " MiB", " GiB", "%"] {
                if rest.starts_with(unit) && !rest[unit.len()..].starts_with(|x: char| x.is_alphanumeric()) {
                    for _ in 0..unit.chars().count() {
                        chars.next();
                    }
                    break;
                }
            }
            out.push('#');
        } else if c == ' ' {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The ```text block after `marker` in `file` (a path from the repo root).
fn sample(file: &str, marker: &str) -> String {
    let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let after = &text[text.find(marker).unwrap_or_else(|| panic!("{file} has no {marker}"))..];
    let start = after.find("```text\n").expect("a text block after the marker") + 8;
    let len = after[start..].find("```").expect("the block ends");
    after[start..start + len].to_owned()
}

#[test]
fn the_readme_samples_have_the_real_output_format() {
    let (out, _) = demo(SHORT);
    let real = check_report(&out);
    let real_shapes: Vec<String> = real.lines().map(skeleton).collect();
    let header = real.lines().find(|l| l.trim_start().starts_with("elapsed")).expect("a column header");
    for (file, marker) in [("cli/README.md", "<!-- demo-sample"), ("README.md", "<!-- demo-sample")] {
        let sample = sample(file, marker);
        assert!(sample.lines().any(|l| l == header), "{file}: the column header is not\n{header}\n{sample}");
        for line in sample.lines().filter(|l| !l.starts_with("$ ")) {
            let shape = skeleton(line);
            assert!(
                real_shapes.contains(&shape),
                "{file}: a sample line has no counterpart in the real output:\n{line}\n({shape})\nreal output:\n{real}"
            );
        }
        if file == "cli/README.md" {
            // The full sample shows every kind of line the real output has.
            let sample_shapes: Vec<String> = sample.lines().map(skeleton).collect();
            for line in real.lines() {
                assert!(
                    sample_shapes.contains(&skeleton(line)),
                    "{file}: the real output has a line the sample lacks:\n{line}\n({})",
                    skeleton(line)
                );
            }
        }
    }
}

#[test]
fn skeletons_keep_the_format_and_drop_the_numbers() {
    assert_eq!(skeleton("     1.0 s     19,824    100,596      -29        0   +1,234    104 ms"), "# # # # # # #");
    assert_eq!(skeleton("  node-1     127.0.0.1:44973  (seed)"), "node-# # (seed)");
    assert_eq!(skeleton("     0.0 s          -    100,000        0"), "# - # #");
    assert_eq!(
        skeleton("  wire bytes    3.0 B per topic update sent (21.8 KiB out for 7,556 updates)"),
        "wire bytes # per topic update sent (# out for # updates)"
    );
    assert_eq!(skeleton("topics      Zipf s=1: room:1 gets 19.3% of joins"), "topics Zipf s=#: room:# gets # of joins");
    assert_eq!(skeleton("lag 850 µs; ops/s"), "lag #; ops/s");
}
