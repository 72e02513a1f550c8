//! `headcount serve` as a process: settings from a file, the environment
//! and flags (and which wins), `--check-config`, a graceful leave on
//! SIGTERM that a peer sees at once, and the sidecar API's sessions.

mod common;

use common::serve::{assert_log_format, serve_output, ApiClient, ServeProc, TempDir};
use common::{eventually, NodeProc, SECRET};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let dir = TempDir::new("prec");
    let sock = dir.path("api.sock");
    let file = dir.write(
        "headcount.toml",
        &format!(
            "node_name = \"from-file\"\ncluster = \"file-cluster\"\nmax_topic_len = 8\nlisten = \"127.0.0.1:0\"\n\
             api = [\"unix:{}\"]\n",
            sock.display()
        ),
    );
    let file = file.to_str().unwrap();
    let env = [
        ("HEADCOUNT_NODE_NAME", "from-env"),
        ("HEADCOUNT_CLUSTER", "env-cluster"),
        ("HEADCOUNT_MAX_TOPIC_LEN", "16"),
        ("HEADCOUNT_SECRET", SECRET),
    ];
    let args = ["--config", file, "--node-name", "from-flag"];

    let check = serve_output(&[&args[..], &["--check-config"]].concat(), &env);
    let out = text(&check.stdout);
    assert!(check.status.success(), "{out}{}", text(&check.stderr));
    for (key, value, source) in [
        ("node_name", "from-flag", "(--node-name)"),
        ("cluster", "env-cluster", "($HEADCOUNT_CLUSTER)"),
        ("max_topic_len", "16", "($HEADCOUNT_MAX_TOPIC_LEN)"),
        ("listen", "127.0.0.1:0", &format!("({file})")),
        ("secret", "<redacted>", "($HEADCOUNT_SECRET)"),
    ] {
        let line = out.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_else(|| panic!("{key}: {out}"));
        assert!(line.contains(value) && line.ends_with(source), "{key}: {line:?}");
    }
    assert!(!out.contains(SECRET), "--check-config shows the secret:\n{out}");
    assert!(!sock.exists(), "--check-config bound the API");

    // The running node has the same settings.
    let s = ServeProc::start(&args, &env);
    let mut c = ApiClient::unix(&sock);
    assert!(c.ready.starts_with("127.0.0.1:") && !c.ready.ends_with(":0"), "ready {}", c.ready);
    let stats: serde_json::Value = serde_json::from_str(&c.cmd("stats")).unwrap();
    assert_eq!(stats["node"], "from-flag");
    assert_eq!(stats["cluster"], "env-cluster");
    assert_eq!(c.cmd(&format!("track {} 1", "x".repeat(16))), "ok 1", "max_topic_len 16 (env), not 8 (file)");
    assert!(c.cmd(&format!("track {} 1", "x".repeat(17))).starts_with("err topic is 17 bytes"));
    s.signal(libc::SIGTERM);
    drop(c);
    assert_log_format(&s.log());
}

#[test]
fn bad_settings_exit_2_naming_the_key_and_where_it_came_from() {
    let dir = TempDir::new("bad");
    // (flags, environment, what the error must say)
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            vec!["--flush-interval-ms".into(), "0".into()],
            vec![],
            vec!["\"flush_interval_ms\"", "out of range", "--flush-interval-ms"],
        ),
        (
            vec![],
            vec![("HEADCOUNT_DOWN_AFTER_MS", "soon".into())],
            vec!["\"down_after_ms\"", "$HEADCOUNT_DOWN_AFTER_MS"],
        ),
        (
            vec![
                "--config".into(),
                dir.write("a.toml", "flush_interval_ms = 50\ncolour = \"blue\"\n").display().to_string(),
            ],
            vec![],
            vec!["a.toml", "unknown key \"colour\""],
        ),
        (
            vec!["--config".into(), dir.write("b.toml", "seeds = \"nowhere\"\n").display().to_string()],
            vec![],
            vec!["\"seeds\"", "not host:port", "b.toml"],
        ),
        (
            vec!["--config".into(), dir.write("c.toml", "node_name = \n").display().to_string()],
            vec![],
            vec!["c.toml", "line 1"],
        ),
        (
            vec!["--config".into(), dir.path("missing.toml").display().to_string()],
            vec![],
            vec!["cannot read", "missing.toml"],
        ),
        (vec!["--listen".into(), "127.0.0.1:0".into()], vec![], vec!["\"secret\"", "required", "secret_file"]),
        (vec!["--api".into(), "0.0.0.0:7480".into()], vec![], vec!["api (from --api)", "not a loopback address"]),
        (vec!["--api-max-sessions".into(), "0".into()], vec![], vec!["api_max_sessions", "1..=65536"]),
        (
            vec!["--secret-file".into(), dir.path("nope").display().to_string()],
            vec![],
            vec!["secret_file", "cannot read"],
        ),
    ];
    for (args, env, want) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for check in [true, false] {
            let mut argv = args.clone();
            if check {
                argv.push("--check-config");
            }
            let out = serve_output(&argv, &env);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{argv:?} {env:?}: {err}");
            assert!(out.stdout.is_empty(), "{argv:?}");
            assert!(err.starts_with("error: "), "{argv:?}: {err:?}");
            for w in want {
                assert!(err.contains(w), "{argv:?} {env:?}: {err:?} lacks {w:?}");
            }
        }
    }
    let ok = serve_output(&["--check-config"], &[]);
    assert!(ok.status.success());
    assert!(text(&ok.stdout).starts_with("configuration OK\n"), "{}", text(&ok.stdout));
}

#[test]
fn sigterm_leaves_and_a_peer_sees_left_at_once() {
    // The peer would take 60 s to call a silent node down: seeing "left"
    // sooner can only be the goodbye.
    let mut peer =
        NodeProc::start("peer", &["--listen", "127.0.0.1:0", "--down-after-ms", "60000", "--flush-interval-ms", "20"]);
    let dir = TempDir::new("term");
    let sock = dir.path("api.sock");
    let api = format!("unix:{}", sock.display());
    let s = ServeProc::start(
        &["--node-name", "svc", "--seeds", &peer.addr, "--api", &api, "--flush-interval-ms", "20"],
        &[("HEADCOUNT_SECRET", SECRET)],
    );
    let mut s = s;
    let mut c = ApiClient::unix(&sock);
    assert_eq!(c.ready, "-", "serve without listen");
    assert_eq!(c.cmd("track room 1"), "ok 1");
    eventually(Duration::from_secs(10), || peer.num("count room") == 1).expect("the peer sees the track");
    let state = |peer: &mut NodeProc| -> String {
        let peers: serde_json::Value = serde_json::from_str(&peer.cmd("peers")).unwrap();
        peers
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == "svc"))
            .map_or("absent".into(), |p| p["state"].as_str().unwrap_or("?").to_owned())
    };
    assert_eq!(state(&mut peer), "up");

    let t = Instant::now();
    s.signal(libc::SIGTERM);
    let status = s.wait(Duration::from_secs(10)).expect("serve exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", s.log());
    assert_eq!(c.line(), "", "the session's socket was closed");
    eventually(Duration::from_secs(5), || state(&mut peer) == "left" && peer.num("count room") == 0)
        .expect("the peer sees svc leave");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "signal to 'left' took {took:?}");
    assert!(!sock.exists(), "the socket file is removed");
    let log = s.log();
    assert!(log.contains("SIGTERM received; leaving the cluster") && log.contains("] closed"), "{log}");
    assert_log_format(&log);
    assert_log_format(&peer.stderr());
}

#[test]
fn sigint_also_leaves_and_exits_0() {
    let mut s = ServeProc::start(&["--node-name", "svc"], &[]);
    s.signal(libc::SIGINT);
    let status = s.wait(Duration::from_secs(10)).expect("serve exits after SIGINT");
    assert!(status.success(), "{status:?}");
    assert!(s.log().contains("SIGINT received"), "{}", s.log());
}

#[test]
fn an_abruptly_closed_session_loses_its_tracks_and_only_its_own() {
    let dir = TempDir::new("sidecar");
    let sock = dir.path("api.sock");
    let api = format!("unix:{},127.0.0.1:0", sock.display());
    let s = ServeProc::start(&["--node-name", "svc", "--api", &api], &[]);
    let tcp = s.api_tcp();
    let mut one = ApiClient::tcp(&tcp);
    let mut two = ApiClient::unix(&sock);
    // Both call their first user 1: two users, not one.
    assert_eq!(one.cmd("track room 1"), "ok 1");
    assert_eq!(one.cmd("track room 2"), "ok 1");
    assert_eq!(one.cmd("track hall 1"), "ok 1");
    assert_eq!(one.cmd("add raw 5"), "ok");
    assert_eq!(two.cmd("track room 1"), "ok 1");
    assert_eq!(two.cmd("track hall 1"), "ok 1");
    assert_eq!(two.cmd("add raw 1"), "ok");
    assert_eq!(two.num("count room"), 3);
    assert_eq!(two.num("count hall"), 2);
    assert_eq!(two.num("count raw"), 6);
    assert_eq!(two.cmd("untrack_all 2"), "ok 0", "user 2 is one's, not two's");

    one.reset();
    let gone = eventually(Duration::from_secs(5), || two.num("count room") == 1).expect("one's tracks vanish");
    assert!(gone < Duration::from_secs(2), "took {gone:?}");
    assert_eq!(two.num("count hall"), 1);
    assert_eq!(two.num("count raw"), 1);
    assert_eq!(two.num("total"), 3);
    // two is unaffected and still works.
    assert_eq!(two.cmd("track room 1"), "ok 0");
    assert_eq!(two.cmd("untrack room 1"), "ok 1");
    assert_eq!(two.num("count room"), 0);
    let closed = s.wait_log("socket error");
    assert!(closed.contains("withdrew 2 connections, 3 pairs, adds to 1 topics"), "{closed}");

    // A client that ends politely: `quit`.
    assert_eq!(two.cmd("quit"), "ok");
    assert_eq!(two.line(), "");
    let mut three = ApiClient::unix(&sock);
    assert_eq!(three.num("total"), 0, "two's last track was withdrawn at quit");
}

#[test]
fn the_api_is_bounded() {
    let dir = TempDir::new("bounds");
    let sock = dir.path("api.sock");
    let api = format!("unix:{}", sock.display());
    let s = ServeProc::start(&["--node-name", "svc", "--api", &api, "--api-max-sessions", "2"], &[]);
    let mut a = ApiClient::unix(&sock);
    let b = ApiClient::unix(&sock);
    // The third is refused with a reason, then closed.
    let mut refused = std::io::BufReader::new(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut refused, &mut line).unwrap();
    assert_eq!(line, "err too many sessions (api_max_sessions = 2); try again later\n");
    line.clear();
    assert_eq!(std::io::BufRead::read_line(&mut refused, &mut line).unwrap(), 0, "then closed");
    s.wait_log("refused a client");
    // A line over 64 KiB is an error; the session goes on.
    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    a.send_raw(&long);
    assert_eq!(a.line(), "err line longer than 65536 bytes");
    assert_eq!(a.cmd("track r 1"), "ok 1");
    // Pipelined commands: every answer, in order.
    a.send_raw(b"count r\ntrack r 2\ncount r\nfly\n");
    assert_eq!([a.line(), a.line(), a.line()], ["1", "ok 1", "2"]);
    assert!(a.line().starts_with("err unknown command \"fly\""));
    // One leaves: there is room again.
    drop(b);
    s.wait_log("api session 2 closed");
    let mut c = ApiClient::unix(&sock);
    assert_eq!(c.num("count r"), 2);
}

#[test]
fn a_sidecar_session_can_watch_and_its_watches_end_with_it() {
    let dir = TempDir::new("sidecar-watch");
    let sock = dir.path("api.sock");
    let api = format!("unix:{}", sock.display());
    let s = ServeProc::start(&["--node-name", "svc", "--api", &api, "--flush-interval-ms", "10"], &[]);
    let mut watcher = ApiClient::unix(&sock);
    let mut app = ApiClient::unix(&sock);
    assert_eq!(watcher.cmd("watch room:"), "ok");
    assert_eq!(app.cmd("track room:1 7"), "ok 1");
    assert_eq!(app.cmd("track hall 7"), "ok 1");
    // The watcher's session gets the change; the app's gets none.
    assert_eq!(watcher.line(), "change room:1 1 1");
    assert_eq!(app.cmd("top 5"), "ok 2");
    assert_eq!([app.line(), app.line()], ["hall 1", "room:1 1"]);
    let watches = |c: &mut ApiClient| {
        let v: serde_json::Value = serde_json::from_str(&c.cmd("stats")).unwrap();
        v["watches"].as_u64().unwrap()
    };
    assert_eq!(watches(&mut app), 1);
    // Answers and change lines share the socket, one whole line each.
    assert_eq!(watcher.num("count room:1"), 1);
    assert_eq!(watcher.cmd("quit"), "ok");
    assert!(
        eventually(Duration::from_secs(10), || watches(&mut app) == 0).is_some(),
        "the watch ended with its session"
    );
    s.wait_log("api session 1 closed (quit)");
}
