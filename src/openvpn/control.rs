//! OpenVPN's deferred-auth files. OpenVPN creates them empty before calling us and deletes
//! them when the key state goes away, so we never create them: opening without `O_CREAT`
//! turns "the session is gone" into an error instead of a stray file.

use std::io::Write;
use std::path::Path;

fn write_existing(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(text.as_bytes())
}

/// Sends the client `AUTH_FAILED,<reason>`. Written before the control file.
pub fn write_reason(path: &Path, reason: &str) -> std::io::Result<()> {
    write_existing(path, reason)
}

/// The answer to a deferred login: `1` accepts, `0` refuses.
pub fn write_verdict(path: &Path, accepted: bool) -> std::io::Result<()> {
    write_existing(path, if accepted { "1" } else { "0" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_into_existing_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("acf");
        std::fs::write(&control, "").unwrap();
        write_verdict(&control, true).unwrap();
        assert_eq!(std::fs::read_to_string(&control).unwrap(), "1");
        let missing = dir.path().join("gone");
        assert!(write_verdict(&missing, false).is_err());
        assert!(!missing.exists());
    }
}
