//! Node configuration by string keys: the same keys in Rust, the C ABI
//! (`hc_config_set`), every binding and the CLI (librdkafka's model: one
//! setter, and a new option needs no new symbol anywhere).
//!
//! | key                 | value                       | default       |
//! |---------------------|-----------------------------|---------------|
//! | `node_name`         | 1..=255 bytes of UTF-8       | `node-<random>` |
//! | `listen`            | `host:port` (port 0 = any)  | none (no listener) |
//! | `advertise`         | `host:port` peers dial to reach this node | the bound `listen` address |
//! | `seeds`             | comma-separated `host:port` | none          |
//! | `cluster`           | 1..=255 bytes of UTF-8       | `headcount`   |
//! | `secret`            | non-empty; required with `listen` or `seeds` | none |
//! | `flush_interval_ms` | 1..=60000                   | 100           |
//! | `down_after_ms`     | 1..=3600000                 | 1000          |
//! | `down_grace_ms`     | 0..=3600000                 | 0             |
//! | `max_topic_len`     | 1..=65535                   | 1024          |
//! | `gc_after_ms`       | 0..=86400000                | 60000         |

use crate::error::{Error, Result};
use std::fmt;
use std::time::Duration;

/// Validated settings of a [`crate::Node`]. Build with [`Config::new`] and
/// [`Config::set`]; every value is checked when set.
#[derive(Clone)]
pub struct Config {
    pub(crate) node_name: Option<String>,
    pub(crate) listen: Option<String>,
    pub(crate) advertise: Option<String>,
    pub(crate) seeds: Vec<String>,
    pub(crate) cluster: String,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) flush_interval: Duration,
    pub(crate) down_after: Duration,
    pub(crate) down_grace: Duration,
    pub(crate) max_topic_len: usize,
    pub(crate) gc_after: Duration,
}

/// Every key [`Config::set`] accepts.
pub const KEYS: &[&str] = &[
    "node_name",
    "listen",
    "advertise",
    "seeds",
    "cluster",
    "secret",
    "flush_interval_ms",
    "down_after_ms",
    "down_grace_ms",
    "max_topic_len",
    "gc_after_ms",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            node_name: None,
            listen: None,
            advertise: None,
            seeds: Vec::new(),
            cluster: "headcount".to_owned(),
            secret: None,
            flush_interval: Duration::from_millis(100),
            down_after: Duration::from_millis(1000),
            down_grace: Duration::ZERO,
            max_topic_len: crate::DEFAULT_MAX_TOPIC_LEN,
            gc_after: crate::DEFAULT_GC_AFTER,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("node_name", &self.node_name)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("cluster", &self.cluster)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("flush_interval", &self.flush_interval)
            .field("down_after", &self.down_after)
            .field("down_grace", &self.down_grace)
            .field("max_topic_len", &self.max_topic_len)
            .field("gc_after", &self.gc_after)
            .finish()
    }
}

impl Config {
    /// Defaults: a local-only node.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, checking both. On error nothing changes.
    ///
    /// ```
    /// let mut cfg = headcount::Config::new();
    /// cfg.set("flush_interval_ms", "50").unwrap();
    /// assert!(cfg.set("flush_interval_ms", "soon").is_err());
    /// assert!(cfg.set("colour", "blue").is_err());
    /// ```
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |message: String| Error::Config { key: key.to_owned(), message };
        match key {
            "node_name" => self.node_name = Some(name(value).map_err(bad)?),
            "cluster" => self.cluster = name(value).map_err(bad)?,
            "listen" => self.listen = Some(address(value).map_err(bad)?),
            "advertise" => self.advertise = Some(address(value).map_err(bad)?),
            "seeds" => {
                self.seeds = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(address)
                    .collect::<Result<_, _>>()
                    .map_err(bad)?;
            }
            "secret" => {
                if value.is_empty() {
                    return Err(bad("must not be empty".into()));
                }
                self.secret = Some(value.as_bytes().to_vec());
            }
            "flush_interval_ms" => self.flush_interval = millis(value, 1, 60_000).map_err(bad)?,
            "down_after_ms" => self.down_after = millis(value, 1, 3_600_000).map_err(bad)?,
            "down_grace_ms" => self.down_grace = millis(value, 0, 3_600_000).map_err(bad)?,
            "gc_after_ms" => self.gc_after = millis(value, 0, 86_400_000).map_err(bad)?,
            "max_topic_len" => {
                self.max_topic_len = integer(value, 1, 65_535).map_err(bad)? as usize;
            }
            _ => {
                return Err(Error::Config {
                    key: key.to_owned(),
                    message: format!("unknown key; known keys: {}", KEYS.join(", ")),
                })
            }
        }
        Ok(())
    }

    /// Whether this config asks for networking (a listener or seeds).
    pub fn is_clustered(&self) -> bool {
        self.listen.is_some() || !self.seeds.is_empty()
    }

    /// Checks the settings as a whole (what [`crate::Node::start`] checks).
    pub fn validate(&self) -> Result<()> {
        if self.is_clustered() && self.secret.is_none() {
            return Err(Error::Config {
                key: "secret".into(),
                message: "required when listen or seeds is set (no unauthenticated clusters)".into(),
            });
        }
        Ok(())
    }
}

fn name(value: &str) -> Result<String, String> {
    match value.len() {
        0 => Err("must not be empty".into()),
        1..=255 => Ok(value.to_owned()),
        n => Err(format!("is {n} bytes; at most 255")),
    }
}

/// `host:port` with a numeric port; the host is resolved when the node starts.
pub(crate) fn address(value: &str) -> Result<String, String> {
    let value = value.trim();
    let (host, port) = value.rsplit_once(':').ok_or_else(|| format!("{value:?} is not host:port"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    port.parse::<u16>().map_err(|_| format!("{value:?} has no valid port (0-65535)"))?;
    Ok(value.to_owned())
}

fn integer(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = value.trim().parse().map_err(|_| format!("{value:?} is not a whole number"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

fn millis(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    integer(value, min, max).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(key: &str, value: &str) -> String {
        Config::new().set(key, value).unwrap_err().to_string()
    }

    #[test]
    fn every_key_accepts_a_good_value() {
        let mut cfg = Config::new();
        for (k, v) in [
            ("node_name", "a"),
            ("listen", "127.0.0.1:0"),
            ("seeds", "127.0.0.1:7401, localhost:7402"),
            ("cluster", "prod"),
            ("secret", "s3cret"),
            ("flush_interval_ms", "50"),
            ("down_after_ms", "500"),
            ("down_grace_ms", "0"),
            ("max_topic_len", "512"),
            ("gc_after_ms", "1000"),
        ] {
            cfg.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        assert_eq!(cfg.seeds, ["127.0.0.1:7401", "localhost:7402"]);
        assert_eq!(cfg.max_topic_len, 512);
        assert_eq!(cfg.flush_interval, Duration::from_millis(50));
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_values_say_what_is_wrong_and_change_nothing() {
        assert!(err("colour", "blue").contains("unknown key"));
        assert!(err("flush_interval_ms", "0").contains("out of range"));
        assert!(err("flush_interval_ms", "-5").contains("not a whole number"));
        assert!(err("listen", "127.0.0.1").contains("not host:port"));
        assert!(err("listen", "127.0.0.1:99999").contains("port"));
        assert!(err("listen", ":80").contains("no host"));
        assert!(err("seeds", "a:1,b").contains("not host:port"));
        assert!(err("secret", "").contains("empty"));
        assert!(err("node_name", &"x".repeat(256)).contains("256 bytes"));
        let mut cfg = Config::new();
        cfg.set("max_topic_len", "100").unwrap();
        assert!(cfg.set("max_topic_len", "0").is_err());
        assert_eq!(cfg.max_topic_len, 100);
    }

    #[test]
    fn a_network_needs_a_secret() {
        let mut cfg = Config::new();
        cfg.validate().unwrap();
        cfg.set("listen", "127.0.0.1:0").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("secret") && e.contains("required"), "{e}");
        cfg.set("secret", "x").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut cfg = Config::new();
        cfg.set("secret", "hunter2").unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
