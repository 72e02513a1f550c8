use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zé:0-9.]{{0,{}}}", max / 2)).unwrap()
}

fn entry() -> impl Strategy<Value = Entry> {
    (0..=MAX_TOPIC_ID, proptest::option::of(vec(any::<u8>(), 1..40)), any::<u64>())
        .prop_map(|(id, name, count)| Entry { id, name: name.map(Into::into), count })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u64>(),
            name(MAX_NAME_LEN),
            name(MAX_NAME_LEN),
            any::<u64>(),
            any::<u64>(),
            name(MAX_NAME_LEN),
            any::<[u8; NONCE_LEN]>()
        )
            .prop_map(|(version, cluster, node_name, node_id, incarnation, listen, nonce)| {
                Frame::Hello(Hello { version, cluster, node_name, node_id, incarnation, listen, nonce })
            }),
        any::<[u8; MAC_LEN]>().prop_map(|mac| Frame::Auth { mac }),
        (any::<u64>(), any::<bool>(), any::<bool>(), vec(entry(), 0..20))
            .prop_map(|(seq, first, last, entries)| Frame::Snapshot(Snapshot { seq, first, last, entries })),
        (any::<u64>(), vec(entry(), 0..20)).prop_map(|(seq, entries)| Frame::Delta(Delta { seq, entries })),
        any::<u64>().prop_map(|last_seq| Frame::Heartbeat { last_seq }),
        vec(name(MAX_NAME_LEN).prop_filter("non-empty", |s| !s.is_empty()), 0..10)
            .prop_map(|addrs| Frame::Peers { addrs }),
        (any::<u64>(), name(MAX_BYE_MESSAGE_LEN)).prop_map(|(c, message)| Frame::Bye { code: ByeCode(c), message }),
    ]
}

proptest! {
    #[test]
    fn decode_encode_round_trip(f in frame()) {
        let b = encode_to_vec(&f).unwrap();
        let (g, n) = decode_frame(&b, MAX_FRAME_LEN).unwrap().unwrap();
        prop_assert_eq!(n, b.len());
        prop_assert_eq!(&g, &f);
    }

    #[test]
    fn arbitrary_bodies_never_panic(ty in any::<u8>(), body in vec(any::<u8>(), 0..200)) {
        if let Ok(f) = decode_body(ty, &body) {
            let mut again = Vec::new();
            encode_body(&f, &mut again).unwrap();
            prop_assert_eq!(again, body);
        }
    }
}
