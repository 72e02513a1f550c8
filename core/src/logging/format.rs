//! The two shapes of a log line (`log_format`): `text` for people, `json`
//! (one object per line) for log shippers.
//!
//! ```text
//! 2026-05-01T09:14:03.512Z INFO headcount::cluster::registry [node-a] peer node-b left
//! {"ts":"2026-05-01T09:14:03.512Z","level":"info","target":"headcount::cluster::registry","node":"node-a","message":"peer node-b left"}
//! ```

use super::{Level, Record};
use std::fmt::{self, Write as _};
use std::time::SystemTime;

/// How a node writes its log lines to stderr (config key `log_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// `<UTC time, ms> <LEVEL> <target> [<node>] <message>`.
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `node`, `message`.
    Json,
}

impl LogFormat {
    /// Every format's name, as `log_format` takes it.
    pub const NAMES: &'static [&'static str] = &["text", "json"];

    /// The format named `name` (`text`, `json`).
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    /// The name `log_format` gives this format.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `record` as one line in `format`, without its newline. A message's own
/// line breaks are escaped (`\n`) in `text`, so one record is one line in
/// both formats.
pub fn line(format: LogFormat, at: SystemTime, record: &Record<'_>) -> String {
    let ts = humantime::format_rfc3339_millis(at).to_string();
    match format {
        LogFormat::Text => {
            let mut s = format!("{ts} {} {} [{}] ", record.level.tag(), record.target, record.node);
            if record.message.contains(['\n', '\r']) {
                let _ = write!(s, "{}", record.message.replace('\n', "\\n").replace('\r', "\\r"));
            } else {
                s.push_str(record.message);
            }
            s
        }
        LogFormat::Json => serde_json::json!({
            "ts": ts,
            "level": record.level.name(),
            "target": record.target,
            "node": record.node,
            "message": record.message,
        })
        .to_string(),
    }
}

impl Level {
    /// `ERROR`, `WARN`, `INFO`, `DEBUG`: the level in a `text` line.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }

    /// `error`, `warn`, `info`, `debug`: the level in a `json` line and in
    /// `HEADCOUNT_LOG`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_777_626_843_512)
    }

    fn record(message: &str) -> Record<'_> {
        Record { level: Level::Warn, target: "headcount::cluster::dial", node: "a", message }
    }

    #[test]
    fn text_lines_have_time_level_target_and_node() {
        assert_eq!(
            line(LogFormat::Text, at(), &record("dial 127.0.0.1:7401: refused")),
            "2026-05-01T09:14:03.512Z WARN headcount::cluster::dial [a] dial 127.0.0.1:7401: refused"
        );
        assert_eq!(
            line(LogFormat::Text, at(), &record("two\nlines")),
            "2026-05-01T09:14:03.512Z WARN headcount::cluster::dial [a] two\\nlines"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_every_field() {
        let l = line(LogFormat::Json, at(), &record("a \"quoted\"\nmessage"));
        assert!(!l.contains('\n'), "{l}");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ts": "2026-05-01T09:14:03.512Z",
                "level": "warn",
                "target": "headcount::cluster::dial",
                "node": "a",
                "message": "a \"quoted\"\nmessage",
            })
        );
    }

    #[test]
    fn formats_round_trip_through_their_names() {
        for name in LogFormat::NAMES {
            assert_eq!(LogFormat::from_name(name).map(LogFormat::name), Some(*name));
        }
        assert_eq!(LogFormat::from_name("xml"), None);
    }
}
