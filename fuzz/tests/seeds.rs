//! The hand-made part of the seed corpus, as code: valid frames of every
//! type, a stream of them, a 4 GiB length field, real handshake transcripts
//! (honest, wrong secret, wrong cluster, self connection, reflected nonce,
//! empty secret), operation sequences for both `ops` modes.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml --test seeds -- --ignored`
//! rewrites them as `corpus/<target>/seed-*`; the other tests check that
//! the transcripts do what their names say.

use headcount::internals::wire::{self, ByeCode, Delta, Entry, Frame, Hello, Snapshot, MAX_TOPIC_ID};
use headcount_fuzz::handshake::{handshake_outcome, honest_handshake_ops, Outcome, OP_DELIVER_AB};
use headcount_fuzz::CountingAlloc;
use std::path::Path;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn frames() -> Vec<(&'static str, Frame)> {
    let hello = Hello {
        version: 1,
        cluster: "prod".into(),
        node_name: "a".into(),
        node_id: 1,
        incarnation: 2,
        listen: "127.0.0.1:4000".into(),
        nonce: [7; 32],
    };
    let e = |id: u32, name: Option<&[u8]>, count: u64| Entry { id, name: name.map(Into::into), count };
    vec![
        ("hello", Frame::Hello(hello.clone())),
        ("hello-empty", Frame::Hello(Hello { cluster: String::new(), listen: String::new(), ..hello })),
        ("auth", Frame::Auth { mac: [0xab; 32] }),
        ("snapshot-one", Frame::Snapshot(Snapshot { seq: 1, first: true, last: true, entries: vec![] })),
        (
            "snapshot-part",
            Frame::Snapshot(Snapshot {
                seq: 2,
                first: false,
                last: false,
                entries: vec![e(0, Some(b"room:1"), 3), e(MAX_TOPIC_ID, None, u64::MAX)],
            }),
        ),
        ("delta", Frame::Delta(Delta { seq: 7, entries: vec![e(0, Some(b"room:1"), 3), e(0, None, 300)] })),
        ("heartbeat", Frame::Heartbeat { last_seq: 0 }),
        ("peers", Frame::Peers { addrs: vec!["127.0.0.1:1".into(), "[::1]:65535".into()] }),
        ("bye", Frame::Bye { code: ByeCode::SHUTDOWN, message: "leaving".into() }),
        ("bye-unknown", Frame::Bye { code: ByeCode(u64::MAX), message: "héllo".into() }),
    ]
}

fn frame_decode_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stream = Vec::new();
    for (name, f) in frames() {
        let bytes = wire::encode_to_vec(&f).unwrap();
        stream.extend_from_slice(&bytes);
        for ctl in [0u8, 1] {
            out.push((format!("{name}-cap{ctl}"), [&[ctl][..], &bytes].concat()));
        }
        // Type byte and body, for the checksum-free body check.
        out.push((format!("{name}-body"), [&[1u8][..], &bytes[4..bytes.len() - 4]].concat()));
    }
    out.push(("stream-whole".into(), [&[0b11u8][..], &stream].concat()));
    out.push(("stream-pieces".into(), [&[0b1011_0111u8][..], &stream].concat()));
    // A 4 GiB length field, a 4 KiB + 1 one under the handshake cap, zero.
    out.push(("len-4gib".into(), vec![1, 0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 0]));
    out.push(("len-over-handshake-cap".into(), vec![0, 0x01, 0x10, 0, 0, 4, 0, 0]));
    out.push(("len-zero".into(), vec![1, 0, 0, 0, 0, 5, 0]));
    // A DELTA claiming 2^62 entries in a short body.
    out.push(("delta-huge-count".into(), vec![1, 4, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]));
    out
}

/// Op codes of the `handshake` target.
const REPLAY: u8 = 5;
const TICK: u8 = 6;
const SNAPSHOT: u8 = 7;
const DELTA: u8 = 8;
const PEERS: u8 = 9;
const BIG_SNAPSHOT: u8 = 12;
const PUMP: u8 = 13;

fn handshake_seeds() -> Vec<(String, Vec<u8>)> {
    // HELLO A->B, HELLO and AUTH B->A, AUTH A->B, as the Conn pair runs it.
    let handshake = honest_handshake_ops();
    let transcript = |flags: u8, rest: &[u8]| [&[flags, 0][..], &handshake, rest].concat();
    let state = [
        // Snapshots both ways (2 entries each), a delta, peers, then deliver.
        &[SNAPSHOT, 0, 2, 0, 3, 1, 5][..],
        &[SNAPSHOT, 1, 2, 2, 1, 3, 7],
        &[PUMP],
        &[DELTA, 0, 2, 0, 0, 2, 4],
        &[PEERS, 1, 0],
        &[TICK, 50, 0],
        &[PUMP],
    ]
    .concat();
    vec![
        ("honest".into(), transcript(0, &state)),
        ("honest-soft-cap".into(), [&[0, 3][..], &handshake, &state].concat()),
        ("honest-big-snapshot".into(), transcript(0, &[BIG_SNAPSHOT, 0, 20, 2, PUMP, BIG_SNAPSHOT, 1, 3, 0, PUMP])),
        ("honest-heartbeats".into(), transcript(0, &[SNAPSHOT, 0, 0, PUMP, TICK, 200, 0, PUMP, TICK, 200, 0, PUMP])),
        ("empty-secret".into(), transcript(16, &state)),
        ("wrong-secret".into(), transcript(1, &state)),
        ("wrong-cluster".into(), transcript(2, &[])),
        ("self-connection".into(), transcript(4, &[])),
        ("reflected-nonce".into(), transcript(8, &[])),
        ("handshake-timeout".into(), [&[0, 0, OP_DELIVER_AB][..], &[TICK, 0x88, 0x13, PUMP]].concat()),
        // Replay frames recorded on another connection, to each side.
        ("replay".into(), [&[0, 0, OP_DELIVER_AB, REPLAY, 0, 1, REPLAY, 1, 2][..], &handshake, &state].concat()),
        ("send-before-auth".into(), [&[0, 0][..], &[SNAPSHOT, 0, 1, 0, 1, DELTA, 1, 0, PEERS, 0, 0, PUMP]].concat()),
    ]
}

fn ops_seeds() -> Vec<(String, Vec<u8>)> {
    // Header: mode, max_len, gc, names; then "3 names": "ab", "c", "" (invalid).
    let names = [2, 2, b'a', b'b', 1, b'c', 0];
    let ops = [
        0, 0, 1, // track ab 1
        0, 0, 2, // track ab 2
        0, 1, 1, // track c 1
        0, 0, 1, // track ab 1 again
        3, 1, 5, // add c +5
        4, 0, // drain
        1, 0, 2, // untrack ab 2
        3, 1, 0xfb, // add c -5
        2, 1, // untrack_all 1
        6, 10, // drain + gc
        0, 2, 3, // track "" (invalid)
        7, 0, 4, // track/track/untrack/track ab 4
        6, 10, 5, 10, 6, 10,
    ];
    let bulk = [
        8, 40, 1, // conn 1 joins 40 bulk topics
        8, 48, 2, // conn 2 joins all 48
        4, 0, // drain
        9, 20, 2, 1, // conn 1 leaves every other from 20: 30 left
        9, 0, 1, 1, // conn 1 leaves the rest
        9, 10, 1, 2, // conn 2 keeps 10
        0, 0, 2, // and joins "ab"
        6, 5, // flusher tick
        2, 2, // conn 2 goes away
        6, 5,
    ];
    vec![
        ("mixed".into(), [&[0b0000_0110, 9, 0][..], &names, &ops].concat()),
        ("gc".into(), [&[0b0000_0011, 9, 0][..], &names, &ops].concat()),
        ("gc-slow".into(), [&[0b0000_1001, 9, 3][..], &names, &ops].concat()),
        ("short-topics".into(), [&[0b0000_0001, 1, 1][..], &names, &ops].concat()),
        // One connection in 40 and 48 topics (past the registry's list of
        // 32), then out of them again, in steps.
        ("bulk".into(), [&[0b0000_0010, 9, 0][..], &names, &bulk].concat()),
        ("bulk-gc".into(), [&[0b0000_0011, 9, 0][..], &names, &bulk].concat()),
    ]
}

/// Named inputs of one target.
type Seeds = Vec<(String, Vec<u8>)>;

fn all_seeds() -> Vec<(&'static str, Seeds)> {
    vec![("frame_decode", frame_decode_seeds()), ("handshake", handshake_seeds()), ("ops", ops_seeds())]
}

#[test]
#[ignore = "rewrites corpus/*/seed-*; run by hand after changing a target's input format"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in all_seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}

#[test]
fn seeds_pass_their_targets() {
    for (target, seeds) in all_seeds() {
        let f = headcount_fuzz::TARGETS.iter().find(|(n, _)| *n == target).unwrap().1;
        for (name, bytes) in seeds {
            println!("{target}/{name}");
            f(&bytes);
        }
    }
}

#[test]
fn handshake_transcripts_do_what_they_say() {
    let seeds: std::collections::HashMap<String, Vec<u8>> = handshake_seeds().into_iter().collect();
    let outcome = |name: &str| handshake_outcome(&seeds[name]);
    let both = Outcome { authed: [true; 2], synced: [true; 2] };
    assert_eq!(outcome("honest"), both);
    assert_eq!(outcome("honest-soft-cap"), both);
    assert_eq!(outcome("honest-big-snapshot"), both);
    assert_eq!(outcome("empty-secret"), both);
    assert_eq!(outcome("replay").authed, [false, false], "a replay of another connection's AUTH authenticated");
    for name in ["wrong-secret", "wrong-cluster", "self-connection", "reflected-nonce", "handshake-timeout"] {
        assert_eq!(outcome(name), Outcome { authed: [false; 2], synced: [false; 2] }, "{name}");
    }
    assert_eq!(outcome("send-before-auth").authed, [true, true]);
}
