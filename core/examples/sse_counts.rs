//! Live room counts over Server-Sent Events: a small web server on a
//! headcount node (axum + tokio).
//!
//! `GET /rooms/{room}/events` tracks the client in `room` for as long as its
//! connection is open and streams the room's cluster-wide count, one
//! `data: <count>` event now and one each time it changes (polled every
//! 100 ms); when the client goes, the stream is dropped and the client is
//! untracked. `GET /rooms/{room}` answers the count once, as text.
//!
//! ```sh
//! cargo run -p headcount --example sse_counts -- 127.0.0.1:8080
//! curl -N http://127.0.0.1:8080/rooms/lobby/events     # data: 1, then 2 when a second client joins
//! ```
//!
//! Node settings come from `HEADCOUNT_<KEY>` environment variables, one per
//! config key (`HEADCOUNT_LISTEN`, `HEADCOUNT_SEEDS`, `HEADCOUNT_SECRET`,
//! ...), so two of these servers on one machine form a cluster and count
//! each other's clients. `cargo test -p headcount --example sse_counts` runs
//! the test at the bottom: two SSE clients on loopback see 1, 2, 1.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use headcount::{Config, Node};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a stream reads its room's count.
const POLL: Duration = Duration::from_millis(100);

/// What every request handler shares.
struct App {
    node: Node,
    /// headcount connection ids, one per SSE client.
    next_conn: AtomicU64,
}

/// One client in one room, untracked when dropped (when its stream is).
struct Presence {
    app: Arc<App>,
    room: String,
    conn: u64,
}

impl Drop for Presence {
    fn drop(&mut self) {
        // Only a closed node fails here, and then there is nothing to undo.
        let _ = self.app.node.untrack_all(self.conn);
    }
}

/// The server's routes over `node`.
fn router(node: Node) -> Router {
    let app = Arc::new(App { node, next_conn: AtomicU64::new(1) });
    Router::new().route("/rooms/{room}", get(count)).route("/rooms/{room}/events", get(events)).with_state(app)
}

async fn count(State(app): State<Arc<App>>, Path(room): Path<String>) -> Result<String, (StatusCode, String)> {
    app.node.count(&room).map(|n| format!("{n}\n")).map_err(bad_request)
}

async fn events(
    State(app): State<Arc<App>>,
    Path(room): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, (StatusCode, String)> {
    let conn = app.next_conn.fetch_add(1, Ordering::Relaxed);
    app.node.track(&room, conn).map_err(bad_request)?;
    let presence = Presence { app, room, conn };
    // State: the presence (dropped with the stream) and the last count sent.
    let counts = stream::unfold((presence, None), |(p, last)| async move {
        let mut first = last.is_none();
        loop {
            if !first {
                tokio::time::sleep(POLL).await;
            }
            first = false;
            let Ok(n) = p.app.node.count(&p.room) else { return None };
            if Some(n) != last {
                return Some((Ok(Event::default().data(n.to_string())), (p, Some(n))));
            }
        }
    });
    // The keep-alive comment is also what finds a client that left while
    // the count stood still (a write to a closed socket ends the stream).
    Ok(Sse::new(counts).keep_alive(KeepAlive::new().interval(Duration::from_millis(500))))
}

fn bad_request(e: headcount::Error) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, format!("{e}\n"))
}

/// The node's config from `HEADCOUNT_<KEY>` variables.
fn config_from_env() -> Result<Config, headcount::Error> {
    let mut cfg = Config::new();
    for key in headcount::CONFIG_KEYS {
        if let Ok(value) = std::env::var(format!("HEADCOUNT_{}", key.to_ascii_uppercase())) {
            cfg.set(key, &value)?;
        }
    }
    cfg.validate()?;
    Ok(cfg)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let node = Node::start(&config_from_env()?)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http://{}/rooms/{{room}}/events (node {})", listener.local_addr()?, node.name());
    axum::serve(listener, router(node)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    /// Generous: the machine may be loaded.
    const WAIT: Duration = Duration::from_secs(30);

    /// A client of `GET path`, reading its `data:` events.
    struct Client(BufReader<TcpStream>);

    impl Client {
        async fn connect(addr: std::net::SocketAddr, path: &str) -> Client {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
                .await
                .unwrap();
            Client(BufReader::new(s))
        }

        /// The next event's data (headers, comments and chunk framing skipped).
        async fn next(&mut self) -> String {
            let read = async {
                let mut line = String::new();
                loop {
                    line.clear();
                    assert!(self.0.read_line(&mut line).await.unwrap() > 0, "the server closed the stream");
                    if let Some(data) = line.trim_end().strip_prefix("data: ") {
                        return data.to_owned();
                    }
                }
            };
            timeout(WAIT, read).await.expect("an event in time")
        }
    }

    #[tokio::test]
    async fn two_clients_count_one_two_one() {
        let node = Node::start(&Config::new()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(node);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let count = || async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /rooms/lobby HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut body = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut body).await.unwrap();
            body.rsplit("\r\n\r\n").next().unwrap().trim().parse::<u64>().unwrap()
        };

        let mut one = Client::connect(addr, "/rooms/lobby/events").await;
        assert_eq!(one.next().await, "1");
        let mut two = Client::connect(addr, "/rooms/lobby/events").await;
        assert_eq!(two.next().await, "2");
        assert_eq!(one.next().await, "2");
        assert_eq!(count().await, 2);
        // Another room is counted apart.
        let mut other = Client::connect(addr, "/rooms/kitchen/events").await;
        assert_eq!(other.next().await, "1");
        drop(other);

        drop(two);
        assert_eq!(one.next().await, "1", "the second client's disconnect untracks it");
        drop(one);
        let deadline = tokio::time::Instant::now() + WAIT;
        while count().await != 0 {
            assert!(tokio::time::Instant::now() < deadline, "the last client's disconnect untracks it");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_bad_room_is_a_400() {
        let node = Node::start(&Config::builder().max_topic_len(4).build().unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(node)).await.unwrap() });
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /rooms/toolong/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        timeout(WAIT, tokio::io::AsyncReadExt::read_to_string(&mut s, &mut reply)).await.unwrap().unwrap();
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(reply.contains("topic is 7 bytes"), "{reply}");
    }
}
