//! The change feed over the line protocol: `watch <prefix>` hands a
//! [`Watch`] to the caller (`headcount node` or a sidecar session), which
//! runs [`forward`] on a thread of its own: every change becomes one line
//! `change <topic> <count> <users>` for the caller's sink, interleaved with
//! the answers on the same output.

use headcount::{Change, Watch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a forwarder checks whether its session ended.
const POLL: Duration = Duration::from_millis(100);

/// `topic` as one whitespace-free token: its bytes when they are UTF-8
/// without whitespace, control characters or backslashes, else with each
/// offending byte written as `\xNN`.
pub(crate) fn token(topic: &[u8]) -> String {
    let plain = |c: char| !c.is_whitespace() && !c.is_control() && c != '\\';
    match std::str::from_utf8(topic) {
        Ok(s) if s.chars().all(plain) => s.to_owned(),
        _ => {
            let mut out = String::with_capacity(topic.len() * 2);
            for chunk in topic.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if plain(c) {
                        out.push(c);
                    } else {
                        let mut b = [0; 4];
                        c.encode_utf8(&mut b).bytes().for_each(|b| out.push_str(&format!("\\x{b:02x}")));
                    }
                }
                chunk.invalid().iter().for_each(|b| out.push_str(&format!("\\x{b:02x}")));
            }
            out
        }
    }
}

/// The line for one change.
pub(crate) fn change_line(c: &Change) -> String {
    format!("change {} {} {}", token(&c.topic), c.count, c.users)
}

/// Starts a thread that passes every change of `watch` to `sink` as a line,
/// until `sink` returns `false` (its output is gone), `stop` is set, or the
/// node closes; the watch ends with the thread.
pub(crate) fn forward(
    mut watch: Watch,
    stop: Arc<AtomicBool>,
    mut sink: impl FnMut(&[String]) -> bool + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("watch".into()).spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let Ok(batch) = watch.next_batch(POLL) else { return };
            if !batch.is_empty() && !sink(&batch.iter().map(change_line).collect::<Vec<_>>()) {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_whitespace_free_and_plain_topics_unchanged() {
        assert_eq!(token(b"room:1"), "room:1");
        assert_eq!(token("café".as_bytes()), "café");
        assert_eq!(token(b"a b\nc"), "a\\x20b\\x0ac");
        assert_eq!(token(b"\xff\\x"), "\\xff\\x5cx");
    }
}
