//! `headcount node` as a process: every command of the line protocol, the
//! answers to malformed input, and each way of shutting down.

mod common;

use common::{bin, NodeProc};
use std::process::Stdio;
use std::time::Duration;

#[test]
fn a_local_node_says_ready_dash() {
    let mut n = NodeProc::start("solo", &[]);
    assert_eq!(n.addr, "-");
    assert_eq!(n.cmd("total"), "0");
}

#[test]
fn every_command_answers_one_line() {
    let mut n = NodeProc::start("a", &["--flush-interval-ms", "10"]);
    assert_eq!(n.cmd("track room:1 1"), "ok 1");
    assert_eq!(n.cmd("track room:1 1"), "ok 0");
    assert_eq!(n.cmd("track room:1 2"), "ok 1");
    assert_eq!(n.cmd("track room:2 2"), "ok 1");
    assert_eq!(n.cmd("track room:2 18446744073709551615"), "ok 1");
    assert_eq!(n.num("count room:1"), 2);
    assert_eq!(n.num("count_local room:2"), 2);
    assert_eq!(n.num("total"), 4);
    assert_eq!(n.cmd("untrack room:2 18446744073709551615"), "ok 1");
    assert_eq!(n.cmd("untrack room:2 18446744073709551615"), "ok 0");
    assert_eq!(n.cmd("untrack_all 2"), "ok 2");
    assert_eq!(n.cmd("untrack_all 2"), "ok 0");
    assert_eq!(n.num("count room:1"), 1);
    assert_eq!(n.num("count room:2"), 0);
    assert_eq!(n.num("count never-seen"), 0);
    assert_eq!(n.cmd("add raw 10"), "ok");
    assert_eq!(n.cmd("add raw -3"), "ok");
    assert_eq!(n.num("count raw"), 7);
    assert_eq!(n.num("total"), 8);

    let info = n.json("info raw");
    assert_eq!(info["count"], 7);
    assert_eq!(info["local"], 7);
    assert_eq!(info["peers_known"], 0);
    assert!(info["oldest_report_age_ms"].is_u64(), "{info}");
    assert!(n.json("peers").as_array().is_some_and(Vec::is_empty));
    let stats = n.json("stats");
    assert_eq!(stats["node"], "a");
    assert_eq!(stats["tracked_pairs"], 1);

    // Topics are any whitespace-free bytes, CRLF line ends are fine.
    n.send_raw(b"track \xc3\xa9t\xc3\xa9/\xff 5\r\n");
    assert_eq!(n.read_line().unwrap(), "ok 1");
    n.send_raw(b"count \xc3\xa9t\xc3\xa9/\xff\n");
    assert_eq!(n.read_line().unwrap(), "1");

    assert_eq!(n.cmd("quit"), "ok");
    let status = n.wait(Duration::from_secs(10)).expect("exits after quit");
    assert!(status.success(), "{status:?}");
    assert!(n.stderr().contains("quit"), "logs go to stderr: {}", n.stderr());
}

#[test]
fn malformed_lines_get_err_and_the_node_keeps_running() {
    let mut n = NodeProc::start("m", &[]);
    n.cmd("track keep 1");
    let cases: &[(&str, &str)] = &[
        ("", "err empty line"),
        ("   ", "err empty line"),
        ("jump keep 1", "err unknown command \"jump\""),
        ("Track keep 1", "err unknown command"),
        ("track keep", "err usage: track <topic> <conn>"),
        ("track keep 1 2", "err usage: track <topic> <conn>"),
        ("track keep -1", "err conn \"-1\" is not a valid u64"),
        ("track keep 18446744073709551616", "err conn"),
        ("track keep one", "err conn \"one\""),
        ("untrack keep", "err usage: untrack <topic> <conn>"),
        ("untrack keep x", "err conn"),
        ("untrack_all", "err usage: untrack_all <conn>"),
        ("untrack_all 1 2", "err usage: untrack_all"),
        ("untrack_all 0x10", "err conn"),
        ("add keep", "err usage: add <topic> <delta>"),
        ("add keep 1.5", "err delta \"1.5\" is not a valid i64"),
        ("add keep 9223372036854775808", "err delta"),
        ("count", "err usage: count <topic>"),
        ("count a b", "err usage: count <topic>"),
        ("count_local", "err usage: count_local <topic>"),
        ("info", "err usage: info <topic>"),
        ("total 1", "err usage: total"),
        ("peers x", "err usage: peers"),
        ("stats x", "err usage: stats"),
        ("quit now", "err usage: quit"),
    ];
    for (line, want) in cases {
        let got = n.cmd(line);
        assert!(got.starts_with(want), "{line:?} answered {got:?}, expected {want:?}...");
    }
    // The core's own checks come back as err too.
    let long = "x".repeat(1025);
    let got = n.cmd(&format!("track {long} 1"));
    assert!(got.starts_with("err topic is 1025 bytes"), "{got}");
    // A line longer than the protocol's limit is read to its end and refused.
    let huge = format!("count {}\n", "y".repeat(100_000));
    n.send_raw(huge.as_bytes());
    let got = n.read_line().unwrap();
    assert!(got.starts_with("err line longer than"), "{got}");
    // Non-UTF-8 in a number.
    n.send_raw(b"track keep \xff\n");
    assert!(n.read_line().unwrap().starts_with("err conn"));

    // Nothing above changed any count, and the node still answers.
    assert_eq!(n.num("count keep"), 1);
    assert_eq!(n.num("total"), 1);
}

#[test]
fn end_of_input_closes_gracefully() {
    let mut n = NodeProc::start("eof", &[]);
    n.cmd("track a 1");
    n.close_stdin();
    let status = n.wait(Duration::from_secs(10)).expect("exits at end of input");
    assert!(status.success(), "{status:?}");
    assert!(n.stderr().contains("end of input"), "{}", n.stderr());
}

#[test]
fn sigterm_and_sigint_close_gracefully() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut n = NodeProc::start("sig", &[]);
        assert_eq!(n.cmd("track a 1"), "ok 1");
        n.signal(signal);
        let status = n.wait(Duration::from_secs(10)).unwrap_or_else(|| panic!("{name}: still running"));
        assert!(status.success(), "{name}: {status:?}");
        assert!(n.stderr().contains("signal received"), "{name}: {}", n.stderr());
    }
}

#[test]
fn piped_script_runs_in_order() {
    let out = bin()
        .args(["node", "--name", "script"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"track r 1\ntrack r 2\nbogus\ncount r\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready -\nok 1\nok 1\nerr unknown command \"bogus\"; commands: track, untrack, untrack_all, add, count, count_local, total, info, peers, stats, watch, top, quit\n2\n");
}

#[test]
fn configuration_errors_exit_2_without_a_ready_line() {
    let run = |args: &[&str], secret: Option<&str>| {
        let mut cmd = bin();
        cmd.args(["node", "--name", "bad"]).args(args).stdin(Stdio::null());
        match secret {
            Some(s) => cmd.env("HEADCOUNT_SECRET", s),
            None => cmd.env_remove("HEADCOUNT_SECRET"),
        };
        cmd.output().unwrap()
    };
    let out = run(&["--listen", "127.0.0.1:0"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret") && err.contains("HEADCOUNT_SECRET"), "{err}");

    let out = run(&["--listen", "127.0.0.1:0"], Some(""));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));

    let out = run(&["--flush-interval-ms", "0"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));

    let out = run(&["--seeds", "nowhere"], Some("s"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not host:port"));

    // clap's own errors (a missing --name) also exit 2.
    let out = bin().args(["node"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn help_has_examples_for_every_command() {
    for args in [&["--help"][..], &["node", "--help"], &["demo", "--help"]] {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:"), "{args:?}:\n{text}");
        assert!(text.contains("headcount "), "{args:?}:\n{text}");
    }
    let out = bin().args(["node", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["track <topic> <conn>", "untrack_all <conn>", "info <topic>", "peers", "quit"] {
        assert!(text.contains(cmd), "node --help lacks {cmd:?}");
    }
}

/// Reads lines until `f` has seen what it waits for (30 s at most).
fn read_until(n: &mut NodeProc, mut f: impl FnMut(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let line = n.read_line().unwrap_or_else(|e| panic!("{e}"));
        if f(&line) {
            return;
        }
    }
    panic!("timed out");
}

/// Sends `line` and returns its answer; change lines that come first (a
/// flush may ship the change before the answer is written) go to `changes`.
fn answer(n: &mut NodeProc, line: &str, changes: &mut Vec<String>) -> String {
    n.send_raw(format!("{line}\n").as_bytes());
    loop {
        let l = n.read_line().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        if !l.starts_with("change ") {
            return l;
        }
        changes.push(l);
    }
}

#[test]
fn watch_streams_change_lines_and_top_answers_ok_n_then_n_lines() {
    let mut n = NodeProc::start("w", &["--flush-interval-ms", "10"]);
    let mut changes = Vec::new();
    assert_eq!(answer(&mut n, "watch room:", &mut changes), "ok");
    assert_eq!(answer(&mut n, "track room:1 1", &mut changes), "ok 1");
    assert_eq!(answer(&mut n, "track lobby 1", &mut changes), "ok 1");
    // The change line arrives with the flush that ships the change: before
    // or after the answers.
    if !changes.iter().any(|l| l == "change room:1 1 1") {
        read_until(&mut n, |l| {
            changes.push(l.to_owned());
            l == "change room:1 1 1"
        });
    }
    assert!(changes.iter().all(|l| !l.contains("lobby")), "{changes:?}");
    changes.clear();
    assert_eq!(answer(&mut n, "track room:1 2", &mut changes), "ok 1");
    assert_eq!(answer(&mut n, "track room:2 2", &mut changes), "ok 1");
    let mut seen = std::collections::HashMap::new();
    let mut note = |l: &str| {
        let w: Vec<&str> = l.split(' ').collect();
        if w[0] == "change" {
            assert_eq!(w.len(), 4, "{l}");
            assert_eq!(w[2], w[3], "users == count: {l}");
            seen.insert(w[1].to_owned(), w[2].to_owned());
        }
        seen.get("room:1").map(String::as_str) == Some("2") && seen.get("room:2").map(String::as_str) == Some("1")
    };
    let done = changes.iter().fold(false, |_, l| note(l));
    if !done {
        read_until(&mut n, note);
    }
    // `top`: `ok N` then N lines, highest first, ties by topic. No change
    // is pending now, so the next lines are all top's.
    n.send_raw(b"top 5\n");
    let lines: Vec<String> = (0..4).map(|_| n.read_line().unwrap()).collect();
    assert_eq!(lines, ["ok 3", "room:1 2", "lobby 1", "room:2 1"]);
    n.send_raw(b"top 1 room:2\n");
    assert_eq!([n.read_line().unwrap(), n.read_line().unwrap()], ["ok 1", "room:2 1"]);
    assert_eq!(n.cmd("top 3 nothing"), "ok 0");
    assert!(n.cmd("top x").starts_with("err k \"x\" is not a valid usize"));
    assert!(n.cmd("watch a b").starts_with("err usage: watch [<prefix>]"));
    // A final 0 is a change too.
    changes.clear();
    assert_eq!(answer(&mut n, "untrack_all 2", &mut changes), "ok 2");
    if !changes.iter().any(|l| l == "change room:2 0 0") {
        read_until(&mut n, |l| l == "change room:2 0 0");
    }
    assert_eq!(n.cmd("quit"), "ok");
    assert!(n.wait(Duration::from_secs(10)).expect("exits after quit").success());
}
