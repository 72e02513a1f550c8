//! `headcount`: run a node from the shell, or watch a local cluster count.
//!
//! * `headcount demo`: an in-process cluster on loopback under simulated
//!   churn, checked against the truth at the end (the README's main-job
//!   command).
//! * `headcount serve`: one node as a service, configured by a file, the
//!   environment and flags, until SIGTERM; optionally a sidecar API that
//!   speaks the line protocol to programs in any language ([`serve`]).
//! * `headcount node`: one node driven by a line protocol on stdin/stdout
//!   (see [`protocol`]), for scripts and other runtimes' tests.

mod demo;
mod feed;
mod fmt;
mod log;
mod node_cmd;
mod protocol;
mod secret;
mod serve;
mod signals;
mod stats;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "headcount",
    version,
    about = "Exact cluster-wide counts of connected users per topic",
    long_about = "Exact cluster-wide counts of connected users per topic.\n\n\
        `demo` starts a small cluster on loopback, churns simulated users through it\n\
        and checks every node's counts against the truth; `serve` runs one node as a\n\
        service (until SIGTERM), with an optional sidecar API for any language; `node`\n\
        runs one node driven by a line protocol on stdin/stdout.",
    after_help = "Examples:\n  \
        headcount demo\n  \
        headcount demo --nodes 5 --users 200000 --churn 50000 --seconds 10\n  \
        headcount serve --config /etc/headcount/headcount.toml --api unix:/run/headcount/api.sock\n  \
        HEADCOUNT_SECRET=s3cret headcount node --name a --listen 127.0.0.1:7401"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::DemoArgs),
    Serve(serve::ServeArgs),
    Node(node_cmd::NodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Node(args) => node_cmd::run(&args),
    }
}
