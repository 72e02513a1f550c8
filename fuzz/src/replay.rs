//! Replaying committed inputs (corpora and regressions) through the target
//! functions, for the stable-Rust test in `tests/replay.rs`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of `dir`, sorted (none if it does not exist).
pub fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `target` on every file in `files`. Returns how many ran, or the
/// files whose run panicked (with the panic message).
pub fn replay(files: &[PathBuf], target: fn(&[u8])) -> Result<usize, Vec<String>> {
    let mut failed = Vec::new();
    for path in files {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                failed.push(format!("{}: unreadable: {e}", path.display()));
                continue;
            }
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            failed.push(format!("{}: {msg}", path.display()));
        }
    }
    if failed.is_empty() {
        Ok(files.len())
    } else {
        Err(failed)
    }
}
