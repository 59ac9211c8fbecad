//! Setting up a road-warrior server: PKI, OpenVPN configuration, forwarding and NAT, client
//! profiles, revocation, and adding MFA to an existing server.

pub mod adopt;
pub mod files;
pub mod pki;
pub mod profile;
pub mod server;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `server init` set up, kept in the data directory so that `user add` can issue
/// certificates and profiles and `user remove` can revoke them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    pub name: String,
    pub endpoint: String,
    pub port: u16,
    pub proto: String,
    pub config_file: PathBuf,
    pub pki_dir: PathBuf,
    pub profiles_dir: PathBuf,
    pub management_socket: PathBuf,
}

pub const STATE_FILE: &str = "server.toml";

impl ServerState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(STATE_FILE)
    }

    /// The state if `server init` has run for this data directory.
    pub fn load(data_dir: &Path) -> Result<Option<ServerState>> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                toml::from_str(&text)
                    .with_context(|| format!("{} is not valid", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// Joins an absolute system path under `root` (`/` for the real system).
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Ends every live session of `user` through OpenVPN's management socket: each of the user's
/// clients (by certificate name or user name in `status 2`) gets `client-kill CID HALT`, which
/// tells the client to stop instead of reconnecting with a revoked certificate. Returns how
/// many sessions were ended, or `None` when no server is listening.
pub fn kill_sessions(socket: &Path, user: &str) -> Result<Option<usize>> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", socket.display())),
    };
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut lines = BufReader::new(stream).lines();
    let closed = || anyhow::anyhow!("OpenVPN closed the management connection without answering");

    writer.write_all(b"status 2\n")?;
    let mut header: Vec<String> = Vec::new();
    let mut ids = Vec::new();
    loop {
        let line = lines.next().ok_or_else(closed)??;
        if line == "END" {
            break;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.first() == Some(&"HEADER") && fields.get(1) == Some(&"CLIENT_LIST") {
            header = fields[1..].iter().map(|f| f.to_string()).collect();
        } else if fields.first() == Some(&"CLIENT_LIST") {
            let column =
                |name: &str| header.iter().position(|h| h == name).and_then(|i| fields.get(i));
            let ours = [column("Common Name"), column("Username")].contains(&Some(&user));
            if let (true, Some(id)) = (ours, column("Client ID")) {
                ids.push(id.to_string());
            }
        }
    }
    // Each answer is read before the next command: OpenVPN drops output it has not sent yet
    // when a management client quits.
    for id in &ids {
        writer.write_all(format!("client-kill {id} HALT\n").as_bytes())?;
        loop {
            let line = lines.next().ok_or_else(closed)??;
            if line.starts_with("SUCCESS:") {
                break;
            }
            anyhow::ensure!(
                !line.starts_with("ERROR:"),
                "OpenVPN refused to end a session: {line}"
            );
        }
    }
    let _ = writer.write_all(b"quit\n");
    Ok(Some(ids.len()))
}
