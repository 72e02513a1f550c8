use super::pair::{pump, Pair, A, B};
use super::*;

/// What a test node named `name` with node id `id` speaks with (cluster
/// `test`); the cluster's other unit tests use it too.
pub(in crate::cluster) fn params(name: &str, id: u64, secret: &[u8]) -> ConnParams {
    let settings = crate::Config::builder().cluster("test").down_after(std::time::Duration::from_millis(300));
    ConnParams {
        settings: Arc::new(settings.build().unwrap().settings().clone()),
        node_name: name.into(),
        node_id: id,
        incarnation: id * 100,
        listen: format!("127.0.0.1:{id}"),
        key: AuthKey::new(secret),
        handshake_timeout_ms: 1000,
        heartbeat_ms: 100,
        id_soft_cap: DEFAULT_ID_SOFT_CAP,
    }
}

fn drain_tx(c: &mut Conn) -> Vec<Frame> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn drain_ev(c: &mut Conn) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn pair(sa: &[u8], sb: &[u8]) -> (Conn, Conn) {
    let a = Conn::new(&params("a", 1, sa), Role::Dialer, [1; 32], 0);
    let b = Conn::new(&params("b", 2, sb), Role::Acceptor, [2; 32], 0);
    (a, b)
}

fn established() -> (Conn, Conn) {
    let (a, b) = pair(b"s3cret", b"s3cret");
    let mut p = Pair::new(a, b);
    // HELLO a->b; HELLO, AUTH b->a (a established); AUTH a->b (b established).
    let dirs: Vec<usize> = p.run(1).into_iter().map(|(from, _)| from).collect();
    assert_eq!(dirs, [A, B, B, A]);
    assert!(p.is_established());
    let Pair { conns: [a, b] } = p;
    (a, b)
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

/// The test vectors of docs/PROTOCOL.md section 11.
#[test]
fn protocol_md_test_vectors() {
    let hb = unhex("02 00 00 00 05 00 ed f4 7d 81");
    assert_eq!(wire::encode_to_vec(&Frame::Heartbeat { last_seq: 0 }).unwrap(), hb);
    let delta = Frame::Delta(Delta {
        seq: 7,
        entries: vec![
            Entry { id: 0, name: Some(b"room:1"[..].into()), count: 3 },
            Entry { id: 0, name: None, count: 300 },
        ],
    });
    let bytes = unhex("0f 00 00 00 04 07 02 01 06 72 6f 6f 6d 3a 31 03 00 ac 02 5d af 0f 30");
    assert_eq!(wire::encode_to_vec(&delta).unwrap(), bytes);
    assert_eq!(wire::decode_frame(&bytes, MAX_FRAME_LEN).unwrap().unwrap().0, delta);
    let mut nonce = [0u8; 32];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = i as u8;
    }
    let d = Hello {
        version: 1,
        cluster: "prod".into(),
        node_name: "a".into(),
        node_id: 1,
        incarnation: 2,
        listen: "127.0.0.1:4000".into(),
        nonce,
    };
    let hello = unhex(
        "4c 00 00 00 01 48 43 4e 54 01 04 70 72 6f 64 01 61 01 00 00 00 00 00 00 00
         02 00 00 00 00 00 00 00 0e 31 32 37 2e 30 2e 30 2e 31 3a 34 30 30 30 00 01
         02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a
         1b 1c 1d 1e 1f f7 86 e2 05",
    );
    assert_eq!(wire::encode_to_vec(&Frame::Hello(d.clone())).unwrap(), hello);
    let a = Hello {
        node_name: "b".into(),
        node_id: 3,
        incarnation: 4,
        listen: String::new(),
        nonce: [0xff; 32],
        ..d.clone()
    };
    let key = AuthKey::new(b"secret");
    let hex = |m: [u8; 32]| m.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(key.mac(ROLE_DIALER, &d, &a)), "a75470ea7fee36e02c5659875c355ed2943e2668cf3fe1a75a24416144f439a0");
    assert_eq!(hex(key.mac(ROLE_ACCEPTOR, &d, &a)), "9a09707094a6290fdbd9882532cab6610a5b43853feabe079dc6a839ced34d49");
}

#[test]
fn handshake_succeeds_and_reports_identities() {
    let (mut a, mut b) = established();
    assert_eq!(
        drain_ev(&mut a),
        vec![Event::Authenticated(PeerIdentity {
            node_id: 2,
            incarnation: 200,
            node_name: "b".into(),
            listen: "127.0.0.1:2".into(),
            role: Role::Acceptor,
        })]
    );
    match &drain_ev(&mut b)[..] {
        [Event::Authenticated(p)] => {
            assert_eq!((p.node_id, p.role), (1, Role::Dialer));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn state_flows_and_topic_ids_are_reused_per_connection() {
    let (mut a, mut b) = established();
    drain_ev(&mut b);
    a.send_snapshot([(&b"x"[..], 3), (&b"y"[..], 1)], 2).unwrap();
    a.send_delta([(&b"x"[..], 4), (&b"z"[..], 9)], 2).unwrap();
    a.send_delta([(&b"x"[..], 0)], 2).unwrap();
    let tx = drain_tx(&mut a);
    // The second mention of "x" uses its id, without the name.
    match &tx[1] {
        Frame::Delta(d) => {
            assert_eq!(d.entries[0], Entry { id: 0, name: None, count: 4 });
            assert_eq!(d.entries[1], Entry { id: 2, name: Some(b"z"[..].into()), count: 9 });
        }
        f => panic!("{f:?}"),
    }
    // A changed topic costs two bytes on the wire here.
    match &tx[2] {
        Frame::Delta(d) => assert_eq!(wire::entry_len(&d.entries[0]), 2),
        f => panic!("{f:?}"),
    }
    for f in tx {
        b.handle_frame(f, 3).unwrap();
    }
    let t = |s: &[u8]| -> Topic { Arc::from(s) };
    assert_eq!(
        drain_ev(&mut b),
        vec![
            Event::Snapshot { first: true, last: true, entries: vec![(t(b"x"), 3), (t(b"y"), 1)] },
            Event::Delta { seq: 2, entries: vec![(t(b"x"), 4), (t(b"z"), 9)] },
            Event::Delta { seq: 3, entries: vec![(t(b"x"), 0)] },
        ]
    );
}

#[test]
fn large_snapshots_are_split_and_reassembled() {
    let (mut a, mut b) = established();
    drain_ev(&mut b);
    let names: Vec<Vec<u8>> = (0..5000).map(|i| format!("topic-{i:030}").into_bytes()).collect();
    a.send_snapshot(names.iter().map(|n| (&n[..], 1)), 2).unwrap();
    let tx = drain_tx(&mut a);
    assert!(tx.len() > 1, "split into {} frames", tx.len());
    for f in &tx {
        assert!(wire::encode_to_vec(f).unwrap().len() <= TARGET_FRAME_LEN + 200);
    }
    let frames = tx.len();
    let mut events = Vec::new();
    for f in tx {
        assert!(!b.is_synced());
        b.handle_frame(f, 3).unwrap();
        // Each frame is handed over as it arrives, not held until LAST.
        let before = events.len();
        events.extend(drain_ev(&mut b));
        assert_eq!(events.len(), before + 1);
    }
    assert_eq!(events.len(), frames);
    let mut entries = 0;
    for (i, ev) in events.iter().enumerate() {
        match ev {
            Event::Snapshot { first, last, entries: e } => {
                assert_eq!((*first, *last), (i == 0, i == frames - 1));
                entries += e.len();
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(entries, 5000);
    assert!(b.is_synced());
}

#[test]
fn a_snapshot_sent_in_parts_is_one_snapshot_and_holds_deltas_back() {
    let (mut a, mut b) = established();
    drain_ev(&mut b);
    a.send_snapshot_part([(&b"x"[..], 1)], false, 2).unwrap();
    assert!(!a.may_send_delta());
    assert!(a.send_delta([(&b"x"[..], 2)], 2).is_err(), "DELTA inside our snapshot");
    // An empty part in the middle queues nothing.
    a.send_snapshot_part(std::iter::empty(), false, 2).unwrap();
    a.send_snapshot_part([(&b"y"[..], 3)], true, 2).unwrap();
    assert!(a.may_send_delta());
    a.send_delta([(&b"x"[..], 2)], 2).unwrap();
    let tx = drain_tx(&mut a);
    match &tx[..] {
        [Frame::Snapshot(s1), Frame::Snapshot(s2), Frame::Delta(_)] => {
            assert_eq!((s1.first, s1.last, s2.first, s2.last), (true, false, false, true));
        }
        other => panic!("{other:?}"),
    }
    for f in tx {
        b.handle_frame(f, 3).unwrap();
    }
    assert!(b.is_synced());
    // A later snapshot starts with FIRST again.
    a.send_snapshot_part([(&b"z"[..], 1)], false, 4).unwrap();
    a.send_snapshot_part(std::iter::empty(), true, 4).unwrap();
    match &drain_tx(&mut a)[..] {
        [Frame::Snapshot(s1), Frame::Snapshot(s2)] => {
            assert_eq!((s1.first, s1.last, s2.first, s2.last, s2.entries.len()), (true, false, false, true, 0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_snapshot_is_one_frame() {
    let (mut a, mut b) = established();
    drain_ev(&mut b);
    a.send_snapshot(std::iter::empty(), 2).unwrap();
    a.send_delta(std::iter::empty(), 2).unwrap();
    let tx = drain_tx(&mut a);
    assert_eq!(tx, vec![Frame::Snapshot(Snapshot { seq: 1, first: true, last: true, entries: vec![] })]);
    b.handle_frame(tx[0].clone(), 3).unwrap();
    assert_eq!(drain_ev(&mut b), vec![Event::Snapshot { first: true, last: true, entries: vec![] }]);
}

#[test]
fn wrong_secret_fails_both_sides_without_state() {
    let (mut a, mut b) = pair(b"right", b"wrong");
    pump(&mut a, &mut b, 1).unwrap();
    assert_eq!(pump(&mut b, &mut a, 1), Err(ConnError::AuthFailed));
    assert!(a.is_closed());
    // b never authenticated a, so it refuses to send state.
    assert_eq!(b.send_delta([(&b"x"[..], 1)], 2), Err(ConnError::NotEstablished));
    assert_eq!(b.send_snapshot(std::iter::empty(), 2), Err(ConnError::NotEstablished));
    assert_eq!(b.send_peers(&["h:1".into()], 2), Err(ConnError::NotEstablished));
    // a answered b's challenge, then refused b: an AUTH, a BYE, no state.
    let tx = drain_tx(&mut a);
    match &tx[..] {
        [auth @ Frame::Auth { .. }, Frame::Bye { code: ByeCode::AUTH_FAILED, .. }] => {
            // b in turn rejects a's AUTH (made with the other secret).
            assert_eq!(b.handle_frame(auth.clone(), 2), Err(ConnError::AuthFailed));
        }
        other => panic!("{other:?}"),
    }
    assert!(b.is_closed());
    let err = b.handle_frame(tx[1].clone(), 2).unwrap_err();
    assert_eq!(err, ConnError::Closed);
    let sent: Vec<Frame> = drain_tx(&mut b);
    assert!(sent.iter().all(|f| matches!(f, Frame::Hello(_) | Frame::Auth { .. } | Frame::Bye { .. })));
    assert!(drain_ev(&mut a).is_empty() && drain_ev(&mut b).is_empty());
    // A BYE before authentication reports the peer's refusal.
    let (mut c, _) = pair(b"s", b"s");
    let bye = Frame::Bye { code: ByeCode::AUTH_FAILED, message: "no".into() };
    assert!(matches!(c.handle_frame(bye, 1), Err(ConnError::RejectedByPeer { code: ByeCode::AUTH_FAILED, .. })));
}

#[test]
fn empty_secret_differs_from_any_other() {
    let (mut a, mut b) = pair(b"", b"x");
    pump(&mut a, &mut b, 1).unwrap();
    assert_eq!(pump(&mut b, &mut a, 1), Err(ConnError::AuthFailed));
}

#[test]
fn missing_auth_times_out() {
    let (mut a, mut b) = pair(b"s", b"s");
    pump(&mut a, &mut b, 1).unwrap();
    drain_tx(&mut b); // b's HELLO and AUTH are lost
    assert_eq!(a.poll_timeout(), Some(1000));
    assert_eq!(a.handle_timeout(999), Ok(()));
    assert_eq!(a.handle_timeout(1000), Err(ConnError::HandshakeTimeout));
    assert!(matches!(&drain_tx(&mut a)[..], [Frame::Bye { code: ByeCode::TIMEOUT, .. }]));
}

#[test]
fn out_of_state_frames_close() {
    let auth = Frame::Auth { mac: [0; 32] };
    let delta = Frame::Delta(Delta { seq: 1, entries: vec![] });
    let snap = Frame::Snapshot(Snapshot { seq: 1, first: true, last: true, entries: vec![] });
    let peers = Frame::Peers { addrs: vec![] };
    let hb = Frame::Heartbeat { last_seq: 0 };
    for f in [auth.clone(), delta.clone(), snap.clone(), peers.clone(), hb.clone()] {
        let (mut a, _) = pair(b"s", b"s");
        let e = a.handle_frame(f.clone(), 1).unwrap_err();
        assert!(matches!(e, ConnError::Unexpected { state: "AwaitHello", .. }), "{f:?} {e:?}");
        assert!(a.is_closed());
        assert_eq!(a.handle_frame(f, 1), Err(ConnError::Closed));
    }
    // In AwaitAuth, anything but AUTH/BYE closes (notably state frames
    // sent before authentication).
    for f in [delta, snap, peers, hb] {
        let (mut a, mut b) = pair(b"s", b"s");
        pump(&mut a, &mut b, 1).unwrap();
        let hello = b.poll_transmit().unwrap();
        a.handle_frame(hello.clone(), 1).unwrap();
        let e = a.handle_frame(f.clone(), 1).unwrap_err();
        assert!(matches!(e, ConnError::Unexpected { state: "AwaitAuth", .. }), "{f:?}");
        // A second HELLO is out of state too.
        let (mut a, mut b) = pair(b"s", b"s");
        pump(&mut a, &mut b, 1).unwrap();
        let hello = b.poll_transmit().unwrap();
        a.handle_frame(hello.clone(), 1).unwrap();
        assert!(a.handle_frame(hello, 1).is_err());
    }
    // Established: HELLO and AUTH are out of state.
    let (mut a, _) = established();
    assert!(a.handle_frame(auth, 2).is_err());
    let (mut a, _) = established();
    let h = Frame::Hello(Hello {
        version: 1,
        cluster: "test".into(),
        node_name: "z".into(),
        node_id: 9,
        incarnation: 9,
        listen: String::new(),
        nonce: [9; 32],
    });
    assert!(a.handle_frame(h, 2).is_err());
}

fn hello_from(c: &mut Conn) -> Hello {
    match c.poll_transmit() {
        Some(Frame::Hello(h)) => h,
        f => panic!("{f:?}"),
    }
}

#[test]
fn hello_validation() {
    let (mut a, mut b) = pair(b"s", b"s");
    let good = hello_from(&mut b);
    drop(a.poll_transmit());
    let cases = [
        (Hello { version: 2, ..good.clone() }, ByeCode::VERSION_UNSUPPORTED),
        (Hello { cluster: "other".into(), ..good.clone() }, ByeCode::CLUSTER_MISMATCH),
        (Hello { node_id: 1, ..good.clone() }, ByeCode::SELF_CONNECTION),
        (Hello { nonce: [1; 32], ..good.clone() }, ByeCode::PROTOCOL_ERROR),
        (Hello { listen: "x".repeat(300), ..good.clone() }, ByeCode::PROTOCOL_ERROR),
    ];
    for (h, code) in cases {
        let (mut a, _) = pair(b"s", b"s");
        drop(a.poll_transmit());
        assert!(a.handle_frame(Frame::Hello(h), 1).is_err());
        let tx = drain_tx(&mut a);
        assert!(matches!(&tx[..], [Frame::Bye { code: c, .. }] if *c == code), "{tx:?}");
    }
    assert!(a.handle_frame(Frame::Hello(good), 1).is_ok());
}

/// The attacker does not know the secret and tries to get the victim to
/// answer its own challenge.
#[test]
fn reflected_auth_fails() {
    // Victim accepts a connection from the attacker, who claims id 66.
    let mut victim = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [1; 32], 0);
    let victim_hello = hello_from(&mut victim);
    let attacker_hello = Hello { node_id: 66, nonce: [6; 32], ..victim_hello.clone() };
    victim.handle_frame(Frame::Hello(attacker_hello), 1).unwrap();
    let victim_auth = match victim.poll_transmit() {
        Some(f @ Frame::Auth { .. }) => f,
        f => panic!("{f:?}"),
    };
    // Sending the victim's own AUTH back fails: it is labelled 'A'.
    assert_eq!(victim.handle_frame(victim_auth.clone(), 1), Err(ConnError::AuthFailed));

    // Two connections: the attacker dials the victim twice and relays the
    // challenge of connection 2 as its own on connection 1. Both HELLOs of
    // connection 1 are covered, so the answer from connection 2 fails.
    let mut v1 = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [1; 32], 0);
    let mut v2 = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [3; 32], 0);
    let h1 = hello_from(&mut v1);
    let h2 = hello_from(&mut v2);
    // Attacker sends HELLO with v1's nonce on connection 2 ...
    let fake = Hello { node_id: 66, nonce: h1.nonce, ..h2.clone() };
    v2.handle_frame(Frame::Hello(fake.clone()), 1).unwrap();
    let answer = v2.poll_transmit().unwrap();
    // ... and replays v2's answer on connection 1.
    v1.handle_frame(Frame::Hello(Hello { nonce: h2.nonce, ..fake }), 1).unwrap();
    assert_eq!(v1.handle_frame(answer, 1), Err(ConnError::AuthFailed));

    // A victim HELLO reflected verbatim is refused as a self-connection.
    let mut v3 = Conn::new(&params("v", 1, b"secret"), Role::Acceptor, [4; 32], 0);
    let h3 = hello_from(&mut v3);
    assert_eq!(v3.handle_frame(Frame::Hello(h3), 1), Err(ConnError::SelfConnection));
}

#[test]
fn sequence_and_snapshot_order_errors() {
    let snap = |seq, first, last, entries| Frame::Snapshot(Snapshot { seq, first, last, entries });
    let delta = |seq, entries| Frame::Delta(Delta { seq, entries });
    type Case = (Vec<Frame>, fn(&ConnError) -> bool);
    let cases: Vec<Case> = vec![
        (vec![delta(1, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
        (vec![snap(1, false, true, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
        (vec![snap(2, true, true, vec![])], |e| matches!(e, ConnError::BadSeq { .. })),
        (vec![snap(1, true, false, vec![]), snap(2, true, true, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
        (vec![snap(1, true, false, vec![]), delta(2, vec![])], |e| matches!(e, ConnError::SnapshotOrder(_))),
        (vec![snap(1, true, true, vec![]), delta(1, vec![])], |e| {
            matches!(e, ConnError::BadSeq { expected: 2, got: 1 })
        }),
        (vec![snap(1, true, true, vec![]), Frame::Heartbeat { last_seq: 0 }], |e| {
            matches!(e, ConnError::BadSeq { .. })
        }),
        (vec![snap(1, true, true, vec![Entry { id: 0, name: None, count: 1 }])], |e| {
            matches!(e, ConnError::UnknownTopicId(0))
        }),
        (vec![snap(1, true, true, vec![Entry { id: 1, name: Some(b"t"[..].into()), count: 1 }])], |e| {
            matches!(e, ConnError::BadDefine { id: 1, next: 0 })
        }),
        // Redefining an id whose last count is not 0 (only a zero id may be reused).
        (
            vec![
                snap(1, true, true, vec![Entry { id: 0, name: Some(b"t"[..].into()), count: 1 }]),
                delta(2, vec![Entry { id: 0, name: Some(b"u"[..].into()), count: 1 }]),
            ],
            |e| matches!(e, ConnError::BadRedefine(0)),
        ),
    ];
    for (frames, check) in cases {
        let (_, mut b) = established();
        let mut res = Ok(());
        for f in frames.clone() {
            res = b.handle_frame(f, 2);
            if res.is_err() {
                break;
            }
        }
        let e = res.expect_err(&format!("{frames:?}"));
        assert!(check(&e), "{frames:?}: {e:?}");
        assert!(matches!(drain_tx(&mut b).last(), Some(Frame::Bye { code: ByeCode::PROTOCOL_ERROR, .. })));
    }
    // Heartbeats with the right last_seq are fine, before and after state.
    let (_, mut b) = established();
    b.handle_frame(Frame::Heartbeat { last_seq: 0 }, 2).unwrap();
    b.handle_frame(snap(1, true, true, vec![]), 2).unwrap();
    b.handle_frame(Frame::Heartbeat { last_seq: 1 }, 2).unwrap();
    // Redefining an id last counted 0 renames it.
    b.handle_frame(delta(2, vec![Entry { id: 0, name: Some(b"p"[..].into()), count: 0 }]), 2).unwrap();
    b.handle_frame(delta(3, vec![Entry { id: 0, name: Some(b"q"[..].into()), count: 2 }]), 2).unwrap();
    b.handle_frame(delta(4, vec![Entry { id: 0, name: None, count: 3 }]), 2).unwrap();
    let ev = drain_ev(&mut b);
    assert_eq!(ev.last(), Some(&Event::Delta { seq: 4, entries: vec![(Arc::from(&b"q"[..]), 3)] }));
}

#[test]
fn heartbeats_and_silence() {
    let (mut a, mut b) = established();
    drain_tx(&mut a);
    // Nothing sent since t=1: heartbeat due at 101.
    assert_eq!(a.poll_timeout(), Some(101));
    a.handle_timeout(50).unwrap();
    assert!(a.poll_transmit().is_none());
    a.handle_timeout(101).unwrap();
    let hb = a.poll_transmit().unwrap();
    assert_eq!(hb, Frame::Heartbeat { last_seq: 0 });
    b.handle_frame(hb, 101).unwrap();
    // b heard from a at 101; silence beyond 300 ms closes.
    b.handle_timeout(401).unwrap();
    drain_tx(&mut b);
    assert_eq!(b.handle_timeout(402), Err(ConnError::PeerSilent(301)));
    assert!(matches!(&drain_tx(&mut b)[..], [Frame::Bye { code: ByeCode::TIMEOUT, .. }]));
}

#[test]
fn bye_after_auth_is_an_event() {
    let (mut a, mut b) = established();
    drain_ev(&mut b);
    a.close(ByeCode::SHUTDOWN, "leaving", 5);
    assert!(a.is_closed());
    assert_eq!(a.send_delta([(&b"x"[..], 1)], 5), Err(ConnError::Closed));
    pump(&mut a, &mut b, 5).unwrap();
    assert_eq!(drain_ev(&mut b), vec![Event::Bye { code: ByeCode::SHUTDOWN, message: "leaving".into() }]);
    assert!(b.is_closed());
}

#[test]
fn peers_flow_after_auth() {
    let (mut a, mut b) = established();
    drain_ev(&mut b);
    a.send_peers(&["127.0.0.1:9".into(), String::new(), "x".repeat(300)], 2).unwrap();
    pump(&mut a, &mut b, 2).unwrap();
    assert_eq!(drain_ev(&mut b), vec![Event::Peers(vec!["127.0.0.1:9".into()])]);
}

#[test]
fn id_reuse_is_understood_by_the_receiver() {
    let mut p = params("a", 1, b"s");
    p.id_soft_cap = 1;
    let mut a = Conn::new(&p, Role::Dialer, [1; 32], 0);
    let mut b = Conn::new(&params("b", 2, b"s"), Role::Acceptor, [2; 32], 0);
    pump(&mut a, &mut b, 1).unwrap();
    pump(&mut b, &mut a, 1).unwrap();
    pump(&mut a, &mut b, 1).unwrap();
    drain_ev(&mut b);
    a.send_snapshot([(&b"x"[..], 1)], 2).unwrap();
    a.send_delta([(&b"x"[..], 0), (&b"y"[..], 7)], 2).unwrap();
    a.send_delta([(&b"y"[..], 8)], 2).unwrap();
    assert_eq!(a.out_topic_ids(), 1);
    pump(&mut a, &mut b, 2).unwrap();
    let t = |s: &[u8]| -> Topic { Arc::from(s) };
    assert_eq!(
        drain_ev(&mut b),
        vec![
            Event::Snapshot { first: true, last: true, entries: vec![(t(b"x"), 1)] },
            Event::Delta { seq: 2, entries: vec![(t(b"x"), 0), (t(b"y"), 7)] },
            Event::Delta { seq: 3, entries: vec![(t(b"y"), 8)] },
        ]
    );
}

#[test]
fn decode_errors_close_with_protocol_bye() {
    let (mut a, _) = established();
    drain_tx(&mut a);
    let e = a.handle_decode_error(WireError::UnknownType(9), 3);
    assert_eq!(e, ConnError::Wire(WireError::UnknownType(9)));
    assert!(a.is_closed());
    assert!(matches!(&drain_tx(&mut a)[..], [Frame::Bye { code: ByeCode::PROTOCOL_ERROR, .. }]));
}

/// Both sides driven by a pseudo-random interleaving of valid traffic and
/// injected junk frames: nothing panics, and no state frame is ever
/// emitted by a side whose peer has not authenticated.
#[test]
fn random_frame_sequences_never_leak_state() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let secret_b: &[u8] = if round % 3 == 0 { b"other" } else { b"s" };
        let (mut a, mut b) = pair(b"s", secret_b);
        let mut now = 0;
        for _ in 0..40 {
            now += rnd() % 50;
            let junk = match rnd() % 8 {
                0 => Some(Frame::Auth { mac: [rnd() as u8; 32] }),
                1 => Some(Frame::Delta(Delta { seq: rnd() % 3, entries: vec![] })),
                2 => Some(Frame::Heartbeat { last_seq: rnd() % 2 }),
                3 => Some(Frame::Snapshot(Snapshot {
                    seq: rnd() % 3,
                    first: rnd() % 2 == 0,
                    last: rnd() % 2 == 0,
                    entries: vec![Entry { id: (rnd() % 2) as u32, name: None, count: 1 }],
                })),
                _ => None,
            };
            for dir in 0..2 {
                let (x, y) = if dir == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
                if x.is_established() && rnd() % 2 == 0 {
                    let _ = x.send_delta([(&b"t"[..], rnd() % 5)], now);
                }
                let _ = x.handle_timeout(now);
                while let Some(f) = x.poll_transmit() {
                    let state = matches!(f, Frame::Snapshot(_) | Frame::Delta(_) | Frame::Peers { .. });
                    assert!(!state || x.peer().is_some(), "state before auth: {f:?}");
                    let _ = y.handle_frame(f, now);
                }
                if let Some(j) = junk.clone() {
                    let _ = y.handle_frame(j, now);
                }
                while y.poll_event().is_some() {}
            }
        }
        if round % 3 == 0 {
            assert!(a.peer().is_none() || b.peer().is_none());
        }
    }
}
