//! Node configuration: one table of keys, read everywhere.
//!
//! The same string keys work in Rust ([`Config::set`]), the C ABI
//! (`hc_config_set`), every binding and the CLI (librdkafka's model: one
//! setter, and a new option needs no new symbol anywhere). The table at the
//! bottom of this file is the only place a key is declared: one line gives
//! its name, the typed [`Settings`] field it fills, the default, the rule
//! that checks it and a one-line doc. From it come [`Config::set`] (parsing,
//! validation, the unknown-key error), the typed [`ConfigBuilder`], the
//! public [`CONFIG_TABLE`] and [`KEYS`], and through those the README's key
//! table, `hc_config_set`'s doc in `include/headcount.h` (both checked
//! against the table by `core/tests/config_docs.rs`) and the fuzz target's
//! oracle (`fuzz/src/config.rs`).
//!
//! A node reads the result once: [`crate::Node::start`] shares one
//! [`Settings`] value (behind an `Arc`) with its flusher, its cluster
//! runtime and every connection, so no layer copies settings field by field.

use crate::error::{Error, Result};
use crate::logging::LogFormat;
use std::fmt;
use std::time::Duration;

/// What values a key takes (the "value" column of the key table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueKind {
    /// Text of 1 to `max_len` bytes (UTF-8 through the string API).
    Name {
        /// The most bytes.
        max_len: usize,
    },
    /// `host:port` with a numeric port; the host is resolved when the node
    /// starts. Surrounding whitespace is trimmed; `[v6]:port` is accepted.
    Address,
    /// Comma-separated [`ValueKind::Address`]es (empty items are skipped).
    AddressList,
    /// Any non-empty bytes (non-empty UTF-8 through the string API).
    Secret,
    /// A decimal whole number in `min..=max` (surrounding whitespace trimmed).
    Integer {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// A decimal whole number of milliseconds in `min..=max`.
    Millis {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// One of a few words (surrounding whitespace trimmed).
    OneOf {
        /// The words.
        values: &'static [&'static str],
    },
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Name { max_len } => write!(f, "1..={max_len} bytes of UTF-8"),
            ValueKind::Address => write!(f, "`host:port`"),
            ValueKind::AddressList => write!(f, "comma-separated `host:port`"),
            ValueKind::Secret => write!(f, "non-empty"),
            ValueKind::Integer { min, max } | ValueKind::Millis { min, max } => write!(f, "{min}..={max}"),
            ValueKind::OneOf { values } => {
                let words: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                f.write_str(&words.join(" or "))
            }
        }
    }
}

/// One row of the key table: everything [`Config::set`] knows about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key, as [`Config::set`] and `hc_config_set` take it.
    pub name: &'static str,
    /// What values it takes.
    pub kind: ValueKind,
    /// Its default, as shown in the docs (a value, or what happens when unset).
    pub default: &'static str,
    /// What it means, in one line.
    pub doc: &'static str,
}

/// A secret value: readable only inside the crate, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<Vec<u8>> for Secret {
    fn from(v: Vec<u8>) -> Self {
        Secret(v)
    }
}

impl From<&[u8]> for Secret {
    fn from(v: &[u8]) -> Self {
        Secret(v.to_vec())
    }
}

impl From<&str> for Secret {
    fn from(v: &str) -> Self {
        Secret(v.as_bytes().to_vec())
    }
}

impl From<String> for Secret {
    fn from(v: String) -> Self {
        Secret(v.into_bytes())
    }
}

/// How a key's value is checked, as a string ([`Config::set`]) and as a
/// typed value ([`ConfigBuilder`]): the one implementation of each
/// [`ValueKind`].
trait Rule {
    /// The typed value the rule yields (a [`ConfigBuilder`] method takes it).
    type Value;
    /// Checks (and normalizes) a typed value.
    fn accept(&self, value: Self::Value) -> Result<Self::Value, String>;
    /// Parses a string value, then checks it.
    fn parse(&self, value: &str) -> Result<Self::Value, String>;
}

struct Name {
    max_len: usize,
}

impl Name {
    const fn kind(&self) -> ValueKind {
        ValueKind::Name { max_len: self.max_len }
    }
}

impl Rule for Name {
    type Value = String;
    fn accept(&self, value: String) -> Result<String, String> {
        match value.len() {
            0 => Err("must not be empty".into()),
            n if n > self.max_len => Err(format!("is {n} bytes; at most {}", self.max_len)),
            _ => Ok(value),
        }
    }
    fn parse(&self, value: &str) -> Result<String, String> {
        self.accept(value.to_owned())
    }
}

struct Address;

impl Address {
    const fn kind(&self) -> ValueKind {
        ValueKind::Address
    }
}

impl Rule for Address {
    type Value = String;
    fn accept(&self, value: String) -> Result<String, String> {
        self.parse(&value)
    }
    fn parse(&self, value: &str) -> Result<String, String> {
        address(value)
    }
}

struct AddressList;

impl AddressList {
    const fn kind(&self) -> ValueKind {
        ValueKind::AddressList
    }
}

impl Rule for AddressList {
    type Value = Vec<String>;
    fn accept(&self, value: Vec<String>) -> Result<Vec<String>, String> {
        value.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(address).collect()
    }
    fn parse(&self, value: &str) -> Result<Vec<String>, String> {
        value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(address).collect()
    }
}

struct SecretRule;

impl SecretRule {
    const fn kind(&self) -> ValueKind {
        ValueKind::Secret
    }
}

impl Rule for SecretRule {
    type Value = Secret;
    fn accept(&self, value: Secret) -> Result<Secret, String> {
        if value.0.is_empty() {
            return Err("must not be empty".into());
        }
        Ok(value)
    }
    fn parse(&self, value: &str) -> Result<Secret, String> {
        self.accept(value.into())
    }
}

struct Integer {
    min: u64,
    max: u64,
}

impl Integer {
    const fn kind(&self) -> ValueKind {
        ValueKind::Integer { min: self.min, max: self.max }
    }
}

impl Rule for Integer {
    type Value = usize;
    fn accept(&self, value: usize) -> Result<usize, String> {
        in_range(value as u64, self.min, self.max).map(|n| n as usize)
    }
    fn parse(&self, value: &str) -> Result<usize, String> {
        in_range(whole_number(value)?, self.min, self.max).map(|n| n as usize)
    }
}

struct Millis {
    min: u64,
    max: u64,
}

impl Millis {
    const fn kind(&self) -> ValueKind {
        ValueKind::Millis { min: self.min, max: self.max }
    }
}

impl Rule for Millis {
    type Value = Duration;
    fn accept(&self, value: Duration) -> Result<Duration, String> {
        if value.subsec_nanos() % 1_000_000 != 0 {
            return Err(format!("{value:?} is not a whole number of milliseconds"));
        }
        let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
        in_range(ms, self.min, self.max).map(Duration::from_millis)
    }
    fn parse(&self, value: &str) -> Result<Duration, String> {
        in_range(whole_number(value)?, self.min, self.max).map(Duration::from_millis)
    }
}

/// When a node flushes its changes to its peers (`flush_mode`; the policy is
/// `flush.rs`'s, docs/CLUSTER.md has the details).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushMode {
    /// The first change after a quiet `flush_interval_ms` is shipped at
    /// once; while changes keep coming, at most one flush per interval.
    #[default]
    Adaptive,
    /// One flush every `flush_interval_ms`, changes or not.
    Fixed,
}

impl FlushMode {
    /// Every mode's name, as `flush_mode` takes it.
    pub const NAMES: &'static [&'static str] = &["adaptive", "fixed"];

    /// The mode named `name` (`adaptive`, `fixed`).
    pub fn from_name(name: &str) -> Option<FlushMode> {
        match name {
            "adaptive" => Some(FlushMode::Adaptive),
            "fixed" => Some(FlushMode::Fixed),
            _ => None,
        }
    }

    /// The name `flush_mode` gives this mode.
    pub fn name(self) -> &'static str {
        match self {
            FlushMode::Adaptive => "adaptive",
            FlushMode::Fixed => "fixed",
        }
    }
}

/// Parses one of `names` (surrounding whitespace trimmed) with `from_name`:
/// the parse of every [`ValueKind::OneOf`] rule.
fn one_of<T>(value: &str, names: &[&str], from_name: fn(&str) -> Option<T>) -> Result<T, String> {
    from_name(value.trim()).ok_or_else(|| format!("{value:?} is not one of {}", names.join(", ")))
}

struct FlushModeRule;

impl FlushModeRule {
    const fn kind(&self) -> ValueKind {
        ValueKind::OneOf { values: FlushMode::NAMES }
    }
}

impl Rule for FlushModeRule {
    type Value = FlushMode;
    fn accept(&self, value: FlushMode) -> Result<FlushMode, String> {
        Ok(value)
    }
    fn parse(&self, value: &str) -> Result<FlushMode, String> {
        one_of(value, FlushMode::NAMES, FlushMode::from_name)
    }
}

struct Format;

impl Format {
    const fn kind(&self) -> ValueKind {
        ValueKind::OneOf { values: LogFormat::NAMES }
    }
}

impl Rule for Format {
    type Value = LogFormat;
    fn accept(&self, value: LogFormat) -> Result<LogFormat, String> {
        Ok(value)
    }
    fn parse(&self, value: &str) -> Result<LogFormat, String> {
        one_of(value, LogFormat::NAMES, LogFormat::from_name)
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

fn whole_number(value: &str) -> Result<u64, String> {
    value.trim().parse().map_err(|_| format!("{value:?} is not a whole number"))
}

fn in_range(n: u64, min: u64, max: u64) -> Result<u64, String> {
    if !(min..=max).contains(&n) {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

/// Declares the key table: the [`Settings`] struct and its `Default`, the
/// [`CONFIG_TABLE`] rows, [`KEYS`], the dispatch of [`Config::set`] and the
/// typed [`ConfigBuilder`] methods. One entry per key:
///
/// ```text
/// /// one-line doc
/// "key" => field: FieldType = default_expr, Rule { args } -> BuilderType, default "shown default";
/// ```
///
/// The builder method takes a `BuilderType` (`impl Into<String>`, say),
/// which converts into the rule's typed value, which converts into the field
/// with `Into` (so a `String` rule fills an `Option<String>` field).
macro_rules! config_keys {
    ($(
        #[doc = $doc:literal]
        $key:literal => $field:ident: $ty:ty = $default:expr,
            $rule:ident $({ $($arg:ident: $val:expr),* $(,)? })? -> $vty:ty, default $shown:literal;
    )+) => {
        /// A node's settings, typed and validated: what a [`Config`] holds
        /// and what the node, its cluster runtime and its connections read
        /// (one value, shared). Built through [`Config::set`] or
        /// [`Config::builder`]; read with [`Config::settings`]. Each field is
        /// one row of [`CONFIG_TABLE`].
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Settings {
            $(
                #[doc = $doc]
                #[doc = ""]
                #[doc = concat!("Key `", $key, "`; default ", $shown, ".")]
                pub $field: $ty,
            )+
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $($field: $default,)+ }
            }
        }

        /// Every key [`Config::set`] accepts, in table order.
        pub const KEYS: &[&str] = &[$($key),+];

        /// The key table: every key with its kind of value, default and doc.
        pub const CONFIG_TABLE: &[KeyInfo] = &[$(
            KeyInfo {
                name: $key,
                kind: ($rule $({ $($arg: $val),* })?).kind(),
                default: $shown,
                doc: $doc,
            },
        )+];

        impl Settings {
            /// Sets `key` from its string form; on error nothing changes.
            fn set(&mut self, key: &str, value: &str) -> Result<(), Option<String>> {
                match key {
                    $($key => {
                        self.$field = Rule::parse(&$rule $({ $($arg: $val),* })?, value).map_err(Some)?.into();
                    })+
                    _ => return Err(None),
                }
                Ok(())
            }
        }

        impl ConfigBuilder {
            $(
                #[doc = concat!("Sets `", $key, "`:", $doc)]
                #[doc = ""]
                #[doc = "Checked as [`Config::set`] checks the string form; the first error is"]
                #[doc = "returned by [`ConfigBuilder::build`]."]
                #[allow(clippy::useless_conversion)]
                pub fn $field(
                    mut self,
                    value: $vty,
                ) -> Self {
                    if self.error.is_none() {
                        match Rule::accept(&$rule $({ $($arg: $val),* })?, value.into()) {
                            Ok(v) => self.settings.$field = v.into(),
                            Err(message) => {
                                self.error = Some(Error::Config { key: $key.to_owned(), message })
                            }
                        }
                    }
                    self
                }
            )+
        }
    };
}

/// Default `max_peer_topics`: every topic id the protocol allows (2^24).
pub(crate) const DEFAULT_MAX_PEER_TOPICS: usize = 1 << 24;
/// Default `max_peer_topic_bytes`: 512 MiB of one peer's topic names.
pub(crate) const DEFAULT_MAX_PEER_TOPIC_BYTES: usize = 512 << 20;

config_keys! {
    /// this node's name, shown to its peers
    "node_name" => node_name: Option<String> = None,
        Name { max_len: 255 } -> impl Into<String>, default "`node-<random>`";
    /// address to accept peers on (port 0: any free port)
    "listen" => listen: Option<String> = None,
        Address -> impl Into<String>, default "none (no listener)";
    /// address peers dial to reach this node (NAT, proxies)
    "advertise" => advertise: Option<String> = None,
        Address -> impl Into<String>, default "the bound `listen` address";
    /// nodes to join (one live member is enough)
    "seeds" => seeds: Vec<String> = Vec::new(),
        AddressList -> impl Into<Vec<String>>, default "none";
    /// cluster name; nodes of other clusters are refused
    "cluster" => cluster: String = "headcount".to_owned(),
        Name { max_len: 255 } -> impl Into<String>, default "`headcount`";
    /// shared secret for HMAC-SHA256 peer authentication; required with `listen` or `seeds`
    "secret" => secret: Option<Secret> = None,
        SecretRule -> impl Into<Secret>, default "none";
    /// how often changed counts are shipped to peers, in milliseconds (with `flush_mode` `adaptive`: at most how often)
    "flush_interval_ms" => flush_interval: Duration = Duration::from_millis(100),
        Millis { min: 1, max: 60_000 } -> Duration, default "100";
    /// `adaptive`: the first change after a quiet interval is shipped at once, then at most one flush per interval; `fixed`: one flush per interval
    "flush_mode" => flush_mode: FlushMode = FlushMode::Adaptive,
        FlushModeRule -> FlushMode, default "`adaptive`";
    /// silence after which a peer is down, in milliseconds
    "down_after_ms" => down_after: Duration = Duration::from_millis(1000),
        Millis { min: 1, max: 3_600_000 } -> Duration, default "1000";
    /// how long a peer connection may take to authenticate (HELLO and AUTH: about two round trips), in milliseconds; at most 32 accepted connections, 8 per source address, may be authenticating at once
    "handshake_timeout_ms" => handshake_timeout: Duration = Duration::from_millis(1000),
        Millis { min: 1, max: 60_000 } -> Duration, default "1000";
    /// how long a down peer's counts are still summed, in milliseconds
    "down_grace_ms" => down_grace: Duration = Duration::ZERO,
        Millis { min: 0, max: 3_600_000 } -> Duration, default "0";
    /// longest topic, in bytes
    "max_topic_len" => max_topic_len: usize = crate::DEFAULT_MAX_TOPIC_LEN,
        Integer { min: 1, max: 65_535 } -> usize, default "1024";
    /// most topics one peer may define on a connection (its snapshot's size); a peer past it is refused with BYE PEER_TOO_LARGE and its counts dropped
    "max_peer_topics" => max_peer_topics: usize = DEFAULT_MAX_PEER_TOPICS,
        Integer { min: 1, max: 16_777_216 } -> usize, default "16777216";
    /// most bytes of topic names one peer may define on a connection; a peer past it is refused with BYE PEER_TOO_LARGE and its counts dropped
    "max_peer_topic_bytes" => max_peer_topic_bytes: usize = DEFAULT_MAX_PEER_TOPIC_BYTES,
        Integer { min: 1, max: 1_099_511_627_776 } -> usize, default "536870912";
    /// how long a topic sits at zero before it is collected, in milliseconds
    "gc_after_ms" => gc_after: Duration = crate::DEFAULT_GC_AFTER,
        Millis { min: 0, max: 86_400_000 } -> Duration, default "60000";
    /// address to serve `/metrics` (Prometheus), `/healthz` and `/readyz` on over HTTP (port 0: any free port; docs/OPERATIONS.md)
    "metrics_listen" => metrics_listen: Option<String> = None,
        Address -> impl Into<String>, default "none (no metrics server)";
    /// format of this node's log lines on stderr: `text` for people, `json` (one object per line: ts, level, target, node, message) for log shippers (docs/OPERATIONS.md, "Logs")
    "log_format" => log_format: LogFormat = LogFormat::Text,
        Format -> LogFormat, default "`text`";
}

impl Settings {
    /// Whether these settings ask for networking (a listener or seeds).
    pub(crate) fn is_clustered(&self) -> bool {
        self.listen.is_some() || !self.seeds.is_empty()
    }
}

/// Validated settings of a [`crate::Node`]. Build with [`Config::new`] and
/// [`Config::set`] (string keys), or with [`Config::builder`] (typed); every
/// value is checked when set.
#[derive(Debug, Clone, Default)]
pub struct Config {
    settings: Settings,
}

/// Typed construction of a [`Config`], one method per key of
/// [`CONFIG_TABLE`] (named after its [`Settings`] field), with the same
/// checks as [`Config::set`].
///
/// ```
/// use std::time::Duration;
/// let cfg = headcount::Config::builder()
///     .node_name("a")
///     .listen("127.0.0.1:0")
///     .secret("s3cret")
///     .flush_interval(Duration::from_millis(50))
///     .build()?;
/// assert_eq!(cfg.settings().flush_interval, Duration::from_millis(50));
/// assert!(headcount::Config::builder().max_topic_len(0).build().is_err());
/// # Ok::<(), headcount::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct ConfigBuilder {
    settings: Settings,
    error: Option<Error>,
}

impl ConfigBuilder {
    /// The config, or the first invalid value given, or what
    /// [`Config::validate`] finds wrong with the whole.
    pub fn build(self) -> Result<Config> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let config = Config { settings: self.settings };
        config.validate()?;
        Ok(config)
    }
}

impl Config {
    /// Defaults: a local-only node.
    pub fn new() -> Self {
        Self::default()
    }

    /// A typed builder; see [`ConfigBuilder`].
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The typed settings this config holds.
    pub fn settings(&self) -> &Settings {
        &self.settings
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
        self.settings.set(key, value).map_err(|message| Error::Config {
            key: key.to_owned(),
            message: message.unwrap_or_else(|| format!("unknown key; known keys: {}", KEYS.join(", "))),
        })
    }

    /// Whether this config asks for networking (a listener or seeds).
    pub fn is_clustered(&self) -> bool {
        self.settings.is_clustered()
    }

    /// Checks the settings as a whole (what [`crate::Node::start`] checks).
    pub fn validate(&self) -> Result<()> {
        if self.is_clustered() && self.settings.secret.is_none() {
            return Err(Error::Config {
                key: "secret".into(),
                message: "required when listen or seeds is set (no unauthenticated clusters)".into(),
            });
        }
        Ok(())
    }
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
            ("flush_mode", " fixed "),
            ("down_after_ms", "500"),
            ("down_grace_ms", "0"),
            ("max_topic_len", "512"),
            ("gc_after_ms", "1000"),
            ("metrics_listen", "127.0.0.1:0"),
        ] {
            cfg.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        assert_eq!(cfg.settings.flush_mode, FlushMode::Fixed);
        assert_eq!(Config::new().settings.flush_mode, FlushMode::Adaptive);
        assert_eq!(cfg.settings.seeds, ["127.0.0.1:7401", "localhost:7402"]);
        assert_eq!(cfg.settings.max_topic_len, 512);
        assert_eq!(cfg.settings.flush_interval, Duration::from_millis(50));
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_values_say_what_is_wrong_and_change_nothing() {
        assert!(err("colour", "blue").contains("unknown key"));
        assert!(err("flush_interval_ms", "0").contains("out of range"));
        assert!(err("flush_interval_ms", "-5").contains("not a whole number"));
        assert!(err("flush_mode", "Fixed").contains("not one of adaptive, fixed"));
        assert!(err("listen", "127.0.0.1").contains("not host:port"));
        assert!(err("listen", "127.0.0.1:99999").contains("port"));
        assert!(err("listen", ":80").contains("no host"));
        assert!(err("seeds", "a:1,b").contains("not host:port"));
        assert!(err("metrics_listen", "9464").contains("not host:port"));
        assert!(err("secret", "").contains("empty"));
        assert!(err("node_name", &"x".repeat(256)).contains("256 bytes"));
        let mut cfg = Config::new();
        cfg.set("max_topic_len", "100").unwrap();
        assert!(cfg.set("max_topic_len", "0").is_err());
        assert_eq!(cfg.settings.max_topic_len, 100);
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
        let cfg = Config::builder().secret("hunter2").build().unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn the_unknown_key_error_lists_every_key_of_the_table() {
        let e = err("colour", "blue");
        for k in CONFIG_TABLE {
            assert!(e.contains(k.name), "{e} omits {}", k.name);
        }
        assert_eq!(KEYS, CONFIG_TABLE.iter().map(|k| k.name).collect::<Vec<_>>());
    }

    /// The documented default of every key that has a value for one (a
    /// number, or a value in backticks) is the real default: setting it
    /// leaves a fresh config unchanged.
    #[test]
    fn documented_defaults_are_the_real_ones() {
        let mut checked = 0;
        for k in CONFIG_TABLE {
            let shown = k.default.trim_matches('`');
            let literal = k.default.parse::<u64>().is_ok() || (k.default.starts_with('`') && !shown.contains('<'));
            if !literal {
                continue;
            }
            let mut cfg = Config::new();
            cfg.set(k.name, shown).unwrap_or_else(|e| panic!("{}: default {shown:?}: {e}", k.name));
            assert_eq!(cfg.settings, Settings::default(), "{}'s documented default is not its default", k.name);
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} defaults checked");
    }

    /// The builder checks typed values with the same rules (and messages) as
    /// the string setter, keeps the first error, and validates the whole.
    #[test]
    fn the_builder_checks_like_set() {
        let built = Config::builder()
            .node_name("a")
            .listen(" 127.0.0.1:0 ")
            .seeds(vec!["127.0.0.1:7401".to_owned(), " ".to_owned(), "localhost:7402".to_owned()])
            .cluster("prod")
            .secret(&b"\xffbytes"[..])
            .flush_interval(Duration::from_millis(50))
            .down_after(Duration::from_millis(500))
            .down_grace(Duration::ZERO)
            .max_topic_len(512)
            .gc_after(Duration::from_secs(1))
            .metrics_listen("127.0.0.1:9464")
            .build()
            .unwrap();
        let mut set = Config::new();
        for (k, v) in [
            ("node_name", "a"),
            ("listen", " 127.0.0.1:0 "),
            ("seeds", "127.0.0.1:7401, ,localhost:7402"),
            ("cluster", "prod"),
            ("flush_interval_ms", "50"),
            ("down_after_ms", "500"),
            ("down_grace_ms", "0"),
            ("max_topic_len", "512"),
            ("gc_after_ms", "1000"),
            ("metrics_listen", "127.0.0.1:9464"),
        ] {
            set.set(k, v).unwrap();
        }
        set.settings.secret = Some(Secret(b"\xffbytes".to_vec()));
        assert_eq!(built.settings, set.settings);

        let msg = |b: ConfigBuilder| b.build().unwrap_err().to_string();
        assert_eq!(msg(Config::builder().flush_interval(Duration::ZERO)), err("flush_interval_ms", "0"));
        assert_eq!(msg(Config::builder().max_topic_len(0)), err("max_topic_len", "0"));
        assert_eq!(msg(Config::builder().listen(":80")), err("listen", ":80"));
        assert_eq!(msg(Config::builder().node_name("")), err("node_name", ""));
        assert_eq!(msg(Config::builder().secret("")), err("secret", ""));
        assert!(msg(Config::builder().gc_after(Duration::from_micros(1500))).contains("whole number of milliseconds"));
        // The first error wins; the whole is validated last.
        let e = msg(Config::builder().listen("x").cluster(""));
        assert!(e.contains("\"listen\""), "{e}");
        let e = msg(Config::builder().listen("127.0.0.1:0"));
        assert!(e.contains("secret") && e.contains("required"), "{e}");
    }
}
