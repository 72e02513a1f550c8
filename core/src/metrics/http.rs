//! The HTTP/1.1 side of the metrics server: one request per connection,
//! read under a size cap and a deadline, parsed by `httparse` (hyper's
//! parser), answered with `Connection: close`, then closed.
//!
//! | bound | value | when it is hit |
//! |-------|-------|----------------|
//! | request head (line and headers) | [`MAX_HEAD`] bytes, read into a fixed buffer | 414 if no line ended yet, else 431 |
//! | headers | [`MAX_HEADERS`] | 431 |
//! | time to send the head | [`HEAD_DEADLINE`] | 408 |
//! | time to take the response | [`WRITE_DEADLINE`] | the connection is dropped |
//! | node closing while a client is slow | one [`POLL`] | the connection is dropped unanswered |
//!
//! A request body is never read (no endpoint takes one). After answering,
//! what the client still sends is read and dropped for a moment (up to
//! [`LINGER_BYTES`] during [`LINGER`]) before closing, so that the kernel
//! does not reset the connection, and lose the answer, because unread bytes
//! were left behind (the "lingering close" of RFC 9112 section 9.6).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::sync::{AtomicBool, Ordering};

/// The most bytes of request head read.
pub(super) const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may have.
pub(super) const MAX_HEADERS: usize = 32;
/// How long a client has to send its whole request head.
pub(super) const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client has to take the whole response.
pub(super) const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// How often a read waiting on the client checks whether the node closes.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// The most bytes read and dropped after answering.
pub(super) const LINGER_BYTES: usize = 64 * 1024;
/// How long to read and drop after answering.
pub(super) const LINGER: Duration = Duration::from_millis(200);

/// What the router needs of a request.
#[derive(Debug)]
pub(super) struct Request<'a> {
    pub(super) method: &'a str,
    /// The path, without the query string.
    pub(super) path: &'a str,
    /// The `Accept` header, if it is UTF-8.
    pub(super) accept: Option<&'a str>,
}

/// An answer: a status, and a body of one content type.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) body: String,
}

impl Response {
    /// A plain-text answer.
    pub(super) fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }

    /// The whole response as sent: status line, headers, body.
    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Serves one connection: reads one request, answers it with `route`,
/// closes. Gives up (closing unanswered) when `stop` is set.
pub(super) fn serve_one(mut stream: TcpStream, stop: &AtomicBool, route: impl FnOnce(&Request<'_>) -> Response) {
    let mut buf = vec![0u8; MAX_HEAD];
    let response = match read_head(&mut stream, &mut buf, stop) {
        Ok(len) => {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match (req.parse(&buf[..len]), req.method, req.path) {
                (Ok(httparse::Status::Complete(_)), Some(method), Some(target)) => {
                    let accept = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("accept"))
                        .and_then(|h| std::str::from_utf8(h.value).ok());
                    let path = target.split_once('?').map_or(target, |(p, _)| p);
                    route(&Request { method, path, accept })
                }
                _ => Response::text(400, "bad request\n"),
            }
        }
        Err(Some(refusal)) => refusal,
        Err(None) => return,
    };
    if write_all_by(&mut stream, &response.to_bytes(), Instant::now() + WRITE_DEADLINE).is_ok() {
        linger(&mut stream);
    }
}

/// Reads until `buf[..n]` holds a whole request head, and returns `n`; or
/// the answer that refuses the request; or `None` to close unanswered
/// (the client left, the socket failed, or the node closes).
fn read_head(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> Result<usize, Option<Response>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut n = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf[..n]) {
            Ok(httparse::Status::Complete(_)) => return Ok(n),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Some(Response::text(431, format!("more than {MAX_HEADERS} headers\n"))))
            }
            Err(e) => return Err(Some(Response::text(400, format!("bad request: {e}\n")))),
        }
        if n == buf.len() {
            return Err(Some(if buf.contains(&b'\n') {
                Response::text(431, format!("request head over {MAX_HEAD} bytes\n"))
            } else {
                Response::text(414, format!("request line over {MAX_HEAD} bytes\n"))
            }));
        }
        if stop.load(Ordering::Acquire) {
            return Err(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Some(Response::text(408, "request not received in time\n")));
        }
        if stream.set_read_timeout(Some(left.min(POLL))).is_err() {
            return Err(None);
        }
        match stream.read(&mut buf[n..]) {
            Ok(0) => return Err(None),
            Ok(k) => n += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return Err(None),
        }
    }
}

/// Writes all of `bytes` before `deadline`, or fails.
fn write_all_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(k) => bytes = &bytes[k..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Half-closes, then reads and drops what the client still sends, within
/// [`LINGER_BYTES`] and [`LINGER`].
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(k) => left = left.saturating_sub(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_has_length_type_and_close() {
        let r = Response::text(405, "no\n").to_bytes();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Connection: close\r\nAllow: GET\r\n\r\nno\n"
        );
    }
}
