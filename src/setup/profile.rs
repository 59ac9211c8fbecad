//! Self-contained client profiles (`NAME.ovpn`): everything inline, so OpenVPN 2.x, OpenVPN
//! Connect and Tunnelblick import one file.

use super::pki::{self, SERVER_CN};
use super::ServerState;
use crate::openvpn::snippets::client_lines;
use crate::store::ClientMethod;
use anyhow::{Context as _, Result};

pub fn render(
    state: &ServerState,
    method: ClientMethod,
    ca: &str,
    cert: &str,
    key: &str,
    tls_crypt: &str,
) -> String {
    format!(
        "# OpenVPN profile made by ovpn-mfa. It holds a private key: keep it private.\n\
         client\n\
         dev tun\n\
         proto {proto}\n\
         remote {host} {port}\n\
         resolv-retry infinite\n\
         nobind\n\
         persist-key\n\
         persist-tun\n\
         remote-cert-tls server\n\
         verify-x509-name {cn} name\n\
         tls-version-min 1.2\n\
         data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n\
         verb 3\n\
         {auth}\
         <ca>\n{ca}</ca>\n\
         <cert>\n{cert}</cert>\n\
         <key>\n{key}</key>\n\
         <tls-crypt>\n{tls_crypt}</tls-crypt>\n",
        proto = state.proto,
        host = state.endpoint,
        port = state.port,
        cn = SERVER_CN,
        auth = client_lines(method),
    )
}

/// Issues a certificate for `user` and writes `PROFILES/user.ovpn` (0600). Returns its path.
pub fn issue(state: &ServerState, user: &str, method: ClientMethod) -> Result<std::path::PathBuf> {
    let mut pki = pki::Pki::load(&state.pki_dir)?;
    let (cert, key) = pki.issue_client(user)?;
    let tls_crypt_path = pki::Paths(&state.pki_dir).tls_crypt();
    let tls_crypt = std::fs::read_to_string(&tls_crypt_path)
        .with_context(|| format!("cannot read {}", tls_crypt_path.display()))?;
    let text = render(state, method, &pki.ca_pem()?, &cert, &key, &tls_crypt);
    let path = state.profiles_dir.join(format!("{user}.ovpn"));
    super::files::write_file(&path, text.as_bytes(), super::files::Mode::Secret)?;
    Ok(path)
}
