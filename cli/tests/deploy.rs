//! deploy/: the sample settings list every key and are accepted as they
//! are; the systemd unit passes `systemd-analyze verify` (where the tool
//! exists) and its ExecStart command line, run with `--check-config`,
//! accepts the sample settings.

mod common;

use common::serve::{serve_output, TempDir};
use std::path::PathBuf;
use std::process::Command;

/// serve's own settings, besides the node config keys.
const SERVE_KEYS: &[&str] = &["api", "api_max_sessions", "secret_file"];

fn deploy(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy")).join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

#[test]
fn the_sample_settings_list_every_key() {
    let text = read("headcount.toml");
    let active: toml::Table = text.parse().expect("deploy/headcount.toml is TOML");
    // `# key = value` lines, uncommented, are TOML too: the documented defaults.
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ") && !r.starts_with(' ')))
        .map(|l| format!("{l}\n"))
        .collect();
    let commented: toml::Table = uncommented.parse().unwrap_or_else(|e| panic!("commented keys: {e}\n{uncommented}"));
    for key in headcount::CONFIG_KEYS.iter().chain(SERVE_KEYS) {
        let n = usize::from(active.contains_key(*key)) + usize::from(commented.contains_key(*key));
        assert_eq!(n, 1, "deploy/headcount.toml lists {key} {n} times (set or commented: once)");
    }
    // A commented number is the default: the key table's.
    for info in headcount::CONFIG_TABLE {
        if let (Some(toml::Value::Integer(shown)), Ok(default)) =
            (commented.get(info.name), info.default.parse::<i64>())
        {
            assert_eq!(
                *shown, default,
                "deploy/headcount.toml shows {} = {shown}, the default is {default}",
                info.name
            );
        }
    }
    for key in active.keys().chain(commented.keys()) {
        assert!(
            headcount::CONFIG_KEYS.contains(&key.as_str()) || SERVE_KEYS.contains(&key.as_str()),
            "deploy/headcount.toml lists {key}, which is not a setting"
        );
    }
}

/// ExecStart's words, the binary replaced by the one under test, the
/// config path by the sample and `%d` (the credentials directory) by `creds`.
fn exec_start(unit: &str, creds: &str) -> Vec<String> {
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("the unit has ExecStart");
    let mut words: Vec<String> = line.split_whitespace().map(|w| w.replace("%d", creds)).collect();
    assert_eq!(words[0], "/usr/local/bin/headcount");
    words.remove(0);
    for w in &mut words {
        if w == "/etc/headcount/headcount.toml" {
            *w = deploy("headcount.toml").display().to_string();
        }
    }
    words
}

#[test]
fn the_units_command_line_accepts_the_sample_settings() {
    let unit = read("headcount.service");
    let creds = TempDir::new("creds");
    creds.write("secret", "0123456789abcdef\n");
    let mut args = exec_start(&unit, creds.0.to_str().unwrap());
    assert_eq!(args[0], "serve");
    args.remove(0);
    args.push("--check-config".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = serve_output(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("unix:/run/headcount/api.sock") && stdout.contains("--secret-file"), "{stdout}");
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = read("headcount.service");
    let dir = TempDir::new("unit");
    // verify checks that ExecStart's binary exists: point it at ours.
    let path = dir.write(
        "headcount.service",
        &unit.replace("ExecStart=/usr/local/bin/headcount", &format!("ExecStart={}", env!("CARGO_BIN_EXE_headcount"))),
    );
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // It exits 0 on what it ignores (an unknown key, a bad value): none may
    // mention our unit. Lines about the host's other units are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("headcount.service")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns:\n{}", ours.join("\n"));
}
