//! Where the cluster secret comes from: a file (`--secret-file`, or
//! `secret_file` in `headcount serve`'s settings) or the `HEADCOUNT_SECRET`
//! environment variable. It is never taken from a command-line flag, which
//! every local user can read in `/proc/<pid>/cmdline`.

use std::path::Path;

/// The environment variable the secret may come from.
pub(crate) const SECRET_ENV: &str = "HEADCOUNT_SECRET";

/// The secret in `path`, surrounding whitespace trimmed; the error names
/// the file.
pub(crate) fn from_file(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("secret file {}: the secret must be UTF-8 text", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_is_trimmed_and_required_non_empty() {
        let dir = std::env::temp_dir().join(format!("headcount-cli-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "  s3cret\n").unwrap();
        assert_eq!(from_file(&f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert!(from_file(&f).unwrap_err().contains("is empty"));
        std::fs::write(&f, b"\xff\xfe").unwrap();
        assert!(from_file(&f).unwrap_err().contains("UTF-8"));
        assert!(from_file(&dir.join("nope")).unwrap_err().contains("cannot read secret file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
