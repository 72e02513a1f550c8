//! The line protocol of `headcount node` (**contract**: other runtimes' tests
//! drive nodes through it).
//!
//! One command per line on stdin, one answer line per command on stdout:
//!
//! | command                  | answer                                      |
//! |--------------------------|---------------------------------------------|
//! | `track <topic> <conn>`   | `ok 1` (added) or `ok 0` (already tracked)  |
//! | `untrack <topic> <conn>` | `ok 1` (removed) or `ok 0` (was not tracked)|
//! | `untrack_all <conn>`     | `ok <n>` (topics the connection left)       |
//! | `add <topic> <delta>`    | `ok`                                        |
//! | `count <topic>`          | `<n>` (cluster-wide)                        |
//! | `count_local <topic>`    | `<n>` (this node only)                      |
//! | `total`                  | `<n>` (sum of all counts, cluster-wide)     |
//! | `info <topic>`           | one line of JSON: the topic's count_info    |
//! | `peers`                  | one line of JSON: an array, one object per peer |
//! | `stats`                  | one line of JSON: the node's stats          |
//! | `watch [<prefix>]`       | `ok`; from then on `change <topic> <count> <users>` lines, one per change of a topic starting with `prefix` (none: every topic) |
//! | `top <k> [<prefix>]`     | `ok <n>`, then `n` lines `<topic> <count>`, highest count first |
//! | `quit`                   | `ok`, then the node leaves and exits 0      |
//! | anything else            | `err <message>`; the node keeps running     |
//!
//! Words are separated by ASCII whitespace; a topic is one whitespace-free
//! token of arbitrary bytes (1..=`max_topic_len`). `conn` is a u64, `delta`
//! an i64. A trailing `\r` is ignored. An empty line is malformed (it gets an
//! `err` answer like any other malformed line, so answers stay one per line).
//!
//! Two commands break the one-line rule, on purpose: `top` answers `ok <n>`
//! and then `n` more lines, and after `watch` the output also carries
//! `change` lines (asynchronously, between answers; never inside `top`'s
//! lines). A reader tells them apart by the first word. Topics in output
//! are written by [`crate::feed::token`]: as given when they are UTF-8
//! without whitespace or backslashes, with `\xNN` escapes otherwise. Each
//! `watch` adds a watch (overlapping prefixes give a line per watch); they
//! end with the session.

use crate::feed::token;
use headcount::{Node, Watch};
use std::fmt::Write as _;
use std::io::{self, BufRead};

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    Track(&'a [u8], u64),
    Untrack(&'a [u8], u64),
    UntrackAll(u64),
    Add(&'a [u8], i64),
    Count(&'a [u8]),
    CountLocal(&'a [u8]),
    Total,
    Info(&'a [u8]),
    Peers,
    Stats,
    Watch(&'a [u8]),
    Top(usize, &'a [u8]),
    Quit,
}

/// What to do after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Quit,
}

/// Every command with its arguments, for error messages and `--help`.
pub(crate) const USAGE: &[&str] = &[
    "track <topic> <conn>",
    "untrack <topic> <conn>",
    "untrack_all <conn>",
    "add <topic> <delta>",
    "count <topic>",
    "count_local <topic>",
    "total",
    "info <topic>",
    "peers",
    "stats",
    "watch [<prefix>]",
    "top <k> [<prefix>]",
    "quit",
];

/// Parses one line (without its `\n`). The error is the message for `err`.
pub(crate) fn parse(line: &[u8]) -> Result<Request<'_>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
    let Some(cmd) = words.next() else {
        return Err("empty line; expected a command".into());
    };
    let args: Vec<&[u8]> = words.collect();
    let usage = |name: &str| -> String {
        let form = USAGE.iter().find(|u| u.split(' ').next() == Some(name)).copied().unwrap_or(name);
        format!("usage: {form}")
    };
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            let name = String::from_utf8_lossy(cmd);
            Err(format!("{} (got {} argument{})", usage(&name), args.len(), if args.len() == 1 { "" } else { "s" }))
        }
    };
    let request = match cmd {
        b"track" | b"untrack" => {
            arity(2)?;
            let conn = number::<u64>(args[1], "conn", "u64")?;
            if cmd == b"track" {
                Request::Track(args[0], conn)
            } else {
                Request::Untrack(args[0], conn)
            }
        }
        b"untrack_all" => {
            arity(1)?;
            Request::UntrackAll(number::<u64>(args[0], "conn", "u64")?)
        }
        b"add" => {
            arity(2)?;
            Request::Add(args[0], number::<i64>(args[1], "delta", "i64")?)
        }
        b"count" => {
            arity(1)?;
            Request::Count(args[0])
        }
        b"count_local" => {
            arity(1)?;
            Request::CountLocal(args[0])
        }
        b"info" => {
            arity(1)?;
            Request::Info(args[0])
        }
        b"total" => {
            arity(0)?;
            Request::Total
        }
        b"peers" => {
            arity(0)?;
            Request::Peers
        }
        b"stats" => {
            arity(0)?;
            Request::Stats
        }
        b"quit" => {
            arity(0)?;
            Request::Quit
        }
        b"watch" if args.len() <= 1 => Request::Watch(args.first().copied().unwrap_or(b"")),
        b"top" if (1..=2).contains(&args.len()) => {
            Request::Top(number::<usize>(args[0], "k", "usize")?, args.get(1).copied().unwrap_or(b""))
        }
        b"watch" | b"top" => {
            let name = String::from_utf8_lossy(cmd);
            return Err(format!("{} (got {} arguments)", usage(&name), args.len()));
        }
        other => {
            let names: Vec<&str> = USAGE.iter().filter_map(|u| u.split(' ').next()).collect();
            return Err(format!("unknown command {}; commands: {}", quoted(other), names.join(", ")));
        }
    };
    Ok(request)
}

fn number<T: std::str::FromStr>(word: &[u8], what: &str, ty: &str) -> Result<T, String> {
    std::str::from_utf8(word)
        .ok()
        .and_then(|s| s.parse::<T>().ok())
        .ok_or_else(|| format!("{what} {} is not a valid {ty}", quoted(word)))
}

/// `word` quoted for a message, cut to 64 bytes, never containing a newline.
fn quoted(word: &[u8]) -> String {
    let cut = &word[..word.len().min(64)];
    let mut s = format!("{:?}", String::from_utf8_lossy(cut));
    if word.len() > cut.len() {
        s.push('…');
    }
    s
}

/// What a command changed, for callers that keep books (the sidecar's
/// sessions withdraw what each session added when it closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing changed (a query, an error, a track of a pair already tracked).
    None,
    /// The connection's tracked pairs changed by this much.
    Pairs { conn: u64, delta: i64 },
    /// The request's topic was added `delta` to.
    Added { delta: i64 },
}

/// The answer to one command.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The answer line, without its `\n`.
    pub(crate) line: String,
    /// Lines that follow it (`top`'s entries).
    pub(crate) more: Vec<String>,
    pub(crate) next: Next,
    pub(crate) effect: Effect,
    /// The watch a `watch` command started, for the caller to forward
    /// ([`crate::feed::forward`]).
    pub(crate) watch: Option<Watch>,
}

impl Answer {
    fn of(line: String) -> Self {
        Self { line: one_line(line), more: Vec::new(), next: Next::Continue, effect: Effect::None, watch: None }
    }

    /// An `err <message>` answer.
    pub(crate) fn error(message: &str) -> Self {
        Self { line: error_line(message), ..Answer::of(String::new()) }
    }

    /// Every line of the answer, in order.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.line.as_str()).chain(self.more.iter().map(String::as_str))
    }
}

/// Runs `request` on `node`.
pub(crate) fn execute(node: &Node, request: &Request<'_>) -> Answer {
    let pairs = |conn: u64, delta: i64| Effect::Pairs { conn, delta };
    let answer: Result<(String, Effect), headcount::Error> = match *request {
        Request::Track(topic, conn) => node
            .track(topic, conn)
            .map(|added| (format!("ok {}", u8::from(added)), if added { pairs(conn, 1) } else { Effect::None })),
        Request::Untrack(topic, conn) => node
            .untrack(topic, conn)
            .map(|removed| (format!("ok {}", u8::from(removed)), if removed { pairs(conn, -1) } else { Effect::None })),
        Request::UntrackAll(conn) => node
            .untrack_all(conn)
            .map(|n| (format!("ok {n}"), if n > 0 { pairs(conn, -(n as i64)) } else { Effect::None })),
        Request::Add(topic, delta) => node.add(topic, delta).map(|()| ("ok".to_owned(), Effect::Added { delta })),
        Request::Count(topic) => node.count(topic).map(|n| (n.to_string(), Effect::None)),
        Request::CountLocal(topic) => node.count_local(topic).map(|n| (n.to_string(), Effect::None)),
        Request::Total => node.total().map(|n| (n.to_string(), Effect::None)),
        Request::Info(topic) => node.count_info(topic).map(|c| {
            let info = serde_json::json!({
                "count": c.count,
                "local": c.local,
                "peers_reporting": c.peers_reporting,
                "peers_known": c.peers_known,
                "oldest_report_age_ms": c.oldest_report_age_ms,
            });
            (info.to_string(), Effect::None)
        }),
        Request::Peers => node.stats().map(|s| (s.peers_json(), Effect::None)),
        Request::Stats => node.stats_json().map(|s| (s, Effect::None)),
        Request::Watch(prefix) => {
            return match node.watch(prefix, false) {
                Ok(w) => Answer { watch: Some(w), ..Answer::of("ok".to_owned()) },
                Err(e) => Answer::error(&e.to_string()),
            }
        }
        Request::Top(k, prefix) => {
            return match node.top(k, prefix) {
                Ok(top) => Answer {
                    more: top.iter().map(|(t, n)| format!("{} {n}", token(t))).collect(),
                    ..Answer::of(format!("ok {}", top.len()))
                },
                Err(e) => Answer::error(&e.to_string()),
            }
        }
        Request::Quit => return Answer { next: Next::Quit, ..Answer::of("ok".to_owned()) },
    };
    match answer {
        Ok((line, effect)) => Answer { effect, ..Answer::of(line) },
        Err(e) => Answer::error(&e.to_string()),
    }
}

/// Parses and runs one line: the whole protocol step.
pub(crate) fn handle(node: &Node, line: &[u8]) -> Answer {
    match parse(line) {
        Ok(request) => execute(node, &request),
        Err(message) => Answer::error(&message),
    }
}

/// `err <message>` on one line.
pub(crate) fn error_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 4);
    out.push_str("err ");
    for c in message.chars() {
        if c == '\n' || c == '\r' {
            out.push(' ');
        } else {
            let _ = out.write_char(c);
        }
    }
    out
}

/// The longest command line accepted (a longer one is answered `err`).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// The answer to a line longer than [`MAX_LINE`].
pub(crate) fn too_long() -> Answer {
    Answer::error(&format!("line longer than {MAX_LINE} bytes"))
}

/// Reads one line (without its `\n`) into `buf`, which must start empty.
/// `Some(true)`: a line; `Some(false)`: a line longer than `max` bytes, read
/// and dropped; `None`: end of input. A last line without `\n` still counts.
pub(crate) fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
    let mut seen_any = false;
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(seen_any.then_some(!too_long));
        }
        seen_any = true;
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        if !too_long && buf.len() + chunk.len() <= max {
            buf.extend_from_slice(chunk);
        } else {
            too_long = true;
            buf.clear();
        }
        r.consume(used);
        if done {
            return Ok(Some(!too_long));
        }
    }
}

/// Guarantees the one-line contract even if a library string had a newline.
fn one_line(line: String) -> String {
    if line.contains(['\n', '\r']) {
        line.replace(['\n', '\r'], " ")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headcount::Config;

    fn node() -> Node {
        let mut cfg = Config::new();
        cfg.set("node_name", "t").unwrap();
        Node::start(&cfg).unwrap()
    }

    fn run(node: &Node, line: &str) -> String {
        handle(node, line.as_bytes()).line
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse(b"track room:1 7"), Ok(Request::Track(b"room:1", 7)));
        assert_eq!(parse(b"untrack room:1 7\r"), Ok(Request::Untrack(b"room:1", 7)));
        assert_eq!(parse(b"  untrack_all\t18446744073709551615 "), Ok(Request::UntrackAll(u64::MAX)));
        assert_eq!(parse(b"add r -9223372036854775808"), Ok(Request::Add(b"r", i64::MIN)));
        assert_eq!(parse(b"count r"), Ok(Request::Count(b"r")));
        assert_eq!(parse(b"count_local r"), Ok(Request::CountLocal(b"r")));
        assert_eq!(parse(b"info r"), Ok(Request::Info(b"r")));
        assert_eq!(parse(b"total"), Ok(Request::Total));
        assert_eq!(parse(b"peers"), Ok(Request::Peers));
        assert_eq!(parse(b"stats"), Ok(Request::Stats));
        assert_eq!(parse(b"quit"), Ok(Request::Quit));
        assert_eq!(parse(b"watch room:"), Ok(Request::Watch(b"room:")));
        assert_eq!(parse(b"watch"), Ok(Request::Watch(b"")));
        assert_eq!(parse(b"top 3"), Ok(Request::Top(3, b"")));
        assert_eq!(parse(b"top 3 room:"), Ok(Request::Top(3, b"room:")));
        // Topics are arbitrary non-whitespace bytes.
        assert_eq!(parse(b"count \xff\xfe"), Ok(Request::Count(b"\xff\xfe")));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty line"),
            (b"   \r", "empty line"),
            (b"jump r 1", "unknown command \"jump\""),
            (b"TRACK r 1", "unknown command"),
            (b"track r", "usage: track <topic> <conn> (got 1 argument)"),
            (b"track r 1 2", "got 3 arguments"),
            (b"track r -1", "conn \"-1\" is not a valid u64"),
            (b"track r 18446744073709551616", "not a valid u64"),
            (b"untrack_all x", "conn \"x\" is not a valid u64"),
            (b"add r 1.5", "delta \"1.5\" is not a valid i64"),
            (b"add r 9223372036854775808", "not a valid i64"),
            (b"count", "usage: count <topic>"),
            (b"total now", "usage: total (got 1 argument)"),
            (b"quit now", "usage: quit"),
            (b"watch a b", "usage: watch [<prefix>] (got 2 arguments)"),
            (b"top", "usage: top <k> [<prefix>] (got 0 arguments)"),
            (b"top x", "k \"x\" is not a valid usize"),
            (b"top 1 a b", "got 3 arguments"),
        ];
        for (line, want) in cases {
            let got = parse(line).unwrap_err();
            assert!(got.contains(want), "{:?}: {got:?} lacks {want:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn executes_against_a_node() {
        let n = node();
        assert_eq!(run(&n, "track room:1 7"), "ok 1");
        assert_eq!(run(&n, "track room:1 7"), "ok 0");
        assert_eq!(run(&n, "track room:2 7"), "ok 1");
        assert_eq!(run(&n, "track room:1 8"), "ok 1");
        assert_eq!(run(&n, "count room:1"), "2");
        assert_eq!(run(&n, "count_local room:1"), "2");
        assert_eq!(run(&n, "total"), "3");
        assert_eq!(run(&n, "untrack room:1 8"), "ok 1");
        assert_eq!(run(&n, "untrack room:1 8"), "ok 0");
        assert_eq!(run(&n, "untrack_all 7"), "ok 2");
        assert_eq!(run(&n, "untrack_all 7"), "ok 0");
        assert_eq!(run(&n, "count room:1"), "0");
        assert_eq!(run(&n, "add raw 5"), "ok");
        assert_eq!(run(&n, "add raw -2"), "ok");
        assert_eq!(run(&n, "count raw"), "3");
        let info: serde_json::Value = serde_json::from_str(&run(&n, "info raw")).unwrap();
        assert_eq!(info["count"], 3);
        assert_eq!(info["local"], 3);
        assert_eq!(info["peers_known"], 0);
        let peers: serde_json::Value = serde_json::from_str(&run(&n, "peers")).unwrap();
        assert_eq!(peers, serde_json::json!([]));
        let stats: serde_json::Value = serde_json::from_str(&run(&n, "stats")).unwrap();
        assert_eq!(stats["node"], "t");
        let quit = handle(&n, b"quit");
        assert_eq!((quit.line.as_str(), quit.next, quit.effect), ("ok", Next::Quit, Effect::None));
        assert!(quit.more.is_empty() && quit.watch.is_none());
    }

    #[test]
    fn top_answers_ok_n_then_n_lines_and_watch_hands_over_a_watch() {
        let n = node();
        for line in
            ["track room:a 1", "track room:a 2", "track room:b 1", "track lobby 1", "track lobby 2", "track lobby 3"]
        {
            run(&n, line);
        }
        let top = handle(&n, b"top 2");
        assert_eq!(top.lines().collect::<Vec<_>>(), ["ok 2", "lobby 3", "room:a 2"]);
        let top = handle(&n, b"top 5 room:");
        assert_eq!(top.lines().collect::<Vec<_>>(), ["ok 2", "room:a 2", "room:b 1"]);
        assert_eq!(handle(&n, b"top 0").lines().collect::<Vec<_>>(), ["ok 0"]);
        let w = handle(&n, b"watch room:");
        assert_eq!(w.line, "ok");
        assert_eq!(w.watch.as_ref().map(|w| w.prefix()), Some(&b"room:"[..]));
        assert!(handle(&n, format!("watch {}", "x".repeat(1025)).as_bytes()).line.contains("prefix is 1025 bytes"));
    }

    #[test]
    fn library_errors_become_err_lines() {
        let n = node();
        let long = format!("count {}", "x".repeat(1025));
        let got = run(&n, &long);
        assert!(got.starts_with("err topic is 1025 bytes"), "{got}");
        n.close();
        assert_eq!(run(&n, "count r"), "err the node is closed");
    }

    #[test]
    fn error_lines_never_span_lines() {
        assert_eq!(error_line("a\nb\r\nc"), "err a b  c");
        assert!(!quoted(&[b'x'; 100]).contains('\n'));
        assert!(quoted(&[b'x'; 100]).ends_with('…'));
    }

    fn lines(input: &[u8], max: usize) -> Vec<Option<bool>> {
        // A tiny buffer so lines span several fill_buf calls.
        let mut r = io::BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let got = read_line_bounded(&mut r, &mut buf, max).unwrap();
            out.push(got);
            if got.is_none() {
                return out;
            }
            buf.clear();
        }
    }

    #[test]
    fn bounded_lines() {
        assert_eq!(lines(b"", 8), [None]);
        assert_eq!(lines(b"ab\ncd", 8), [Some(true), Some(true), None]);
        assert_eq!(lines(b"\n\n", 8), [Some(true), Some(true), None]);
        assert_eq!(lines(b"0123456789\nok\n", 8), [Some(false), Some(true), None]);
        assert_eq!(lines(b"01234567\n", 8), [Some(true), None]);
        assert_eq!(lines(b"012345678", 8), [Some(false), None]);
    }

    #[test]
    fn bounded_line_content() {
        let mut r = io::BufReader::with_capacity(2, &b"track a 1\r\nrest"[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 64).unwrap(), Some(true));
        assert_eq!(buf, b"track a 1\r");
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 64).unwrap(), Some(true));
        assert_eq!(buf, b"rest");
    }
}
