//! The metrics and health server of a node: HTTP/1.1 on `metrics_listen`,
//! part of the node itself, so every embedding (Rust, the C ABI, Python,
//! Go, Erlang, the CLI) gets it from one config key. docs/OPERATIONS.md is
//! the operator's reference (every series, the health endpoints, a scrape
//! config).
//!
//! | request | answer |
//! |---------|--------|
//! | `GET /metrics` | 200: the node's [`Stats`], read at scrape time, in the Prometheus text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks for it ([`exposition`]) |
//! | `GET /healthz` | 200 `ok` while the node runs |
//! | `GET /readyz` | 200 `ready`, or 503 `not ready: <why>` ([`health`]) |
//! | another method on one of those paths | 405, with `Allow: GET` |
//! | any other path | 404 |
//!
//! # One thread, one connection at a time
//!
//! The listener is bound in `Node::start` (a bad or busy address fails the
//! start). One thread accepts and serves each connection in turn: one
//! request, one answer, close ([`http`] has the size and time bounds).
//! While it serves one, others wait in the kernel's accept queue. A scrape
//! costs one `Node::stats()` (whose `total_local` sums every topic's
//! stripes) and its rendering; a client that trickles its request holds
//! the server for at most `HEAD_DEADLINE` (2 s) before a 408. That is the
//! whole cost a bad client can impose: no memory beyond one 8 KiB buffer,
//! no extra thread, no effect on counting or replication (which never wait
//! for this thread). Do not expose the port to untrusted networks anyway:
//! like every Prometheus endpoint it is unauthenticated.
//!
//! Closing the node stops this thread first, before the flusher and the
//! cluster (so `/healthz` never answers for a closing node): a stop flag,
//! then a connection to our own listener wakes the blocking `accept`, and
//! the thread is joined. A request in progress is dropped within one `POLL`
//! (100 ms), or, while a response is being written to a client that does
//! not read, within `WRITE_DEADLINE` (2 s). Then the listener is closed:
//! no thread and no socket outlive `close`, `abort` or drop.
//!
//! Why not `tiny_http`: it reads the request line and headers into a
//! buffer with no size limit, serves each connection on a pool that grows a
//! thread per concurrent client, and never joins its accept thread, so a
//! node could promise neither bounded memory nor a clean stop. `httparse`
//! (hyper's parser) does the parsing here; the rest is this module and
//! [`http`], a few hundred lines.

mod exposition;
mod health;
mod http;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::logging::{log, Level, NodeLog};
use crate::stats::Stats;
use crate::sync::{Arc, AtomicBool, Mutex, Ordering};
use exposition::Format;
use http::{Request, Response};

/// Binds the metrics listener on `addr` (`metrics_listen`).
pub(crate) fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        Error::Io(std::io::Error::new(e.kind(), format!("cannot listen on {addr} for metrics (metrics_listen): {e}")))
    })
}

/// A running metrics server; [`Server::stop`] (or drop) ends it.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Reads the node's stats now (the node's `StatsReader`, in `node.rs`).
pub(crate) type ReadStats = Box<dyn Fn() -> Stats + Send + Sync>;

/// What the endpoints answer from.
struct Endpoints {
    stats: ReadStats,
    settings: Arc<Settings>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Server {
    /// Starts serving on `listener` (from [`bind`]) for node `name`.
    pub(crate) fn start(
        listener: TcpListener,
        name: &str,
        stats: ReadStats,
        settings: Arc<Settings>,
    ) -> Result<Server> {
        let addr = listener.local_addr()?;
        let node_log = NodeLog::new(name, settings.log_format);
        let stop = Arc::new(AtomicBool::new(false));
        let endpoints = Endpoints { stats, settings };
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hc-metrics-{name}"))
            .spawn(move || endpoints.serve(&listener, &s))?;
        log!(Level::Info, &node_log, "metrics on http://{addr}/metrics");
        Ok(Server { addr, stop, thread: Mutex::new(Some(thread)) })
    }

    /// Stops the thread, waits for it and closes the listener. Idempotent.
    pub(crate) fn stop(&self) {
        let Some(thread) = self.thread.lock().take() else { return };
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept(). Should this connection fail, the
        // thread is busy with another one, and checks the flag after it.
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(if a.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        let _ = TcpStream::connect_timeout(&a, Duration::from_millis(200));
        let _ = thread.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Endpoints {
    fn serve(&self, listener: &TcpListener, stop: &AtomicBool) {
        for conn in listener.incoming() {
            if stop.load(Ordering::Acquire) {
                break;
            }
            match conn {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    http::serve_one(stream, stop, |req| self.respond(req));
                }
                // Out of file descriptors, say: do not spin.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn respond(&self, req: &Request<'_>) -> Response {
        match (req.path, req.method == "GET") {
            ("/metrics" | "/healthz" | "/readyz", false) => Response::text(405, "only GET is allowed\n"),
            ("/metrics", true) => {
                let format = Format::for_accept(req.accept);
                match exposition::render((self.stats)(), format) {
                    Ok(body) => Response { status: 200, content_type: format.content_type(), body },
                    Err(_) => Response::text(500, "the metrics could not be encoded\n"),
                }
            }
            ("/healthz", true) => Response::text(200, "ok\n"),
            ("/readyz", true) => match health::readiness(&(self.stats)(), &self.settings) {
                Ok(()) => Response::text(200, "ready\n"),
                Err(why) => Response::text(503, format!("not ready: {why}\n")),
            },
            _ => Response::text(404, "not found: the paths are /metrics, /healthz and /readyz\n"),
        }
    }
}
