//! A throwaway PKI for one lab: a CA, a server certificate and client certificates made on
//! demand, all ECDSA P-256, the tls-crypt key and, on demand, an empty CRL. Everything lives
//! in the lab's temp dir and dies with it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};

/// Common name of the server certificate; clients check it with `verify-x509-name`.
pub const SERVER_CN: &str = "e2e-server";

pub struct Pki {
    dir: PathBuf,
    ca_cert: Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// Writes `ca.crt`, `server.crt`, `server.key` and `tls-crypt.key` into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let ca_key = new_key();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name("ovpn-mfa e2e CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign the test CA");
        write_file(&dir.join("ca.crt"), &ca_cert.pem(), 0o644);

        let pki = Pki { dir: dir.to_path_buf(), ca_cert, ca_key };
        pki.issue("server", SERVER_CN, ExtendedKeyUsagePurpose::ServerAuth);

        // OpenVPN's own key generator, so the file format is exactly what it expects.
        let tls_crypt = pki.tls_crypt();
        let out = Command::new("openvpn")
            .args(["--genkey", "tls-crypt"])
            .arg(&tls_crypt)
            .output()
            .expect("run openvpn --genkey");
        assert!(
            out.status.success(),
            "openvpn --genkey tls-crypt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pki
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Paths of the server certificate and key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("server.crt"), self.dir.join("server.key"))
    }

    pub fn tls_crypt(&self) -> PathBuf {
        self.dir.join("tls-crypt.key")
    }

    /// Path of a CRL signed by the CA that revokes nothing (for `crl-verify`), written on
    /// first use and valid for a day.
    pub fn empty_crl(&self) -> PathBuf {
        let path = self.dir.join("crl.pem");
        if !path.exists() {
            let now = time::OffsetDateTime::now_utc();
            let params = CertificateRevocationListParams {
                this_update: now - time::Duration::hours(1),
                next_update: now + time::Duration::days(1),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            let crl = params.signed_by(&self.ca_cert, &self.ca_key).expect("sign the test CRL");
            write_file(&path, &crl.pem().expect("PEM of the test CRL"), 0o644);
        }
        path
    }

    /// Paths of the certificate and key for client `name` (also its common name), issued on
    /// first use. Names are limited to letters, digits, `-` and `_` since they become file
    /// names.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        assert!(is_valid_name(name), "client certificate name {name:?} must be [A-Za-z0-9_-]+");
        let stem = format!("client-{name}");
        let paths = (self.dir.join(format!("{stem}.crt")), self.dir.join(format!("{stem}.key")));
        if !paths.0.exists() {
            self.issue(&stem, name, ExtendedKeyUsagePurpose::ClientAuth);
        }
        paths
    }

    fn issue(&self, stem: &str, cn: &str, usage: ExtendedKeyUsagePurpose) {
        let key = new_key();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(cn);
        params.is_ca = IsCa::ExplicitNoCa;
        // `remote-cert-tls` insists that a key usage extension is present.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .unwrap_or_else(|e| panic!("sign certificate for {cn}: {e}"));

        write_file(&self.dir.join(format!("{stem}.crt")), &cert.pem(), 0o644);
        write_file(&self.dir.join(format!("{stem}.key")), &key.serialize_pem(), 0o600);
    }
}

/// Whether `name` can be a client certificate name (it becomes part of a file name).
pub fn is_valid_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    !name.is_empty() && name.chars().all(allowed)
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key")
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

/// Creates `path` with `mode` from the start, so a key is never readable by others.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(contents.as_bytes()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
