//! One sidecar API session: a client socket speaking the line protocol,
//! and the books that let everything it added be withdrawn when it closes.
//!
//! **Connection ids are per session.** Two app servers that both call their
//! first user `1` must not share that user, so a session never hands a
//! client's `conn` to the node as is: the first `track` of a client conn
//! allocates an internal id from one counter shared by all sessions
//! ([`FIRST_ID`] up; `0` is never allocated, so an `untrack` of a conn the
//! session does not know goes to id 0 and answers `ok 0`). The [`Ledger`]
//! maps client conn -> (internal id, pairs tracked) and drops the entry
//! when its pairs reach zero, so it holds only live connections. A client
//! that wants two sockets to share users must route each user to one
//! socket.
//!
//! **What a session adds, it takes back.** When the socket closes (end of
//! input, `quit`, a reset, a crashed client, the server shutting down) the
//! session calls `untrack_all` on each internal id it holds and undoes the
//! net `add` it made to each topic. Counts are therefore session-scoped,
//! like an Erlang monitor's: a crashed app server's users disappear at once.
//!
//! Answers are flushed when no more input is buffered, so a client that
//! pipelines many commands gets them back in few writes.
//!
//! **Watches are per session.** Each `watch` starts a forwarder thread
//! ([`crate::feed::forward`]) that writes `change` lines to the session's
//! socket, under the same lock as the answers (so a line is never split);
//! the forwarders stop, and their watches end, when the session does.

use super::api::{Shared, Stream};
use crate::feed;
use crate::protocol::{self, Answer, Effect, Next, Request, MAX_LINE};
use headcount::Node;
use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// The first internal connection id; `0` stays untracked.
pub(crate) const FIRST_ID: u64 = 1;

/// The internal id of a client conn with nothing tracked.
const UNTRACKED: u64 = 0;

/// A live client connection: its internal id and how many topics it is in.
#[derive(Debug, Clone, Copy)]
struct Conn {
    id: u64,
    pairs: u64,
}

/// What one session has added to the node.
#[derive(Debug)]
pub(crate) struct Ledger<'a> {
    ids: &'a AtomicU64,
    conns: HashMap<u64, Conn>,
    /// Net `add` per topic (i128: a session may add i64::MAX twice).
    added: HashMap<Vec<u8>, i128>,
}

/// What [`Ledger::withdraw`] took back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Withdrawn {
    pub(crate) conns: usize,
    pub(crate) pairs: u64,
    pub(crate) topics_added: usize,
    /// Calls that failed (the node was already closed, say).
    pub(crate) errors: usize,
}

impl<'a> Ledger<'a> {
    pub(crate) fn new(ids: &'a AtomicU64) -> Self {
        Self { ids, conns: HashMap::new(), added: HashMap::new() }
    }

    /// Parses and runs one line for this session.
    pub(crate) fn handle(&mut self, node: &Node, line: &[u8]) -> Answer {
        let request = match protocol::parse(line) {
            Ok(r) => r,
            Err(message) => return Answer::error(&message),
        };
        let internal = self.map(&request);
        let answer = protocol::execute(node, &internal);
        self.record(&request, answer.effect);
        answer
    }

    /// `request` with the client's conn replaced by the internal id.
    fn map<'r>(&mut self, request: &Request<'r>) -> Request<'r> {
        match *request {
            Request::Track(topic, conn) => {
                let ids = self.ids;
                let c = self
                    .conns
                    .entry(conn)
                    .or_insert_with(|| Conn { id: ids.fetch_add(1, Ordering::Relaxed), pairs: 0 });
                Request::Track(topic, c.id)
            }
            Request::Untrack(topic, conn) => Request::Untrack(topic, self.id(conn)),
            Request::UntrackAll(conn) => Request::UntrackAll(self.id(conn)),
            ref other => other.clone(),
        }
    }

    fn id(&self, conn: u64) -> u64 {
        self.conns.get(&conn).map_or(UNTRACKED, |c| c.id)
    }

    /// Books what `request` (in client terms) did.
    fn record(&mut self, request: &Request<'_>, effect: Effect) {
        let conn = match *request {
            Request::Track(_, c) | Request::Untrack(_, c) | Request::UntrackAll(c) => c,
            Request::Add(topic, _) => {
                if let Effect::Added { delta } = effect {
                    let net = self.added.entry(topic.to_vec()).or_insert(0);
                    *net += i128::from(delta);
                    if *net == 0 {
                        self.added.remove(topic);
                    }
                }
                return;
            }
            _ => return,
        };
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Effect::Pairs { delta, .. } = effect {
            c.pairs = c.pairs.saturating_add_signed(delta);
        }
        if c.pairs == 0 {
            self.conns.remove(&conn);
        }
    }

    /// Takes back everything this session added.
    pub(crate) fn withdraw(self, node: &Node) -> Withdrawn {
        let mut w = Withdrawn::default();
        for c in self.conns.values() {
            match node.untrack_all(c.id) {
                Ok(n) => {
                    w.conns += 1;
                    w.pairs += n as u64;
                }
                Err(_) => w.errors += 1,
            }
        }
        for (topic, mut net) in self.added {
            w.topics_added += 1;
            // Undo in i64-sized steps.
            while net != 0 {
                let step = net.clamp(i128::from(i64::MIN) + 1, i128::from(i64::MAX));
                if node.add(&topic, -(step as i64)).is_err() {
                    w.errors += 1;
                    break;
                }
                net -= step;
            }
        }
        w
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    Eof,
    Quit,
    Io(io::Error),
}

/// Serves one client until its socket closes, then withdraws its books.
/// Returns the log line that says so.
pub(crate) fn run(shared: &Shared, id: u64, stream: Stream) -> String {
    let mut ledger = Ledger::new(&shared.ids);
    let mut watches = Watches::default();
    let end = match stream_pair(stream) {
        Ok((mut reader, writer)) => {
            serve(shared, &mut ledger, &mut watches, &mut reader, &Arc::new(Mutex::new(writer)))
        }
        Err(e) => End::Io(e),
    };
    watches.stop();
    let w = ledger.withdraw(&shared.node);
    let why = match &end {
        End::Eof => "end of input".to_owned(),
        End::Quit => "quit".to_owned(),
        End::Io(e) => format!("socket error: {e}"),
    };
    let errors = if w.errors > 0 { format!(" ({} calls failed)", w.errors) } else { String::new() };
    format!(
        "api session {id} closed ({why}): withdrew {} connections, {} pairs, adds to {} topics{errors}",
        w.conns, w.pairs, w.topics_added
    )
}

fn stream_pair(stream: Stream) -> io::Result<(BufReader<Stream>, BufWriter<Stream>)> {
    let write_half = stream.try_clone()?;
    Ok((BufReader::new(stream), BufWriter::new(write_half)))
}

/// The session's output, shared by its thread and its watch forwarders.
type Writer = Arc<Mutex<BufWriter<Stream>>>;

fn lock(w: &Writer) -> std::sync::MutexGuard<'_, BufWriter<Stream>> {
    // A forwarder that panicked mid-write leaves at worst a partial line.
    w.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A session's watch forwarders.
#[derive(Debug, Default)]
struct Watches {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Watches {
    /// Forwards `watch`'s changes to `w`.
    fn start(&mut self, watch: headcount::Watch, w: &Writer) -> io::Result<()> {
        let w = w.clone();
        let sink = move |lines: &[String]| {
            let mut w = lock(&w);
            lines.iter().try_for_each(|l| writeln!(w, "{l}")).and_then(|()| w.flush()).is_ok()
        };
        self.threads.push(feed::forward(watch, self.stop.clone(), sink)?);
        Ok(())
    }

    /// Stops every forwarder and waits for it (each checks every 100 ms).
    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.threads.into_iter().for_each(|t| drop(t.join()));
    }
}

fn serve(
    shared: &Shared,
    ledger: &mut Ledger<'_>,
    watches: &mut Watches,
    reader: &mut BufReader<Stream>,
    w: &Writer,
) -> End {
    let greeted = {
        let mut w = lock(w);
        writeln!(w, "{}", shared.ready).and_then(|()| w.flush())
    };
    if let Err(e) = greeted {
        return End::Io(e);
    }
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let mut answer = match protocol::read_line_bounded(reader, &mut buf, MAX_LINE) {
            Ok(Some(true)) => ledger.handle(&shared.node, &buf),
            Ok(Some(false)) => protocol::too_long(),
            Ok(None) => return End::Eof,
            Err(e) => return End::Io(e),
        };
        let quit = answer.next == Next::Quit;
        let flushed = {
            let mut w = lock(w);
            let written = answer.lines().try_for_each(|l| writeln!(w, "{l}"));
            written.and_then(|()| if quit || reader.buffer().is_empty() { w.flush() } else { Ok(()) })
        };
        if let Err(e) = flushed {
            return End::Io(e);
        }
        if let Some(watch) = answer.watch.take() {
            if let Err(e) = watches.start(watch, w) {
                shared.log.warn(&format!("api: cannot start a watch thread ({e}); this watch sends nothing"));
            }
        }
        if quit {
            return End::Quit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headcount::Config;

    fn run<'a>(l: &mut Ledger<'a>, node: &Node, line: &str) -> String {
        l.handle(node, line.as_bytes()).line
    }

    #[test]
    fn two_sessions_with_the_same_conn_do_not_collide() {
        let node = Node::start(&Config::new()).unwrap();
        let ids = AtomicU64::new(FIRST_ID);
        let (mut a, mut b) = (Ledger::new(&ids), Ledger::new(&ids));
        assert_eq!(run(&mut a, &node, "track room 1"), "ok 1");
        assert_eq!(run(&mut b, &node, "track room 1"), "ok 1", "b's user 1 is not a's");
        assert_eq!(run(&mut a, &node, "track room 1"), "ok 0");
        assert_eq!(run(&mut a, &node, "track hall 1"), "ok 1");
        assert_eq!(node.count(b"room").unwrap(), 2);
        // b cannot untrack a's user, nor a b's.
        assert_eq!(run(&mut b, &node, "untrack hall 1"), "ok 0");
        assert_eq!(run(&mut b, &node, "untrack_all 1"), "ok 1");
        assert_eq!(run(&mut b, &node, "untrack_all 1"), "ok 0");
        assert_eq!(node.count(b"room").unwrap(), 1);
        assert_eq!(run(&mut a, &node, "untrack_all 1"), "ok 2");
        assert_eq!(node.total().unwrap(), 0);
        // Both ledgers are empty again: nothing to withdraw.
        assert_eq!(a.withdraw(&node), Withdrawn::default());
        assert_eq!(b.withdraw(&node), Withdrawn::default());
    }

    #[test]
    fn withdraw_takes_back_tracks_and_adds_of_one_session_only() {
        let node = Node::start(&Config::new()).unwrap();
        let ids = AtomicU64::new(FIRST_ID);
        let (mut a, mut b) = (Ledger::new(&ids), Ledger::new(&ids));
        for line in
            ["track room 1", "track room 2", "track hall 2", "add raw 5", "add raw -2", "add gone 3", "add gone -3"]
        {
            run(&mut a, &node, line);
        }
        run(&mut a, &node, "untrack room 1");
        assert_eq!(run(&mut b, &node, "track room 7"), "ok 1");
        assert_eq!(run(&mut b, &node, "add raw 1"), "ok");
        assert_eq!(node.count(b"room").unwrap(), 2);
        assert_eq!(node.count(b"raw").unwrap(), 4);
        assert_eq!(a.conns.len(), 1, "user 1 left its only topic: no longer booked");
        let w = a.withdraw(&node);
        assert_eq!(w, Withdrawn { conns: 1, pairs: 2, topics_added: 1, errors: 0 });
        assert_eq!(node.count(b"room").unwrap(), 1);
        assert_eq!(node.count(b"hall").unwrap(), 0);
        assert_eq!(node.count(b"raw").unwrap(), 1);
        assert_eq!(b.withdraw(&node).pairs, 1);
        assert_eq!(node.total().unwrap(), 0);
    }

    #[test]
    fn huge_adds_are_undone_exactly() {
        let node = Node::start(&Config::new()).unwrap();
        let ids = AtomicU64::new(FIRST_ID);
        let mut a = Ledger::new(&ids);
        run(&mut a, &node, &format!("add big {}", i64::MAX));
        run(&mut a, &node, &format!("add big {}", i64::MAX));
        run(&mut a, &node, "add small -4");
        a.withdraw(&node);
        node.add(b"small", 4).unwrap();
        assert_eq!(node.count(b"big").unwrap(), 0);
        assert_eq!(node.count(b"small").unwrap(), 4, "the -4 was undone: +4 now shows 4");
    }

    #[test]
    fn errors_change_no_books() {
        let node = Node::start(&Config::new()).unwrap();
        let ids = AtomicU64::new(FIRST_ID);
        let mut a = Ledger::new(&ids);
        let long = "x".repeat(2000);
        assert!(run(&mut a, &node, &format!("track {long} 1")).starts_with("err topic is 2000 bytes"));
        assert!(run(&mut a, &node, "track room").starts_with("err usage"));
        assert!(run(&mut a, &node, &format!("add {long} 1")).starts_with("err"));
        assert!(a.conns.is_empty() && a.added.is_empty());
        assert_eq!(run(&mut a, &node, "untrack room 5"), "ok 0");
        assert_eq!(ids.load(Ordering::Relaxed), FIRST_ID + 1, "one id was taken by the failed track, none since");
    }
}
