//! `config`: arbitrary key/value pairs into `Config::set`, then `validate`.
//!
//! Properties: nothing panics; a pair is accepted exactly when the key table
//! (`headcount::CONFIG_TABLE`, the one declaration of every key, its kind of
//! value and its range, which the README and the C header are checked
//! against) says so, judged here by an independent implementation of each
//! kind of value; a refused pair changes
//! nothing (the config's `Debug`, which shows every field but the secret's
//! value, and whether a secret is set, stay the same) and its error names
//! the key; `validate` fails exactly when a listener or seeds are set
//! without a secret.

use arbitrary::{Arbitrary, Unstructured};
use headcount::{Config, Error, ValueKind, CONFIG_KEYS, CONFIG_TABLE};

/// A key: one of the known ones (most of the time) or any string.
#[derive(Arbitrary, Debug)]
enum Key {
    Known(u8),
    Other(String),
}

/// A value: a number, often near a range's edge, or any string.
#[derive(Arbitrary, Debug)]
enum Value {
    Number(u64),
    Signed(i64),
    Edge(u8),
    Padded(u32),
    Text(String),
    Address { host: String, port: u32, bracket: bool },
    List(Vec<String>),
}

const EDGES: &[&str] = &[
    "0",
    "1",
    "255",
    "256",
    "1023",
    "1024",
    "60000",
    "60001",
    "65535",
    "65536",
    "3600000",
    "3600001",
    "86400000",
    "86400001",
    "18446744073709551615",
    "18446744073709551616",
    "+5",
    "-0",
    " 7 ",
    "0x10",
    "1e3",
    "",
    " ",
    "adaptive",
    " fixed ",
    "Fixed",
];

impl Value {
    fn render(self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Signed(n) => n.to_string(),
            Value::Edge(i) => EDGES[usize::from(i) % EDGES.len()].to_owned(),
            Value::Padded(n) => format!(" {n}\t"),
            Value::Text(s) => s,
            Value::Address { host, port, bracket } => {
                if bracket {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            }
            Value::List(items) => items.join(","),
        }
    }
}

/// What the config should hold, as far as it can be seen from outside.
#[derive(Default)]
struct Model {
    listen: bool,
    seeds: bool,
    secret: bool,
}

fn integer_ok(v: &str, min: u64, max: u64) -> bool {
    v.trim().parse::<u64>().is_ok_and(|n| (min..=max).contains(&n))
}


fn address_ok(v: &str) -> bool {
    let v = v.trim();
    let Some((host, port)) = v.rsplit_once(':') else { return false };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    !host.is_empty() && port.parse::<u16>().is_ok()
}

/// Whether the key table accepts `key = value`.
fn accepts(key: &str, value: &str) -> bool {
    let Some(k) = CONFIG_TABLE.iter().find(|k| k.name == key) else { return false };
    match k.kind {
        ValueKind::Name { max_len } => (1..=max_len).contains(&value.len()),
        ValueKind::Address => address_ok(value),
        ValueKind::AddressList => value.split(',').map(str::trim).filter(|s| !s.is_empty()).all(address_ok),
        ValueKind::Secret => !value.is_empty(),
        ValueKind::Integer { min, max } | ValueKind::Millis { min, max } => integer_ok(value, min, max),
        ValueKind::OneOf { values } => values.contains(&value.trim()),
        other => panic!("{key}: the oracle does not know values of kind {other:?}; teach it"),
    }
}

/// The target. See the module docs.
pub fn config(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut cfg = Config::new();
    let mut model = Model::default();
    while !u.is_empty() {
        let Ok((key, value)) = <(Key, Value)>::arbitrary(&mut u) else { break };
        let key = match key {
            Key::Known(i) => CONFIG_KEYS[usize::from(i) % CONFIG_KEYS.len()].to_owned(),
            Key::Other(k) => k,
        };
        let value = value.render();
        let before = format!("{cfg:?}");
        let clustered_before = cfg.is_clustered();
        let r = cfg.set(&key, &value);
        let want = accepts(&key, &value);
        match r {
            Ok(()) => {
                assert!(want, "set({key:?}, {value:?}) was accepted; the table refuses it");
                match key.as_str() {
                    "listen" => model.listen = true,
                    "seeds" => model.seeds = value.split(',').any(|s| !s.trim().is_empty()),
                    "secret" => model.secret = true,
                    _ => {}
                }
            }
            Err(e) => {
                assert!(!want, "set({key:?}, {value:?}) was refused ({e}); the table accepts it");
                assert_eq!(format!("{cfg:?}"), before, "a refused set({key:?}, {value:?}) changed the config");
                assert_eq!(cfg.is_clustered(), clustered_before);
                match &e {
                    Error::Config { key: k, message } => {
                        assert_eq!(k, &key, "the error names another key");
                        assert!(!message.is_empty());
                    }
                    other => panic!("set({key:?}, {value:?}) failed with {other:?}, not a config error"),
                }
                assert!(!e.to_string().is_empty());
            }
        }
        assert_eq!(cfg.is_clustered(), model.listen || model.seeds, "is_clustered after set({key:?}, {value:?})");
        let valid = cfg.validate();
        let want_valid = !(model.listen || model.seeds) || model.secret;
        assert_eq!(valid.is_ok(), want_valid, "validate(): {valid:?}");
        let copy = cfg.clone();
        assert_eq!(format!("{copy:?}"), format!("{cfg:?}"));
    }
}
