//! Writing the files setup creates: atomically (temp file and rename), with the right mode
//! from the first byte, and never following a symlink planted in place of the target.

use anyhow::{Context as _, Result};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 0644: certificates, configuration without secrets.
    Public,
    /// 0600: keys, profiles with keys inside.
    Secret,
}

impl Mode {
    pub fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

pub fn write_file(path: &Path, contents: &[u8], mode: Mode) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.bits())
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

pub fn set_mode(path: &Path, mode: Mode) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.bits()))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}
