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

use crate::log::{self, Log};
use crate::protocol::{self, Next, MAX_LINE};
use crate::secret::{self, SECRET_ENV};
use crate::signals::{signal_name, LEAVE_SIGNALS};
use clap::Args;
use headcount::logging::LogFormat;
use headcount::{Config, Node};
use signal_hook::iterator::Signals;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

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
        return secret::from_file(path).map(Some);
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
    Signal(i32),
}

pub(crate) fn run(args: &NodeArgs) -> ExitCode {
    log::default_to_info();
    let log = Log::new(&args.name, LogFormat::Text);
    let cfg = match config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            log.error(&e);
            return ExitCode::from(2);
        }
    };
    let (tx, rx) = mpsc::channel::<Event>();
    // Signals are caught from before the node starts, so none can kill it
    // without a goodbye.
    if let Err(e) = forward_signals(tx.clone()) {
        log.warn(&format!("cannot handle SIGINT/SIGTERM/SIGHUP ({e}); they will kill the node without a goodbye"));
    }
    let node = match Node::start(&cfg) {
        Ok(node) => node,
        Err(e) => {
            log.error(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };

    let addr = node.local_addr().map_or_else(|| "-".to_owned(), |a| a.to_string());
    let mut out = io::stdout().lock();
    if writeln!(out, "ready {addr}").and_then(|()| out.flush()).is_err() {
        log.error("stdout is closed; leaving");
        node.close();
        return ExitCode::from(1);
    }
    match (&args.listen, args.seeds.is_empty()) {
        (None, true) => log.info("ready, local-only (no --listen, no --seeds)"),
        (None, false) => log.info(&format!("ready, not listening, seeds [{}]", args.seeds.join(", "))),
        (Some(_), _) => log.info(&format!("ready, listening on {addr}, seeds [{}]", args.seeds.join(", "))),
    }

    let reader = std::thread::Builder::new().name("stdin".into()).spawn(move || read_lines(&tx));
    if let Err(e) = reader {
        log.error(&format!("cannot start the stdin reader: {e}"));
        node.close();
        return ExitCode::from(1);
    }

    let code = loop {
        let answer = match rx.recv().unwrap_or(Event::Eof) {
            Event::Line(line) => protocol::handle(&node, &line),
            Event::TooLong => protocol::too_long(),
            Event::Eof => {
                log.info("end of input; leaving the cluster");
                break ExitCode::SUCCESS;
            }
            Event::ReadError(e) => {
                log.error(&format!("cannot read stdin ({e}); leaving the cluster"));
                break ExitCode::from(1);
            }
            Event::Signal(signal) => {
                log.info(&format!("signal received ({}); leaving the cluster", signal_name(signal)));
                break ExitCode::SUCCESS;
            }
        };
        if writeln!(out, "{}", answer.line).and_then(|()| out.flush()).is_err() {
            log.error("stdout is closed; leaving the cluster");
            break ExitCode::from(1);
        }
        if answer.next == Next::Quit {
            log.info("quit; leaving the cluster");
            break ExitCode::SUCCESS;
        }
    };
    node.close();
    log.info("closed");
    code
}

/// Sends SIGINT, SIGTERM and SIGHUP to `tx` as [`Event::Signal`], from a
/// thread of their own.
fn forward_signals(tx: mpsc::Sender<Event>) -> io::Result<()> {
    let mut signals = Signals::new(LEAVE_SIGNALS)?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for signal in signals.forever() {
            if tx.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// Reads stdin line by line into `tx` until end of input or an error.
fn read_lines(tx: &mpsc::Sender<Event>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        let event = match protocol::read_line_bounded(&mut stdin, &mut buf, MAX_LINE) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(e.contains("cannot read secret file"), "{e}");
    }
}
