//! The configuration keys are declared once (the table in
//! `core/src/config.rs`, public as `headcount::CONFIG_TABLE`); the README's
//! key table and `hc_config_set`'s doc (in `ffi/src/lib.rs` and the
//! generated `include/headcount.h`) are rendered from it. This test fails
//! when any of them disagrees with the table.
//!
//! After changing the table, `HEADCOUNT_BLESS=1 cargo test -p headcount
//! --test config_docs` rewrites the README and `ffi/src/lib.rs` sections;
//! then `scripts/gen-header.sh` regenerates the header (until then, this
//! test fails without `HEADCOUNT_BLESS`).

use std::path::{Path, PathBuf};

use headcount::CONFIG_TABLE;

const BEGIN: &str =
    "<!-- config-keys: rendered from CONFIG_TABLE (core/src/config.rs); checked by core/tests/config_docs.rs -->";
const END: &str = "<!-- /config-keys -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's table.
fn readme_lines() -> Vec<String> {
    let mut v = vec!["| key | value | default | meaning |".to_owned(), "|---|---|---|---|".to_owned()];
    for k in CONFIG_TABLE {
        v.push(format!("| `{}` | {} | {} | {} |", k.name, k.kind, k.default, k.doc.trim()));
    }
    v
}

/// `hc_config_set`'s list of keys.
fn ffi_lines() -> Vec<String> {
    CONFIG_TABLE
        .iter()
        .map(|k| format!("- `{}` ({}; default {}): {}.", k.name, k.kind, k.default, k.doc.trim()))
        .collect()
}

/// The lines between the markers, each with `prefix` removed, and where the
/// section starts and ends (line indexes of the markers).
fn section(text: &str, prefix: &str, what: &str) -> (Vec<String>, usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let strip = |l: &str| l.strip_prefix(prefix).or_else(|| l.strip_prefix(prefix.trim_end())).unwrap_or(l).to_owned();
    let begin = lines.iter().position(|l| strip(l) == BEGIN).unwrap_or_else(|| panic!("{what}: no line {BEGIN:?}"));
    let end = begin
        + lines[begin..].iter().position(|l| strip(l) == END).unwrap_or_else(|| panic!("{what}: no line {END:?}"));
    (lines[begin + 1..end].iter().map(|l| strip(l)).collect(), begin, end)
}

/// Compares one file's section with `want`; rewrites it when blessing.
fn check(file: &str, prefix: &str, want: &[String], bless: bool) -> Result<(), String> {
    let path = root().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (have, begin, end) = section(&text, prefix, file);
    if have == want {
        return Ok(());
    }
    if bless {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.splice(begin + 1..end, want.iter().map(|l| format!("{prefix}{l}").trim_end().to_owned()));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        return Ok(());
    }
    Err(format!(
        "{file} disagrees with the config key table.\n  have:\n    {}\n  want:\n    {}\n\
         (HEADCOUNT_BLESS=1 cargo test -p headcount --test config_docs rewrites it)",
        have.join("\n    "),
        want.join("\n    ")
    ))
}

#[test]
fn readme_and_c_header_agree_with_the_key_table() {
    let bless = std::env::var_os("HEADCOUNT_BLESS").is_some();
    let errors: Vec<String> = [
        check("README.md", "", &readme_lines(), bless),
        check("ffi/src/lib.rs", "/// ", &ffi_lines(), bless),
        // The header is generated from ffi/src/lib.rs (scripts/gen-header.sh;
        // tests/c/run.sh fails when it is stale); checked here too so that
        // this test alone covers every rendering.
        check("include/headcount.h", " * ", &ffi_lines(), false).or_else(|e| match bless {
            true => {
                eprintln!("ffi/src/lib.rs rewritten: now run scripts/gen-header.sh");
                Ok(())
            }
            false => Err(e),
        }),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

#[test]
fn every_key_is_documented() {
    for k in CONFIG_TABLE {
        assert!(!k.doc.trim().is_empty() && !k.default.is_empty(), "{} has no doc or default", k.name);
        assert!(!k.doc.contains('|') && !k.default.contains('|'), "{}: a '|' breaks the README table", k.name);
    }
}
