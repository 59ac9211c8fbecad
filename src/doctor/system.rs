//! The system as `doctor` sees it: every path under `--root`, programs looked for there, user
//! accounts read from its `/etc/passwd`, and who may open what by the mode bits.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The tree being examined: `/` for the running system, or a planted copy.
#[derive(Clone, Debug)]
pub struct System {
    root: PathBuf,
}

/// Who OpenVPN's child processes run as after it drops privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// Read, write and search (execute) permission bits, as in a mode's `rwx`.
pub const READ: u32 = 4;
pub const WRITE: u32 = 2;
pub const SEARCH: u32 = 1;

impl System {
    pub fn new(root: &Path) -> Self {
        System { root: root.to_path_buf() }
    }

    /// Whether this is the running system, whose clock and programs may be asked directly.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Where a path named by the system (or by a config file in it) is in this tree. A path
    /// already under the root, as written by `server init --root`, is left as it is.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if self.is_live() || path.starts_with(&self.root) {
            return path.to_path_buf();
        }
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The path as the system knows it, for messages: without the root prefix.
    pub fn shown(&self, path: &Path) -> String {
        if self.is_live() {
            return path.display().to_string();
        }
        match path.strip_prefix(&self.root) {
            Ok(rest) => Path::new("/").join(rest).display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// A program's path: looked for in the usual directories of the tree, and on the live
    /// system also along `PATH`.
    pub fn program(&self, name: &str) -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]
            .iter()
            .chain(&["/sbin", "/bin"])
            .map(|d| self.path(d))
            .collect();
        if self.is_live() {
            if let Some(path) = std::env::var_os("PATH") {
                dirs.splice(0..0, std::env::split_paths(&path));
            }
        }
        dirs.into_iter().map(|d| d.join(name)).find(|p| is_executable(p))
    }

    /// Looks a user up in the tree's `/etc/passwd` (on the live system, also through NSS):
    /// `(uid, primary gid)`.
    pub fn user(&self, name: &str) -> Option<(u32, u32)> {
        let from_file = read_db(&self.path("/etc/passwd"), name)
            .and_then(|f| Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?)));
        from_file.or_else(|| self.is_live().then(|| nss_user(name)).flatten())
    }

    /// Looks a group's id up in the tree's `/etc/group` (on the live system, also NSS).
    pub fn group(&self, name: &str) -> Option<u32> {
        let from_file =
            read_db(&self.path("/etc/group"), name).and_then(|f| f.get(1)?.parse().ok());
        from_file.or_else(|| self.is_live().then(|| nss_group(name)).flatten())
    }
}

/// The fields after the name in a colon-separated database line for `name`; for
/// `/etc/passwd` that is `[x, uid, gid, ...]`.
fn read_db(path: &Path, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.map(str::to_owned).collect())
    })
}

fn nss_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live memory of the stated size.
    let rc = unsafe {
        libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result)
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

fn nss_group(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16384];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer refers to live memory of the stated size.
    let rc = unsafe {
        libc::getgrnam_r(cname.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result)
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The permission bits of a file.
pub fn mode(meta: &Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Whether `who` has every bit of `want` (`READ`, `WRITE`, `SEARCH`) on the file, by its
/// owner, group and mode, the way the kernel decides for a process without supplementary
/// groups (OpenVPN drops them). Root may do anything.
pub fn allows(meta: &Metadata, who: Identity, want: u32) -> bool {
    if who.uid == 0 {
        return true;
    }
    let mode = meta.mode();
    let bits = if meta.uid() == who.uid {
        mode >> 6
    } else if meta.gid() == who.gid {
        mode >> 3
    } else {
        mode
    } & 0o7;
    bits & want == want
}

/// Runs a program and collects its output, giving up (and killing it) after `limit`.
pub fn run(program: &Path, args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The kernel's own view: false when it marks the clock unsynchronised (`STA_UNSYNC`), which
/// is what `timedatectl` reports as `NTPSynchronized`.
pub fn kernel_clock_synchronised() -> bool {
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: modes = 0 only reads the kernel's state into `tx`.
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_put_under_the_root_once() {
        let sys = System::new(Path::new("/tmp/tree"));
        assert_eq!(sys.path("/etc/passwd"), Path::new("/tmp/tree/etc/passwd"));
        assert_eq!(sys.path("/tmp/tree/etc/x"), Path::new("/tmp/tree/etc/x"));
        assert_eq!(sys.shown(Path::new("/tmp/tree/etc/x")), "/etc/x");
        let live = System::new(Path::new("/"));
        assert_eq!(live.path("/etc/passwd"), Path::new("/etc/passwd"));
    }

    #[test]
    fn users_and_groups_are_read_from_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nvpn:x:1234:999::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "vpn:x:999:\n").unwrap();
        let sys = System::new(dir.path());
        assert_eq!(sys.user("vpn"), Some((1234, 999)));
        assert_eq!(sys.user("nobody-here"), None);
        assert_eq!(sys.group("vpn"), Some(999));
    }

    #[test]
    fn access_follows_owner_group_and_other_bits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let owner = Identity { uid: meta.uid().max(1), gid: 1 };
        let stranger = Identity { uid: meta.uid() + 1000, gid: meta.gid() + 1000 };
        let member = Identity { uid: meta.uid() + 1000, gid: meta.gid() };
        if meta.uid() != 0 {
            assert!(allows(&meta, owner, READ | WRITE));
        }
        assert!(allows(&meta, member, READ) && !allows(&meta, member, WRITE));
        assert!(!allows(&meta, stranger, READ));
        assert!(allows(&meta, Identity { uid: 0, gid: 0 }, READ | WRITE));
    }
}
