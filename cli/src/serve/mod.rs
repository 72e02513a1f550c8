//! `headcount serve`: one node run as a service, until SIGTERM, SIGINT or
//! SIGHUP, with no stdin; configured by a TOML file, the environment and
//! flags ([`settings`]); optionally serving the sidecar API ([`api`]) to
//! programs in any language.
//!
//! Start-up: settings are resolved and checked (an error exits 2, naming
//! the key), signals are caught, the node starts (exit 1 if it cannot), the
//! API binds (exit 1 if it cannot), and one log line says where it all
//! listens. Shut-down on a signal: stop accepting API clients, close the
//! node (peers are told it left, at once), shut the sessions down, exit 0.

mod api;
mod session;
pub(crate) mod settings;

use crate::log::{self, Log};
use crate::signals::{signal_name, LEAVE_SIGNALS};
use clap::{Arg, ArgAction, ArgMatches, Command};
use headcount::Node;
use settings::{Given, Setting, Source};
use signal_hook::iterator::Signals;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const ABOUT: &str = "Run one node as a service until SIGTERM/SIGINT (settings from a file, the environment, flags)";

const AFTER_HELP: &str = "Every setting can be given in a TOML file (--config FILE, the key as is), in the
environment (HEADCOUNT_ + the key in capitals) or as a flag (--the-key); a flag beats
the environment, which beats the file. The secret has no flag: use --secret-file,
$HEADCOUNT_SECRET or secret in the file. deploy/headcount.toml lists every key.

SIGTERM, SIGINT and SIGHUP leave the cluster gracefully (peers see it at once) and
exit 0. A bad setting exits 2 and names the key; a node or API that cannot start
exits 1. Logs go to stderr ($HEADCOUNT_LOG: off, error, warn, info (default), debug).

Sidecar API (--api unix:/path or 127.0.0.1:PORT): each client speaks the line
protocol of `headcount node` (see `headcount node --help`); what a client tracks is
untracked when its socket closes, and its conn ids are its own.

Examples:
  headcount serve --config /etc/headcount/headcount.toml --check-config
  HEADCOUNT_SECRET=s3cret headcount serve --node-name a --listen 127.0.0.1:7401 \\
      --api unix:/run/headcount/api.sock";

/// `headcount serve`'s arguments: the file, the check switch, and the
/// flags generated from [`settings::all`].
#[derive(Debug, Clone)]
pub(crate) struct ServeArgs {
    config: Option<PathBuf>,
    check_config: bool,
    flags: Vec<Given>,
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = settings::all()
            .into_iter()
            .filter(|s| s.flag)
            .filter_map(|s| {
                let value = m.get_one::<String>(s.name)?.clone();
                Some(Given { name: s.name, value, source: Source::Flag(s.long()) })
            })
            .collect();
        Ok(Self { config: m.get_one::<PathBuf>("config").cloned(), check_config: m.get_flag("check_config"), flags })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd.about(ABOUT).after_help(AFTER_HELP).arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML file of settings (deploy/headcount.toml lists every key)"),
        );
        let cmd = cmd.arg(
            Arg::new("check_config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Check the settings, print what would run and exit (0: fine, 2: an error)"),
        );
        settings::all().iter().filter(|s| s.flag).fold(cmd, |cmd, s| cmd.arg(flag(s)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

fn flag(s: &Setting) -> Arg {
    Arg::new(s.name)
        .long(s.long())
        .value_name("VALUE")
        .help(format!("{} [default: {}] [env: {}]", s.doc, s.default, s.env()))
        .help_heading("Settings")
}

pub(crate) fn run(args: &ServeArgs) -> ExitCode {
    let resolved = match resolve(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        print_check(&resolved);
        return ExitCode::SUCCESS;
    }
    log::default_to_info();
    let name = node_name(&resolved);
    let log = Log::new(&name, resolved.config.settings().log_format);
    let mut signals = match Signals::new(LEAVE_SIGNALS) {
        Ok(s) => s,
        Err(e) => {
            log.error(&format!("cannot catch SIGTERM/SIGINT/SIGHUP: {e}"));
            return ExitCode::from(1);
        }
    };
    let node = match Node::start(&resolved.config) {
        Ok(n) => Arc::new(n),
        Err(e) => {
            log.error(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    let mut api = match api::Api::start(node.clone(), &resolved.api, resolved.max_sessions, log.clone()) {
        Ok(api) => api,
        Err(e) => {
            log.error(&e);
            node.close();
            return ExitCode::from(1);
        }
    };
    let seeds =
        resolved.shown.iter().find(|(n, _, _)| *n == "seeds").map(|(_, v, _)| v.as_str()).filter(|s| !s.is_empty());
    log.info(&match (node.local_addr(), seeds) {
        (None, None) => "ready: local-only (no listen, no seeds)".to_owned(),
        (None, Some(seeds)) => format!("ready: not listening, seeds [{seeds}]"),
        (Some(a), seeds) => format!("ready: listening on {a}, seeds [{}]", seeds.unwrap_or("")),
    });
    for at in api.endpoints() {
        log.info(&format!("api on {at} (at most {} sessions)", resolved.max_sessions));
    }

    let signal = signals.forever().next();
    log.info(&format!(
        "{} received; leaving the cluster",
        signal.map_or_else(|| "end of signals".to_owned(), signal_name)
    ));
    api.stop_accepting();
    node.close();
    let still_open = api.close_sessions();
    if still_open > 0 {
        log.warn(&format!("{still_open} api sessions did not end in time"));
    }
    log.info("closed");
    ExitCode::SUCCESS
}

/// The layers, lowest first: the file, the environment, the flags.
fn resolve(args: &ServeArgs) -> Result<settings::Resolved, String> {
    let file = match &args.config {
        Some(path) => settings::from_file(path)?,
        None => Vec::new(),
    };
    let env = settings::from_env(|name| std::env::var_os(name))?;
    settings::resolve(&[file, env, args.flags.clone()])
}

fn node_name(r: &settings::Resolved) -> String {
    r.shown.iter().find(|(n, _, _)| *n == "node_name").map_or_else(|| "serve".to_owned(), |(_, v, _)| v.clone())
}

/// `--check-config`'s report, on stdout: every setting, its value and
/// where it came from (a secret file shows in the secret's row).
fn print_check(r: &settings::Resolved) {
    println!("configuration OK");
    let rows: Vec<(&str, String, String)> = settings::all()
        .iter()
        .filter(|s| s.name != settings::SECRET_FILE)
        .map(|s| match r.shown.iter().find(|(n, _, _)| *n == s.name) {
            Some((_, value, source)) => (s.name, value.clone(), source.to_string()),
            None => (s.name, s.default.clone(), "default".to_owned()),
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (name, value, source) in rows {
        println!("  {name:<w0$}  {value:<w1$}  ({source})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    fn parse(argv: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cmd = ServeArgs::augment_args(Command::new("serve"));
        cmd.try_get_matches_from(std::iter::once("serve").chain(argv.iter().copied()))
            .and_then(|m| ServeArgs::from_arg_matches(&m))
    }

    #[test]
    fn a_flag_for_every_setting_but_the_secret() {
        ServeArgs::augment_args(Command::new("serve")).debug_assert();
        let a = parse(&["--flush-interval-ms", "50", "--api", "unix:/tmp/x", "--config", "h.toml"]).unwrap();
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("h.toml")));
        let flags: Vec<(&str, &str)> = a.flags.iter().map(|g| (g.name, g.value.as_str())).collect();
        assert_eq!(flags, [("flush_interval_ms", "50"), ("api", "unix:/tmp/x")]);
        assert!(parse(&["--secret", "x"]).is_err(), "no flag puts the secret on the command line");
        for key in headcount::CONFIG_KEYS.iter().filter(|k| **k != "secret") {
            let flag = format!("--{}", key.replace('_', "-"));
            let a = parse(&[&flag, "v"]).unwrap_or_else(|e| panic!("{flag}: {e}"));
            assert_eq!(a.flags[0].name, *key);
        }
    }
}
