//! The ovpn-mfa plugin as the end-to-end tests load it into OpenVPN.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The plugin next to the ovpn-mfa binary, where `openvpn server-config --plugin` looks
/// first. Built once per test process: `cargo test` builds the ovpn-mfa binary for the
/// integration tests, but not other workspace members' libraries.
pub fn plugin_so() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "ovpn-mfa-plugin"]);
            if !cfg!(debug_assertions) {
                build.arg("--release");
            }
            let status = build.current_dir(env!("CARGO_MANIFEST_DIR")).status().unwrap();
            assert!(status.success(), "cargo build -p ovpn-mfa-plugin failed");
            let so = profile_dir().join(PLUGIN_FILE);
            assert!(so.exists(), "{} was not built", so.display());
            so
        })
        .clone()
}

/// Cargo's output directory for this build (`target/debug`, `target/release`): the parent of
/// the running executable, or of its `deps/` for an integration test.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test's path");
    let dir = exe.parent().expect("an executable lives in a directory");
    let dir = if dir.ends_with("deps") { dir.parent().unwrap_or(dir) } else { dir };
    dir.to_path_buf()
}

/// The plugin's file name, as cargo builds it.
const PLUGIN_FILE: &str = "libovpn_mfa_plugin.so";
