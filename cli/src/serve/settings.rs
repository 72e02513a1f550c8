//! `headcount serve`'s settings: every node config key (the core's key
//! table, `headcount::CONFIG_TABLE`) plus serve's own (the sidecar API and
//! the secret file), each settable in three places, generated from the one
//! list so a new config key needs no change here:
//!
//! | where            | spelling                     | example                        |
//! |------------------|------------------------------|--------------------------------|
//! | `--config FILE`  | the key, in TOML             | `flush_interval_ms = 50`       |
//! | environment      | `HEADCOUNT_` + KEY uppercase | `HEADCOUNT_FLUSH_INTERVAL_MS=50` |
//! | command line     | `--` + key, `_` as `-`       | `--flush-interval-ms 50`       |
//!
//! A flag beats the environment, which beats the file, which beats the
//! default. Every value given is checked, also one a higher layer
//! overrides, and an error names the key and where the value came from.
//!
//! TOML values may be strings, numbers, booleans or arrays of strings and
//! numbers (an array is the comma-separated list: `seeds = ["a:1", "b:2"]`
//! is `seeds = "a:1,b:2"`); unknown keys are errors.
//!
//! The secret has no flag (a flag is readable by every local user in
//! `/proc/<pid>/cmdline`): it comes from `secret_file` (or `--secret-file`),
//! `HEADCOUNT_SECRET`, or `secret` in the file. One layer may not give both
//! `secret` and `secret_file`.

use super::api::{self, Endpoint};
use crate::secret;
use headcount::{Config, ValueKind, CONFIG_TABLE};
use std::fmt;
use std::path::{Path, PathBuf};

/// One setting of `headcount serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The key, as in the TOML file.
    pub(crate) name: &'static str,
    /// One line for `--help`: what it means and what values it takes.
    pub(crate) doc: String,
    /// Its default, for a person.
    pub(crate) default: String,
    /// Whether it has a command-line flag (the secret has none).
    pub(crate) flag: bool,
}

impl Setting {
    /// `--flush-interval-ms`.
    pub(crate) fn long(&self) -> String {
        self.name.replace('_', "-")
    }

    /// `HEADCOUNT_FLUSH_INTERVAL_MS`.
    pub(crate) fn env(&self) -> String {
        format!("HEADCOUNT_{}", self.name.to_ascii_uppercase())
    }
}

/// The sidecar API endpoints.
pub(crate) const API: &str = "api";
/// The most API sessions at once.
pub(crate) const API_MAX_SESSIONS: &str = "api_max_sessions";
/// A file holding the secret.
pub(crate) const SECRET_FILE: &str = "secret_file";
/// The core's secret key (the one of [`ValueKind::Secret`]), which gets no flag.
const SECRET: &str = "secret";

/// [`API_MAX_SESSIONS`] when not set.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 1024;
/// The highest [`API_MAX_SESSIONS`] accepted (one thread per session).
const MAX_MAX_SESSIONS: usize = 65_536;

/// Every setting: the core's config keys, then serve's own.
pub(crate) fn all() -> Vec<Setting> {
    // The table's text is Markdown; a terminal shows it without backticks.
    let plain = |s: String| s.replace('`', "");
    let core = CONFIG_TABLE.iter().map(|k| Setting {
        name: k.name,
        doc: plain(format!("{} ({})", k.doc, k.kind)),
        default: plain(k.default.to_owned()),
        flag: !matches!(k.kind, ValueKind::Secret),
    });
    let own = [
        (API, "sidecar API endpoints, comma-separated: unix:/path or 127.0.0.1:PORT (loopback only)", "none"),
        (API_MAX_SESSIONS, "most API sessions at once (1..=65536)", "1024"),
        (SECRET_FILE, "file holding the cluster secret (surrounding whitespace trimmed)", "none"),
    ];
    let own = own.into_iter().map(|(name, doc, default)| Setting {
        name,
        doc: doc.to_owned(),
        default: default.to_owned(),
        flag: true,
    });
    core.chain(own).collect()
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "${v}"),
            Source::Flag(l) => write!(f, "--{l}"),
        }
    }
}

/// One value given for a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Given {
    pub(crate) name: &'static str,
    pub(crate) value: String,
    pub(crate) source: Source,
}

/// The settings in a TOML file.
pub(crate) fn from_file(path: &Path) -> Result<Vec<Given>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    from_toml(&text, path)
}

fn from_toml(text: &str, path: &Path) -> Result<Vec<Given>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
    let settings = all();
    let mut out = Vec::with_capacity(table.len());
    for (key, value) in &table {
        let Some(setting) = settings.iter().find(|s| s.name == key) else {
            let known: Vec<&str> = settings.iter().map(|s| s.name).collect();
            return Err(format!("{}: unknown key {key:?}; known keys: {}", path.display(), known.join(", ")));
        };
        let value = toml_value(value).ok_or_else(|| {
            format!("{}: {key}: expected a string, a number, a boolean or an array of them", path.display())
        })?;
        out.push(Given { name: setting.name, value, source: Source::File(path.to_owned()) });
    }
    Ok(out)
}

/// A TOML value as the string `Config::set` takes.
fn toml_value(v: &toml::Value) -> Option<String> {
    use toml::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> =
                items.iter().map(|i| if matches!(i, Value::Array(_)) { None } else { toml_value(i) }).collect();
            Some(parts?.join(","))
        }
        Value::Datetime(_) | Value::Table(_) => None,
    }
}

/// The settings in the environment, read through `var`.
pub(crate) fn from_env(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Vec<Given>, String> {
    let mut out = Vec::new();
    for setting in all() {
        let name = setting.env();
        let Some(value) = var(&name) else { continue };
        let value = value.into_string().map_err(|_| format!("${name} is not UTF-8 text"))?;
        out.push(Given { name: setting.name, value, source: Source::Env(name) });
    }
    Ok(out)
}

/// What `headcount serve` runs with.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) config: Config,
    pub(crate) api: Vec<Endpoint>,
    pub(crate) max_sessions: usize,
    /// Each setting given, in key order: the value as shown (the secret
    /// redacted) and where it came from.
    pub(crate) shown: Vec<(&'static str, String, Source)>,
}

/// Applies the layers from lowest to highest (file, environment, flags):
/// later values win; every value is checked.
pub(crate) fn resolve(layers: &[Vec<Given>]) -> Result<Resolved, String> {
    let mut config = Config::new();
    let mut api = Vec::new();
    let mut max_sessions = DEFAULT_MAX_SESSIONS;
    let mut shown: Vec<(&'static str, String, Source)> = Vec::new();
    for layer in layers {
        let secrets: Vec<&Given> = layer.iter().filter(|g| g.name == SECRET || g.name == SECRET_FILE).collect();
        if let [a, b, ..] = secrets[..] {
            return Err(format!("both {} ({}) and {} ({}) are given; give one", a.name, a.source, b.name, b.source));
        }
        for g in layer {
            let from = |message: String| format!("{} (from {}): {message}", g.name, g.source);
            let show = match g.name {
                API => {
                    api = api::parse_endpoints(&g.value).map_err(from)?;
                    g.value.clone()
                }
                API_MAX_SESSIONS => {
                    max_sessions =
                        g.value.trim().parse().ok().filter(|n| (1..=MAX_MAX_SESSIONS).contains(n)).ok_or_else(
                            || from(format!("{:?} is not a whole number in 1..={MAX_MAX_SESSIONS}", g.value)),
                        )?;
                    max_sessions.to_string()
                }
                SECRET_FILE => {
                    let s = secret::from_file(Path::new(&g.value)).map_err(from)?;
                    config.set(SECRET, &s).map_err(|e| from(e.to_string()))?;
                    format!("<redacted: read from {}>", g.value)
                }
                key => {
                    config.set(key, &g.value).map_err(|e| format!("{e} (from {})", g.source))?;
                    if key == SECRET {
                        "<redacted>".to_owned()
                    } else {
                        g.value.clone()
                    }
                }
            };
            // The secret file stands in for the secret: one row.
            let name = if g.name == SECRET_FILE { SECRET } else { g.name };
            shown.retain(|(n, _, _)| *n != name);
            shown.push((name, show, g.source.clone()));
        }
    }
    config.validate().map_err(|e| match e {
        headcount::Error::Config { ref key, .. } if key == SECRET => format!(
            "{e}; give it with secret_file (--secret-file, $HEADCOUNT_SECRET_FILE), $HEADCOUNT_SECRET or secret in the file"
        ),
        e => e.to_string(),
    })?;
    let order: Vec<&str> = all().iter().map(|s| s.name).collect();
    shown.sort_by_key(|(n, _, _)| order.iter().position(|o| o == n));
    Ok(Resolved { config, api, max_sessions, shown })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(name: &'static str, value: &str, source: Source) -> Given {
        Given { name, value: value.to_owned(), source }
    }

    fn file(text: &str) -> Result<Vec<Given>, String> {
        from_toml(text, Path::new("h.toml"))
    }

    #[test]
    fn every_config_key_is_a_setting_with_a_flag_but_the_secret() {
        let all = all();
        for key in headcount::CONFIG_KEYS {
            let s = all.iter().find(|s| s.name == *key).unwrap_or_else(|| panic!("{key} is not a setting"));
            assert_eq!(s.flag, *key != SECRET, "{key}");
        }
        let secrets: Vec<&str> =
            CONFIG_TABLE.iter().filter(|k| matches!(k.kind, ValueKind::Secret)).map(|k| k.name).collect();
        assert_eq!(secrets, [SECRET], "secret_file stands in for the one secret key");
        let max = all.iter().find(|s| s.name == API_MAX_SESSIONS).unwrap();
        assert_eq!(max.default, DEFAULT_MAX_SESSIONS.to_string());
        assert!(max.doc.contains(&format!("1..={MAX_MAX_SESSIONS}")), "{}", max.doc);
        let s = all.iter().find(|s| s.name == "flush_interval_ms").unwrap();
        assert_eq!((s.long().as_str(), s.env().as_str()), ("flush-interval-ms", "HEADCOUNT_FLUSH_INTERVAL_MS"));
    }

    #[test]
    fn toml_values_become_config_strings() {
        let got = file("node_name = \"a\"\nflush_interval_ms = 50\nseeds = [\"127.0.0.1:1\", \"h:2\"]\n").unwrap();
        let pairs: Vec<(&str, &str)> = got.iter().map(|g| (g.name, g.value.as_str())).collect();
        assert_eq!(pairs, [("flush_interval_ms", "50"), ("node_name", "a"), ("seeds", "127.0.0.1:1,h:2")]);
        assert_eq!(got[0].source, Source::File("h.toml".into()));
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = file("colour = \"blue\"").unwrap_err();
        assert!(e.contains("unknown key \"colour\"") && e.contains("flush_interval_ms"), "{e}");
        let e = file("[listen]\nport = 1").unwrap_err();
        assert!(e.contains("h.toml: listen: expected"), "{e}");
        let e = file("seeds = [[\"a:1\"]]").unwrap_err();
        assert!(e.contains("seeds: expected"), "{e}");
        let e = file("node_name = ").unwrap_err();
        assert!(e.starts_with("h.toml: ") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn environment_names_are_uppercase_keys() {
        let got = from_env(|v| (v == "HEADCOUNT_DOWN_AFTER_MS").then(|| "500".into())).unwrap();
        assert_eq!(got, [given("down_after_ms", "500", Source::Env("HEADCOUNT_DOWN_AFTER_MS".into()))]);
        use std::os::unix::ffi::OsStringExt;
        let e = from_env(|v| (v == "HEADCOUNT_CLUSTER").then(|| std::ffi::OsString::from_vec(vec![0xff]))).unwrap_err();
        assert!(e.contains("$HEADCOUNT_CLUSTER is not UTF-8"), "{e}");
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let f = |v| Source::File(v);
        let layers = [
            vec![
                given("node_name", "file", f("h.toml".into())),
                given("cluster", "file", f("h.toml".into())),
                given("max_topic_len", "10", f("h.toml".into())),
            ],
            vec![given("node_name", "env", Source::Env("HEADCOUNT_NODE_NAME".into())), {
                given("cluster", "env", Source::Env("HEADCOUNT_CLUSTER".into()))
            }],
            vec![given("node_name", "flag", Source::Flag("node-name".into()))],
        ];
        let r = resolve(&layers).unwrap();
        let shown: Vec<(&str, &str, String)> =
            r.shown.iter().map(|(n, v, s)| (*n, v.as_str(), s.to_string())).collect();
        assert_eq!(
            shown,
            [
                ("node_name", "flag", "--node-name".to_owned()),
                ("cluster", "env", "$HEADCOUNT_CLUSTER".to_owned()),
                ("max_topic_len", "10", "h.toml".to_owned()),
            ]
        );
        let dbg = format!("{:?}", r.config);
        assert!(dbg.contains("node_name: Some(\"flag\")") && dbg.contains("cluster: \"env\""), "{dbg}");
        assert!(dbg.contains("max_topic_len: 10"), "{dbg}");
        assert!(r.api.is_empty());
        assert_eq!(r.max_sessions, DEFAULT_MAX_SESSIONS);
    }

    #[test]
    fn errors_name_the_key_and_the_source() {
        let env = |k: &'static str, v: &str| given(k, v, Source::Env(format!("HEADCOUNT_{}", k.to_uppercase())));
        let e = resolve(&[vec![env("flush_interval_ms", "0")]]).unwrap_err();
        assert!(
            e.contains("\"flush_interval_ms\"") && e.contains("out of range") && e.contains("$HEADCOUNT_FLUSH"),
            "{e}"
        );
        // A bad value is an error even where a higher layer overrides it.
        let e =
            resolve(&[vec![env("down_after_ms", "x")], vec![given("down_after_ms", "5", Source::Flag("d".into()))]])
                .unwrap_err();
        assert!(e.contains("down_after_ms"), "{e}");
        let e = resolve(&[vec![env("api_max_sessions", "0")]]).unwrap_err();
        assert!(e.starts_with("api_max_sessions (from $HEADCOUNT_API_MAX_SESSIONS)"), "{e}");
        let e = resolve(&[vec![env("api", "10.1.2.3:80")]]).unwrap_err();
        assert!(e.starts_with("api (from $HEADCOUNT_API)") && e.contains("loopback"), "{e}");
        let e = resolve(&[vec![env("listen", "127.0.0.1:0")]]).unwrap_err();
        assert!(e.contains("\"secret\"") && e.contains("secret_file"), "{e}");
        let e = resolve(&[vec![env("secret_file", "/nonexistent/s")]]).unwrap_err();
        assert!(e.starts_with("secret_file (from $HEADCOUNT_SECRET_FILE): cannot read"), "{e}");
        let e = resolve(&[vec![env("secret", "a"), env("secret_file", "/x")]]).unwrap_err();
        assert!(e.contains("both secret") && e.contains("give one"), "{e}");
    }

    #[test]
    fn the_secret_is_never_shown_and_a_file_stands_in_for_it() {
        let dir = std::env::temp_dir().join(format!("headcount-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "hunter2\n").unwrap();
        let p = path.to_str().unwrap();
        let layers = [
            vec![given("secret", "from-file", Source::File("h.toml".into()))],
            vec![given("secret_file", p, Source::Flag("secret-file".into()))],
        ];
        let r = resolve(&layers).unwrap();
        assert_eq!(r.shown.len(), 1);
        assert_eq!(r.shown[0].0, "secret");
        assert!(r.shown[0].1.contains("redacted") && !r.shown[0].1.contains("hunter2"), "{:?}", r.shown);
        let mut clustered = r.config.clone();
        clustered.set("listen", "127.0.0.1:0").unwrap();
        clustered.validate().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
