//! `headcount node`: one node, driven by the line protocol of
//! [`crate::protocol`] on stdin/stdout.
//!
//! Start-up: the node starts, then prints `ready <listen-addr>` (the address
//! actually bound, so `--listen 127.0.0.1:0` reports its port), or
//! `ready -` for a node that does not listen (no `--listen`: local-only, or
//! only dialing its `--seeds`). Nothing else is ever
//! written to stdout but one answer line per command; logs go to stderr.
//!
//! Shut-down: `quit` (answered `ok`), end of input, SIGINT, SIGTERM or SIGHUP
//! close the node gracefully (peers are told it left) and the process exits
//! 0. A configuration error exits 2; a node that cannot start, or stdout
//! that cannot be written, exits 1.

use crate::protocol::{self, Next};
use clap::Args;
use headcount::{Config, Node};
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// The longest command line accepted (a longer one is answered `err`).
const MAX_LINE: usize = 64 * 1024;

/// The environment variable the secret may come from.
const SECRET_ENV: &str = "HEADCOUNT_SECRET";

/// Run one node, driven by commands on stdin (one answer line each on stdout).
#[derive(Debug, Args)]
#[command(after_help = "Protocol (one command per line on stdin, one answer line per command on stdout):
  track <topic> <conn>     -> ok 1 | ok 0        conn: u64
  untrack <topic> <conn>   -> ok 1 | ok 0
  untrack_all <conn>       -> ok <n>
  add <topic> <delta>      -> ok                 delta: i64
  count <topic>            -> <n>                cluster-wide
  count_local <topic>      -> <n>                this node only
  total                    -> <n>
  info <topic>             -> {\"count\":..,\"local\":..,\"peers_reporting\":..,\"peers_known\":..,\"oldest_report_age_ms\":..}
  peers                    -> [ one JSON object per peer ]
  stats                    -> { the node's stats as JSON }
  quit                     -> ok, then leave the cluster and exit 0
  anything malformed       -> err <message>
Topics are whitespace-free tokens. The first line is `ready <listen-addr>`
(`ready -` without --listen). End of input, SIGINT and SIGTERM leave the
cluster gracefully and exit 0. Logs go to stderr only.

Examples:
  # a local-only node, driven by hand
  headcount node --name a
  # a three-node cluster on one machine
  export HEADCOUNT_SECRET=s3cret
  headcount node --name a --listen 127.0.0.1:7401
  headcount node --name b --listen 127.0.0.1:7402 --seeds 127.0.0.1:7401
  headcount node --name c --listen 127.0.0.1:7403 --seeds 127.0.0.1:7401
  # scripted
  printf 'track room:1 42\\ncount room:1\\n' | headcount node --name a")]
pub(crate) struct NodeArgs {
    /// This node's name (1 to 255 bytes), shown to its peers.
    #[arg(long, value_name = "N")]
    name: String,
    /// Address to listen on for peers, host:port (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Peers to join, comma-separated host:port (one live member is enough).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    seeds: Vec<String>,
    /// File holding the cluster secret (surrounding whitespace is trimmed);
    /// otherwise the HEADCOUNT_SECRET environment variable is used.
    /// Required with --listen or --seeds.
    #[arg(long, value_name = "F")]
    secret_file: Option<PathBuf>,
    /// Cluster name; nodes only join peers of the same cluster [default: headcount].
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// How often changed counts are sent to peers [default: 100].
    #[arg(long, value_name = "N")]
    flush_interval_ms: Option<u64>,
    /// A silent peer is down after this long [default: 1000].
    #[arg(long, value_name = "N")]
    down_after_ms: Option<u64>,
    /// A down peer's counts stay summed for this long [default: 0].
    #[arg(long, value_name = "N")]
    down_grace_ms: Option<u64>,
}

/// Builds the node's configuration; the error is for a person.
fn config(args: &NodeArgs) -> Result<Config, String> {
    let mut cfg = Config::new();
    let mut set = |key: &str, value: &str| cfg.set(key, value).map_err(|e| e.to_string());
    set("node_name", &args.name)?;
    if let Some(listen) = &args.listen {
        set("listen", listen)?;
    }
    if !args.seeds.is_empty() {
        set("seeds", &args.seeds.join(","))?;
    }
    if let Some(cluster) = &args.cluster {
        set("cluster", cluster)?;
    }
    for (key, value) in [
        ("flush_interval_ms", args.flush_interval_ms),
        ("down_after_ms", args.down_after_ms),
        ("down_grace_ms", args.down_grace_ms),
    ] {
        if let Some(v) = value {
            set(key, &v.to_string())?;
        }
    }
    if let Some(secret) = secret(args)? {
        set("secret", &secret)?;
    }
    cfg.validate().map_err(|e| match e {
        headcount::Error::Config { ref key, .. } if key == "secret" => {
            format!("{e}; give it with --secret-file F or the {SECRET_ENV} environment variable")
        }
        e => e.to_string(),
    })?;
    Ok(cfg)
}

/// The secret from `--secret-file`, else from the environment.
fn secret(args: &NodeArgs) -> Result<Option<String>, String> {
    if let Some(path) = &args.secret_file {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read --secret-file {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("--secret-file {}: the secret must be UTF-8 text", path.display()))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("--secret-file {} is empty", path.display()));
        }
        return Ok(Some(text.to_owned()));
    }
    match std::env::var(SECRET_ENV) {
        Ok(s) if s.is_empty() => Err(format!("{SECRET_ENV} is set but empty")),
        Ok(s) => Ok(Some(s)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{SECRET_ENV} must be UTF-8 text")),
    }
}

/// What the stdin reader and the signal handler tell the main loop.
#[derive(Debug)]
enum Event {
    Line(Vec<u8>),
    TooLong,
    Eof,
    ReadError(io::Error),
    Signal,
}

pub(crate) fn run(args: &NodeArgs) -> ExitCode {
    let name = args.name.as_str();
    let log = |msg: &str| eprintln!("headcount node {name}: {msg}");
    let cfg = match config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            log(&e);
            return ExitCode::from(2);
        }
    };
    let node = match Node::start(&cfg) {
        Ok(node) => node,
        Err(e) => {
            log(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };

    let (tx, rx) = mpsc::channel::<Event>();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (tx, stop) = (tx.clone(), stop.clone());
        if let Err(e) = ctrlc::set_handler(move || {
            stop.store(true, Ordering::SeqCst);
            let _ = tx.send(Event::Signal);
        }) {
            log(&format!("cannot handle SIGINT/SIGTERM ({e}); they will kill the node without a goodbye"));
        }
    }

    let addr = node.local_addr().map_or_else(|| "-".to_owned(), |a| a.to_string());
    let mut out = io::stdout().lock();
    if writeln!(out, "ready {addr}").and_then(|()| out.flush()).is_err() {
        log("stdout is closed; leaving");
        node.close();
        return ExitCode::from(1);
    }
    match (&args.listen, args.seeds.is_empty()) {
        (None, true) => log("ready, local-only (no --listen, no --seeds)"),
        (None, false) => log(&format!("ready, not listening, seeds [{}]", args.seeds.join(", "))),
        (Some(_), _) => log(&format!("ready, listening on {addr}, seeds [{}]", args.seeds.join(", "))),
    }

    let reader = std::thread::Builder::new().name("stdin".into()).spawn(move || read_lines(&tx));
    if let Err(e) = reader {
        log(&format!("cannot start the stdin reader: {e}"));
        node.close();
        return ExitCode::from(1);
    }

    let code = loop {
        let event = rx.recv().unwrap_or(Event::Eof);
        if stop.load(Ordering::SeqCst) {
            log("signal received; leaving the cluster");
            break ExitCode::SUCCESS;
        }
        let (answer, next) = match event {
            Event::Line(line) => protocol::handle(&node, &line),
            Event::TooLong => (protocol::error_line(&format!("line longer than {MAX_LINE} bytes")), Next::Continue),
            Event::Eof => {
                log("end of input; leaving the cluster");
                break ExitCode::SUCCESS;
            }
            Event::ReadError(e) => {
                log(&format!("cannot read stdin ({e}); leaving the cluster"));
                break ExitCode::from(1);
            }
            Event::Signal => continue,
        };
        if writeln!(out, "{answer}").and_then(|()| out.flush()).is_err() {
            log("stdout is closed; leaving the cluster");
            break ExitCode::from(1);
        }
        if next == Next::Quit {
            log("quit; leaving the cluster");
            break ExitCode::SUCCESS;
        }
    };
    node.close();
    log("closed");
    code
}

/// Reads stdin line by line into `tx` until end of input or an error.
fn read_lines(tx: &mpsc::Sender<Event>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        let event = match read_line_bounded(&mut stdin, &mut buf, MAX_LINE) {
            Ok(Some(true)) => Event::Line(std::mem::take(&mut buf)),
            Ok(Some(false)) => Event::TooLong,
            Ok(None) => Event::Eof,
            Err(e) => Event::ReadError(e),
        };
        let last = matches!(event, Event::Eof | Event::ReadError(_));
        if tx.send(event).is_err() || last {
            return;
        }
        buf.clear();
    }
}

/// Reads one line (without its `\n`) into `buf`, which must start empty.
/// `Some(true)`: a line; `Some(false)`: a line longer than `max` bytes, read
/// and dropped; `None`: end of input. A last line without `\n` still counts.
fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<bool>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn args(extra: &[&str]) -> NodeArgs {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Wrap {
            #[command(flatten)]
            a: NodeArgs,
        }
        let argv = ["node", "--name", "t"].iter().chain(extra);
        Wrap::try_parse_from(argv).unwrap().a
    }

    #[test]
    fn config_errors_are_clear() {
        assert!(config(&args(&[])).is_ok());
        let e = config(&args(&["--flush-interval-ms", "0"])).unwrap_err();
        assert!(e.contains("flush_interval_ms") && e.contains("out of range"), "{e}");
        let e = config(&args(&["--listen", "nowhere"])).unwrap_err();
        assert!(e.contains("not host:port"), "{e}");
        let e = config(&args(&["--secret-file", "/nonexistent/secret"])).unwrap_err();
        assert!(e.contains("cannot read --secret-file"), "{e}");
    }

    #[test]
    fn secret_file_is_trimmed_and_required_non_empty() {
        let dir = std::env::temp_dir().join(format!("headcount-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "  s3cret\n").unwrap();
        let a = args(&["--secret-file", f.to_str().unwrap()]);
        assert_eq!(secret(&a).unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&f, "\n").unwrap();
        assert!(secret(&a).unwrap_err().contains("is empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
