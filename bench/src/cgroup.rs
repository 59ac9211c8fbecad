//! CPU time of the server and everything it starts, from a cgroup v1 `cpuacct` group.
//!
//! Children inherit their parent's cgroup whatever session or process group they join, so
//! detached verify workers, the auth-pam plugin's background process and the per-login
//! processes it forks are all counted. The group is removed when the guard drops.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const CPUACCT_ROOT: &str = "/sys/fs/cgroup/cpuacct";

pub struct CpuGroup {
    dir: PathBuf,
}

impl CpuGroup {
    /// Creates `ovmfa-bench-<pid>-<label>` under the cpuacct hierarchy.
    pub fn create(label: &str) -> Result<CpuGroup> {
        let root = Path::new(CPUACCT_ROOT);
        if !root.join("cpuacct.usage").exists() {
            bail!(
                "{CPUACCT_ROOT} is not a cgroup v1 cpuacct hierarchy; this bench measures \
                 server CPU through it"
            );
        }
        let dir = root.join(format!("ovmfa-bench-{}-{label}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
        Ok(CpuGroup { dir })
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) -> Result<()> {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .with_context(|| format!("move pid {pid} into {}", self.dir.display()))
    }

    /// CPU time used by the group's members since they joined, in nanoseconds.
    pub fn usage_ns(&self) -> Result<u64> {
        let path = self.dir.join("cpuacct.usage");
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        text.trim().parse().with_context(|| format!("parse {}", path.display()))
    }

    /// Process ids currently in the group.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // A cgroup with members cannot be removed: hand any survivors back to the root group
        // (they are the lab's processes, which the lab kills anyway).
        let root = Path::new(CPUACCT_ROOT).join("cgroup.procs");
        for _ in 0..20 {
            for pid in self.pids() {
                let _ = std::fs::write(&root, pid.to_string());
            }
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("bench: could not remove cgroup {}", self.dir.display());
    }
}

/// Removes groups left by earlier bench processes that no longer exist.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(CPUACCT_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ovmfa-bench-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let group = CpuGroup { dir: entry.path() };
            drop(group);
        }
    }
}
