//! `headcount serve`'s stderr: `log_format=json` gives one JSON object per
//! line with every field, the core's lines and the CLI's alike, and
//! `HEADCOUNT_LOG` filters by level.

mod common;

use common::serve::{is_log_time, serve_cmd, ApiClient, ServeProc, TempDir};
use common::SECRET;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

/// A loopback port that nothing listens on (bound, then freed).
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn log_format_json_lines_parse_with_ts_level_target_node_and_message() {
    let dir = TempDir::new("json");
    let sock = dir.path("api.sock");
    let api = format!("unix:{}", sock.display());
    let args = ["--node-name", "j", "--listen", "127.0.0.1:0", "--log-format", "json", "--api", &api];
    let mut s = ServeProc::start_until(&args, &[("HEADCOUNT_SECRET", SECRET)], "\"ready: listening on");
    drop(ApiClient::unix(&sock));
    s.signal(libc::SIGTERM);
    assert!(s.wait(Duration::from_secs(10)).expect("serve exits after SIGTERM").success());
    s.wait_log("\"closed\"");
    let log = s.log();
    let mut targets = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        let o = v.as_object().unwrap_or_else(|| panic!("not an object: {line:?}"));
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["level", "message", "node", "target", "ts"], "{line}");
        assert!(o["ts"].as_str().is_some_and(is_log_time), "{line}");
        assert!(matches!(o["level"].as_str(), Some("error" | "warn" | "info" | "debug")), "{line}");
        assert_eq!(o["node"], "j", "{line}");
        assert!(o["message"].as_str().is_some_and(|m| !m.is_empty()), "{line}");
        let target = o["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("headcount::"), "{line}");
        targets.push(target.to_owned());
    }
    assert!(targets.iter().any(|t| t == "headcount::cli"), "the CLI's lines: {log}");
    assert!(targets.iter().any(|t| t.starts_with("headcount::cluster")), "the core's lines: {log}");
}

/// The stderr of a `serve` that seeds a closed port, run until its API
/// answers and then SIGTERM.
fn stderr_at(level: &str) -> String {
    let dir = TempDir::new(&format!("level-{level}"));
    let sock = dir.path("api.sock");
    let api = format!("unix:{}", sock.display());
    let seed = closed_port();
    let args = ["--node-name", "f", "--seeds", &seed, "--api", &api];
    let child = serve_cmd(&args, &[("HEADCOUNT_SECRET", SECRET), ("HEADCOUNT_LOG", level)])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn headcount serve");
    drop(ApiClient::unix(&sock));
    common::signal_child(&child, libc::SIGTERM);
    let out = child.wait_with_output().expect("serve exits");
    assert!(out.status.success(), "{:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn headcount_log_filters_by_level() {
    let levels = |log: &str| -> Vec<String> {
        log.lines().map(|l| l.split(' ').nth(1).unwrap_or_default().to_owned()).collect()
    };
    let off = stderr_at("off");
    assert_eq!(off, "", "HEADCOUNT_LOG=off");
    let warn = stderr_at("warn");
    assert!(levels(&warn).iter().all(|l| l == "WARN" || l == "ERROR"), "HEADCOUNT_LOG=warn:\n{warn}");
    assert!(!warn.contains("ready:"), "{warn}");
    let info = stderr_at("info");
    assert!(info.contains(" INFO headcount::cli [f] ready: not listening"), "HEADCOUNT_LOG=info:\n{info}");
    assert!(info.contains(" INFO headcount::cluster::runtime [f] node id "), "HEADCOUNT_LOG=info:\n{info}");
    assert!(!levels(&info).iter().any(|l| l == "DEBUG"), "HEADCOUNT_LOG=info:\n{info}");
}

#[test]
fn headcount_log_debug_shows_dial_failures() {
    let seed = closed_port();
    let s = ServeProc::start(
        &["--node-name", "d", "--seeds", &seed],
        &[("HEADCOUNT_SECRET", SECRET), ("HEADCOUNT_LOG", "debug")],
    );
    let line = s.wait_log(&format!("dial {seed}: "));
    assert!(line.contains(" DEBUG headcount::cluster::dial [d] dial "), "{line}");
}
