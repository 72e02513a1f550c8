//! The sidecar API: `headcount serve --api unix:/path` (or
//! `127.0.0.1:PORT`) accepts many clients at once, each speaking the line
//! protocol of [`crate::protocol`] over its socket, and each its own
//! session ([`super::session`]): what a session tracked is withdrawn when
//! its socket closes, however it closes.
//!
//! One thread per session, at most `api_max_sessions` at once; a client
//! over the cap is answered `err too many sessions ...` and closed. TCP
//! endpoints must be loopback addresses: the API has no authentication, so
//! it is only for programs on the same machine (a unix socket's file mode
//! says who may connect).
//!
//! Shut-down ([`Api::stop_accepting`], then [`Api::close_sessions`]): the
//! acceptors are woken by a connection of our own and joined, the socket
//! files removed, every session's socket shut down (its client reads end
//! of input), and the sessions waited for, a bounded time.

use super::session;
use crate::log::Log;
use headcount::Node;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`Api::close_sessions`] waits for the sessions to end.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A session thread's stack: the protocol needs little.
const SESSION_STACK: usize = 256 * 1024;

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Parses `unix:/path,127.0.0.1:7480,...` (an empty list is no API).
pub(crate) fn parse_endpoints(value: &str) -> Result<Vec<Endpoint>, String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_endpoint).collect()
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{s:?} has no path"));
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let addrs: Vec<SocketAddr> =
        s.to_socket_addrs().map_err(|e| format!("{s:?} is neither unix:/path nor host:port ({e})"))?.collect();
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(a) => Err(format!(
            "{s:?} ({a}) is not a loopback address; the API has no authentication: use unix:/path or 127.0.0.1:PORT"
        )),
        None => addrs.first().copied().map(Endpoint::Tcp).ok_or_else(|| format!("{s:?} resolves to no address")),
    }
}

/// A client's socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }

    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(d),
            Stream::Tcp(s) => s.set_write_timeout(d),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

#[derive(Debug)]
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `at`. A unix socket file left by a process that is gone is
    /// replaced; one that a live process answers on, or a file that is not
    /// a socket, is an error.
    fn bind(at: &Endpoint) -> Result<(Listener, Endpoint), String> {
        match at {
            Endpoint::Tcp(addr) => {
                let l = TcpListener::bind(addr).map_err(|e| format!("api {at}: cannot listen: {e}"))?;
                let bound = l.local_addr().map_err(|e| format!("api {at}: {e}"))?;
                Ok((Listener::Tcp(l), Endpoint::Tcp(bound)))
            }
            Endpoint::Unix(path) => {
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if !meta.file_type().is_socket() {
                        return Err(format!("api {at}: the path exists and is not a socket"));
                    }
                    if UnixStream::connect(path).is_ok() {
                        return Err(format!("api {at}: another process is listening there"));
                    }
                    std::fs::remove_file(path).map_err(|e| format!("api {at}: cannot remove the stale socket: {e}"))?;
                }
                let l = UnixListener::bind(path).map_err(|e| format!("api {at}: cannot listen: {e}"))?;
                Ok((Listener::Unix(l), at.clone()))
            }
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        }
    }
}

/// What the acceptors and the sessions share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: Arc<Node>,
    /// The first line each session gets: `ready <listen-addr>`.
    pub(crate) ready: String,
    /// Internal connection ids, shared by every session (see [`session`]).
    pub(crate) ids: AtomicU64,
    pub(crate) log: Log,
    max_sessions: usize,
    stop: AtomicBool,
    sessions: Mutex<Sessions>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct Sessions {
    next: u64,
    /// A clone of each open session's socket, to shut it down.
    open: HashMap<u64, Stream>,
}

impl Shared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A session thread that panicked holding the lock leaves the map intact.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for `stream`, or refuses it.
    fn admit(self: &Arc<Self>, mut stream: Stream) {
        let refuse = |stream: &mut Stream, why: &str| {
            // Bounded: a client that does not read cannot hold the acceptor.
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = writeln!(stream, "{}", crate::protocol::error_line(why));
        };
        let mut sessions = self.sessions();
        if sessions.open.len() >= self.max_sessions {
            drop(sessions);
            let why = format!("too many sessions (api_max_sessions = {}); try again later", self.max_sessions);
            self.log.warn(&format!("api: refused a client: {why}"));
            refuse(&mut stream, &why);
            return;
        }
        let clone = match stream.try_clone() {
            Ok(c) => c,
            Err(e) => {
                self.log.warn(&format!("api: cannot start a session: {e}"));
                return;
            }
        };
        sessions.next += 1;
        let id = sessions.next;
        sessions.open.insert(id, clone);
        drop(sessions);
        let shared = self.clone();
        let spawned =
            std::thread::Builder::new().name(format!("api-session-{id}")).stack_size(SESSION_STACK).spawn(move || {
                let closed = session::run(&shared, id, stream);
                // Room for another client before the log says this one left.
                shared.sessions().open.remove(&id);
                shared.ended.notify_all();
                shared.log.info(&closed);
            });
        if let Err(e) = spawned {
            self.log.warn(&format!("api: cannot start a session thread: {e}"));
            if let Some(mut s) = self.sessions().open.remove(&id) {
                refuse(&mut s, "the server cannot start a session now; try again later");
            }
        }
    }
}

/// The running API.
#[derive(Debug)]
pub(crate) struct Api {
    shared: Arc<Shared>,
    /// Each bound endpoint with its acceptor thread.
    acceptors: Vec<(Endpoint, JoinHandle<()>)>,
}

impl Api {
    /// Binds every endpoint and starts accepting. On error nothing is left
    /// listening.
    pub(crate) fn start(node: Arc<Node>, endpoints: &[Endpoint], max_sessions: usize, log: Log) -> Result<Api, String> {
        let ready = format!("ready {}", node.local_addr().map_or_else(|| "-".to_owned(), |a| a.to_string()));
        let shared = Arc::new(Shared {
            node,
            ready,
            ids: AtomicU64::new(session::FIRST_ID),
            log,
            max_sessions,
            stop: AtomicBool::new(false),
            sessions: Mutex::new(Sessions::default()),
            ended: Condvar::new(),
        });
        let mut api = Api { shared, acceptors: Vec::new() };
        for at in endpoints {
            let (listener, bound) = match Listener::bind(at) {
                Ok(b) => b,
                Err(e) => {
                    api.stop_accepting();
                    return Err(e);
                }
            };
            let shared = api.shared.clone();
            let thread = std::thread::Builder::new().name(format!("api-accept {bound}")).spawn(move || loop {
                let accepted = listener.accept();
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                match accepted {
                    Ok(stream) => shared.admit(stream),
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        shared.log.warn(&format!("api: accept failed: {e}"));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
            match thread {
                Ok(t) => api.acceptors.push((bound, t)),
                Err(e) => {
                    api.stop_accepting();
                    return Err(format!("api {at}: cannot start the acceptor: {e}"));
                }
            }
        }
        Ok(api)
    }

    /// The endpoints actually bound (a TCP port 0 resolved).
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.acceptors.iter().map(|(e, _)| e)
    }

    /// Stops accepting: wakes and joins the acceptors, removes the socket
    /// files. Open sessions go on.
    pub(crate) fn stop_accepting(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (at, thread) in self.acceptors.drain(..) {
            let woken = match &at {
                Endpoint::Unix(p) => UnixStream::connect(p).map(drop),
                Endpoint::Tcp(a) => TcpStream::connect(a).map(drop),
            };
            // An acceptor we could not wake is left to the process's exit.
            if woken.is_ok() {
                let _ = thread.join();
            }
            if let Endpoint::Unix(p) = &at {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Shuts every session's socket down and waits (at most
    /// [`CLOSE_WAIT`]) for the sessions to withdraw and end. Returns how
    /// many were still open.
    pub(crate) fn close_sessions(mut self) -> usize {
        self.stop_accepting();
        let mut sessions = self.shared.sessions();
        for s in sessions.open.values() {
            s.shutdown();
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        while !sessions.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sessions = self.shared.ended.wait_timeout(sessions, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        sessions.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_paths_or_loopback_addresses() {
        assert_eq!(
            parse_endpoints("unix:/run/h.sock, 127.0.0.1:7480,").unwrap(),
            [Endpoint::Unix("/run/h.sock".into()), Endpoint::Tcp("127.0.0.1:7480".parse().unwrap())]
        );
        assert_eq!(parse_endpoints("").unwrap(), []);
        assert_eq!(parse_endpoints("[::1]:0").unwrap(), [Endpoint::Tcp("[::1]:0".parse().unwrap())]);
        assert!(parse_endpoints("unix:").unwrap_err().contains("no path"));
        assert!(parse_endpoints("0.0.0.0:7480").unwrap_err().contains("not a loopback address"));
        assert!(parse_endpoints("nowhere").unwrap_err().contains("neither unix:/path nor host:port"));
    }

    #[test]
    fn a_live_socket_is_not_stolen_and_a_file_is_not_removed() {
        let dir = std::env::temp_dir().join(format!("headcount-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, "keep me").unwrap();
        let e = Listener::bind(&Endpoint::Unix(file.clone())).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        let sock = Endpoint::Unix(dir.join("s"));
        let live = Listener::bind(&sock).unwrap();
        assert!(Listener::bind(&sock).unwrap_err().contains("another process"));
        // Gone (the file stays behind, as after a crash): replaced.
        drop(live);
        Listener::bind(&sock).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
