use super::body::encode_entries;
use super::*;
// Deterministic, so the fuzz-like tests replay identically.
use crate::cluster::xorshift::Rng;

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        cluster: "prod".into(),
        node_name: "a".into(),
        node_id: 0x0102_0304_0506_0708,
        incarnation: u64::MAX,
        listen: "127.0.0.1:4000".into(),
        nonce: [7; NONCE_LEN],
    }
}

fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(hello()),
        Frame::Hello(Hello { cluster: String::new(), listen: String::new(), ..hello() }),
        Frame::Auth { mac: [0xab; MAC_LEN] },
        Frame::Snapshot(Snapshot { seq: 1, first: true, last: true, entries: vec![] }),
        Frame::Snapshot(Snapshot {
            seq: 2,
            first: false,
            last: false,
            entries: vec![
                Entry { id: 0, name: Some(b"room:1"[..].into()), count: 3 },
                Entry { id: MAX_TOPIC_ID, name: None, count: u64::MAX },
            ],
        }),
        Frame::Delta(Delta {
            seq: u64::MAX,
            entries: vec![
                Entry { id: 5, name: None, count: 0 },
                Entry { id: 6, name: Some(vec![0, 255, 10].into()), count: 127 },
                Entry { id: 6, name: None, count: 128 },
            ],
        }),
        Frame::Delta(Delta { seq: 0, entries: vec![] }),
        Frame::Heartbeat { last_seq: 0 },
        Frame::Heartbeat { last_seq: 300 },
        Frame::Peers { addrs: vec![] },
        Frame::Peers { addrs: vec!["127.0.0.1:1".into(), "[::1]:65535".into()] },
        Frame::Bye { code: ByeCode::SHUTDOWN, message: String::new() },
        Frame::Bye { code: ByeCode(u64::MAX), message: "héllo".into() },
    ]
}

#[test]
fn varint_round_trip_and_lengths() {
    let mut vals = vec![0u64, 1, 127, 128, 255, 16383, 16384, u64::MAX, u64::MAX - 1];
    for s in 0..64 {
        vals.push(1u64 << s);
        vals.push((1u64 << s) - 1);
    }
    for v in vals {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        assert_eq!(b.len(), varint_len(v), "len of {v}");
        assert_eq!(get_varint(&b), Ok((v, b.len())), "value {v}");
        // Every strict prefix is truncated.
        for cut in 0..b.len() {
            assert_eq!(get_varint(&b[..cut]), Err(WireError::Truncated("varint")));
        }
    }
}

#[test]
fn varint_rejects_overlong_and_overflow() {
    assert_eq!(get_varint(&[0x80, 0x00]), Err(WireError::VarintNotMinimal));
    assert_eq!(get_varint(&[0xff, 0x80, 0x00]), Err(WireError::VarintNotMinimal));
    // Zero itself is one byte, fine.
    assert_eq!(get_varint(&[0x00]), Ok((0, 1)));
    // Tenth byte may only be 0x01.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    assert_eq!(get_varint(&max), Ok((u64::MAX, 10)));
    let mut over = vec![0xff; 9];
    over.push(0x02);
    assert_eq!(get_varint(&over), Err(WireError::VarintOverflow));
    let eleven = vec![0x80; 11];
    assert_eq!(get_varint(&eleven), Err(WireError::VarintOverflow));
    let ten_cont = vec![0xff; 10];
    assert_eq!(get_varint(&ten_cont), Err(WireError::VarintOverflow));
}

#[test]
fn frames_round_trip() {
    for f in sample_frames() {
        let b = encode_to_vec(&f).unwrap();
        let (g, n) = decode_frame(&b, MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(g, f);
        assert_eq!(n, b.len());
        // Strictness: re-encoding gives the same bytes.
        assert_eq!(encode_to_vec(&g).unwrap(), b);
    }
}

#[test]
fn every_prefix_is_incomplete_not_error() {
    for f in sample_frames() {
        let b = encode_to_vec(&f).unwrap();
        for cut in 0..b.len() {
            assert_eq!(decode_frame(&b[..cut], MAX_FRAME_LEN), Ok(None), "{f:?} cut {cut}");
        }
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    for f in sample_frames() {
        let b = encode_to_vec(&f).unwrap();
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                match decode_frame(&c, MAX_FRAME_LEN) {
                    Ok(Some((g, _))) => panic!("flip {i}:{bit} of {f:?} decoded as {g:?}"),
                    // A flip in the length field may make it look incomplete.
                    Ok(None) => assert!(i < HEADER_LEN),
                    Err(_) => {}
                }
            }
        }
    }
}

/// Builds a frame with a valid header and checksum around `body`.
fn raw(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((body.len() + 1) as u32).to_le_bytes());
    out.push(ty);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn body_of(f: &Frame) -> Vec<u8> {
    let mut b = Vec::new();
    encode_body(f, &mut b).unwrap();
    b
}

fn decode_err(bytes: &[u8]) -> WireError {
    decode_frame(bytes, MAX_FRAME_LEN).unwrap_err()
}

#[test]
fn header_errors() {
    assert_eq!(decode_err(&[0, 0, 0, 0]), WireError::EmptyFrame);
    let big = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
    assert_eq!(decode_err(&big), WireError::FrameTooLarge { len: MAX_FRAME_LEN + 1, max: MAX_FRAME_LEN });
    // The handshake cap applies before anything else is read.
    let hs = ((MAX_HANDSHAKE_FRAME_LEN + 1) as u32).to_le_bytes();
    assert!(matches!(decode_frame(&hs, MAX_HANDSHAKE_FRAME_LEN), Err(WireError::FrameTooLarge { .. })));
    assert!(decode_err(&[0xff, 0xff, 0xff, 0xff]).to_string().contains("cap"));
}

#[test]
fn unknown_type_and_bad_checksum() {
    assert_eq!(decode_err(&raw(0, &[])), WireError::UnknownType(0));
    assert_eq!(decode_err(&raw(8, &[])), WireError::UnknownType(8));
    assert_eq!(decode_err(&raw(255, &[1, 2])), WireError::UnknownType(255));
    let mut b = raw(5, &[0]);
    let n = b.len();
    b[n - 1] ^= 0x80;
    assert!(matches!(decode_err(&b), WireError::BadChecksum { .. }));
}

#[test]
fn body_errors() {
    // Truncated bodies of every type: drop the last byte of a valid body.
    for f in sample_frames() {
        let body = body_of(&f);
        if body.is_empty() {
            continue;
        }
        let e = decode_err(&raw(f.frame_type() as u8, &body[..body.len() - 1]));
        assert!(matches!(e, WireError::Truncated(_) | WireError::TooManyItems { .. }), "{f:?}: {e:?}");
        // Trailing garbage is an error too.
        let mut long = body.clone();
        long.push(0);
        assert_eq!(decode_err(&raw(f.frame_type() as u8, &long)), WireError::TrailingBytes(1));
    }
}

#[test]
fn hello_errors() {
    let mut b = body_of(&Frame::Hello(hello()));
    b[0] = b'X';
    assert_eq!(decode_err(&raw(1, &b)), WireError::BadMagic);

    // Non-UTF-8 cluster name: magic, version 1, len 1, 0xff.
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&[1, 1, 0xff]);
    assert_eq!(decode_err(&raw(1, &b)), WireError::BadUtf8("cluster"));

    // Cluster name too long.
    let mut b = MAGIC.to_vec();
    b.push(1);
    put_varint(&mut b, MAX_NAME_LEN as u64 + 1);
    b.extend_from_slice(&[b'a'; MAX_NAME_LEN + 1]);
    assert_eq!(decode_err(&raw(1, &b)), WireError::BadLength { field: "cluster", len: MAX_NAME_LEN as u64 + 1 });

    // A huge length must not allocate: it is rejected by its bound.
    let mut b = MAGIC.to_vec();
    b.push(1);
    put_varint(&mut b, u64::MAX);
    assert!(matches!(decode_err(&raw(1, &b)), WireError::BadLength { .. }));

    // Encoding refuses what decoding would refuse.
    let long = "x".repeat(MAX_NAME_LEN + 1);
    for h in [
        Hello { cluster: long.clone(), ..hello() },
        Hello { node_name: long.clone(), ..hello() },
        Hello { listen: long.clone(), ..hello() },
    ] {
        let mut out = vec![9];
        assert!(encode_frame(&Frame::Hello(h), &mut out).is_err());
        assert_eq!(out, vec![9], "output rolled back");
    }
}

#[test]
fn auth_wrong_length() {
    assert_eq!(decode_err(&raw(2, &[0; MAC_LEN - 1])), WireError::Truncated("mac"));
    assert_eq!(decode_err(&raw(2, &[0; MAC_LEN + 1])), WireError::TrailingBytes(1));
}

#[test]
fn entry_errors() {
    // Unknown flag bits.
    assert_eq!(decode_err(&raw(3, &[0x04, 1, 0])), WireError::BadFlags(0x04));
    // Entry count larger than the body could hold.
    assert!(matches!(decode_err(&raw(4, &[1, 3, 0, 0])), WireError::TooManyItems { .. }));
    let mut b = vec![1];
    put_varint(&mut b, u64::MAX);
    assert!(matches!(decode_err(&raw(4, &b)), WireError::TooManyItems { .. }));
    // Topic id too large.
    let mut b = vec![1, 1];
    put_varint(&mut b, (u64::from(MAX_TOPIC_ID) + 1) << 1);
    b.push(0);
    assert_eq!(decode_err(&raw(4, &b)), WireError::TopicIdTooLarge(u64::from(MAX_TOPIC_ID) + 1));
    // Empty topic name in a DEFINE.
    assert_eq!(decode_err(&raw(4, &[1, 1, 0x01, 0, 5])), WireError::BadLength { field: "topic", len: 0 });
    // Topic name longer than the cap.
    let mut b = vec![1, 1, 0x01];
    put_varint(&mut b, MAX_TOPIC_LEN as u64 + 1);
    b.extend_from_slice(&vec![0u8; MAX_TOPIC_LEN + 1]);
    b.push(0);
    assert!(matches!(decode_err(&raw(4, &b)), WireError::BadLength { field: "topic", .. }));
    // Non-minimal count varint.
    assert_eq!(decode_err(&raw(4, &[1, 1, 0x00, 0x80, 0x00])), WireError::VarintNotMinimal);
    // Encoding refuses an empty topic and an oversized id.
    let e = Entry { id: 0, name: Some(vec![].into()), count: 1 };
    assert!(encode_to_vec(&Frame::Delta(Delta { seq: 1, entries: vec![e] })).is_err());
    let e = Entry { id: MAX_TOPIC_ID + 1, name: None, count: 1 };
    assert!(encode_to_vec(&Frame::Delta(Delta { seq: 1, entries: vec![e] })).is_err());
}

#[test]
fn peers_and_bye_errors() {
    // Too many peers.
    let mut b = Vec::new();
    put_varint(&mut b, MAX_PEERS as u64 + 1);
    for _ in 0..=MAX_PEERS {
        b.extend_from_slice(&[1, b'a']);
    }
    assert!(matches!(decode_err(&raw(6, &b)), WireError::TooManyItems { .. }));
    // Empty address.
    assert_eq!(decode_err(&raw(6, &[2, 0, 1, b'a', b'x'])), WireError::BadLength { field: "peer address", len: 0 });
    // Non-UTF-8 message.
    assert_eq!(decode_err(&raw(7, &[0, 1, 0xc0])), WireError::BadUtf8("message"));
    let long = "m".repeat(MAX_BYE_MESSAGE_LEN + 1);
    assert!(encode_to_vec(&Frame::Bye { code: ByeCode::SHUTDOWN, message: long }).is_err());
    let many = vec!["a:1".to_string(); MAX_PEERS + 1];
    assert!(encode_to_vec(&Frame::Peers { addrs: many }).is_err());
}

#[test]
fn encode_refuses_frames_over_the_cap() {
    let entries: Vec<Entry> =
        (0..20u32).map(|i| Entry { id: i, name: Some(vec![b'x'; 60_000].into()), count: 1 }).collect();
    let f = Frame::Delta(Delta { seq: 1, entries });
    let mut out = Vec::new();
    assert!(matches!(encode_frame(&f, &mut out), Err(WireError::FrameTooLarge { .. })));
    assert!(out.is_empty());
}

#[test]
fn entry_len_matches_encoding() {
    for e in [
        Entry { id: 0, name: None, count: 0 },
        Entry { id: 63, name: None, count: 127 },
        Entry { id: 64, name: None, count: 128 },
        Entry { id: 1000, name: Some(vec![1; 200].into()), count: u64::MAX },
    ] {
        let mut b = Vec::new();
        encode_entries(&mut b, std::slice::from_ref(&e)).unwrap();
        assert_eq!(b.len() - 1, entry_len(&e));
    }
}

#[test]
fn streaming_decoder_any_chunking() {
    let frames = sample_frames();
    let mut stream = Vec::new();
    for f in &frames {
        encode_frame(f, &mut stream).unwrap();
    }
    for chunk in [1, 2, 3, 7, 64, stream.len()] {
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            d.push(piece);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames, "chunk size {chunk}");
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn streaming_decoder_fails_fast_and_stays_failed() {
    let mut d = FrameDecoder::new(MAX_HANDSHAKE_FRAME_LEN);
    d.push(b"GET / HTTP/1.1\r\n");
    assert!(matches!(d.next_frame(), Err(WireError::FrameTooLarge { .. })));
    assert!(d.next_frame().is_err());
    assert_eq!(d.buffered(), 0);
}

#[test]
fn state_frame_overhead_bounds_empty_frames() {
    let f = Frame::Snapshot(Snapshot { seq: u64::MAX, first: true, last: true, entries: vec![] });
    assert!(encode_to_vec(&f).unwrap().len() <= STATE_FRAME_OVERHEAD);
}

#[test]
fn random_bytes_never_panic_and_strictness_holds() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::new();
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        buf.clear();
        buf.extend((0..len).map(|_| rng.next() as u8));
        let ty = (rng.next() % 9) as u8;
        // Through the body decoder directly (bypassing the checksum, so
        // random bodies actually reach the field parsers).
        if let Ok(f) = decode_body(ty, &buf) {
            assert_eq!(body_of(&f), buf, "strict: {f:?}");
        }
        // And through the full frame decoder.
        let _ = decode_frame(&buf, MAX_FRAME_LEN);
    }
}

/// The rows of the markdown table that follows `heading` in PROTOCOL.md, as
/// (first cell, second cell up to a colon).
fn protocol_md_table(heading: &str) -> Vec<(u64, String)> {
    let doc = include_str!("../../../../docs/PROTOCOL.md");
    let at = doc.find(heading).unwrap_or_else(|| panic!("PROTOCOL.md has no {heading:?}"));
    doc[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, cells.get(2)?.split(':').next()?.to_owned()))
        })
        .collect()
}

/// The frame-type and BYE-code tables (`frame_types!`, `bye_codes!`) are the
/// ones PROTOCOL.md specifies, and every type byte maps back to its type.
#[test]
fn frame_and_bye_tables_match_protocol_md() {
    let types: Vec<(u64, String)> = FrameType::ALL.iter().map(|t| (*t as u64, t.name().to_owned())).collect();
    assert_eq!(types, protocol_md_table("## 5. Frame types"));
    for b in 0..=255u8 {
        match FrameType::from_u8(b) {
            Some(t) => assert_eq!(t as u8, b),
            None => assert!(FrameType::ALL.iter().all(|t| *t as u8 != b)),
        }
    }
    let codes: Vec<(u64, String)> = ByeCode::ALL.iter().map(|(c, n)| (c.0, (*n).to_owned())).collect();
    assert_eq!(codes, protocol_md_table("### 5.8 BYE"));
    for (c, _) in ByeCode::ALL {
        assert_ne!(c.name(), "unknown");
    }
    assert_eq!(ByeCode(ByeCode::ALL.len() as u64).name(), "unknown");
}
