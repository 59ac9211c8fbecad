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
    write_atomically(path, contents, mode.bits(), |_| Ok(()))
}

/// Replaces `path` (or writes a new file) with the permission bits, owner and group of
/// `like`, typically the file being replaced. The temporary file is created with at most the
/// owner's bits, given the owner and group, then the exact mode, all before the first byte is
/// written, so no one who could not read the original can read the copy at any moment. Set-id
/// and sticky bits are not carried over.
pub fn write_file_like(path: &Path, contents: &[u8], like: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mode = like.mode() & 0o777;
    write_atomically(path, contents, mode & 0o700, |file| {
        std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    })
}

/// Writes `contents` to a temporary file next to `path`, created with `create_mode` and then
/// handed to `prepare`, and renames it over `path`.
fn write_atomically(
    path: &Path,
    contents: &[u8],
    create_mode: u32,
    prepare: impl FnOnce(&std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
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
            .mode(create_mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        prepare(&file)?;
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
