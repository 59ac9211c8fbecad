//! The server's small PKI: an ECDSA P-256 CA, the server certificate, one certificate per
//! user, and the CRL that revokes removed users. Built with rcgen; no easy-rsa, no openssl.
//!
//! Keys are written 0600. `pki.json` records issued and revoked serial numbers so that a
//! revocation survives later issues and the CRL can always be rebuilt.

use super::files::{write_file, Mode};
use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The server certificate's common name, checked by clients with `verify-x509-name`.
pub const SERVER_CN: &str = "ovpn-mfa-server";
const CA_YEARS: i64 = 10;
const CERT_YEARS: i64 = 3;
/// A CRL must be re-signed before this runs out; every issue or revoke re-signs it, and
/// `doctor` warns when it gets close.
const CRL_DAYS: i64 = 180;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    next_serial: u64,
    /// User name -> serial of their current certificate.
    issued: BTreeMap<String, u64>,
    /// Serial -> revocation time (Unix seconds).
    revoked: BTreeMap<u64, i64>,
}

pub struct Pki {
    dir: PathBuf,
    ca_cert: Certificate,
    ca_key: KeyPair,
    ledger: Ledger,
}

pub struct Paths<'a>(pub &'a Path);

impl Paths<'_> {
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.0.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.0.join("server.key")
    }
    pub fn crl(&self) -> PathBuf {
        self.0.join("crl.pem")
    }
    pub fn tls_crypt(&self) -> PathBuf {
        self.0.join("tls-crypt.key")
    }
    fn ledger(&self) -> PathBuf {
        self.0.join("pki.json")
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * years);
}

impl Pki {
    /// What `create` would write, for `--dry-run`.
    pub fn planned_files(dir: &Path) -> Vec<(PathBuf, Mode)> {
        let p = Paths(dir);
        vec![
            (p.ca_cert(), Mode::Public),
            (p.ca_key(), Mode::Secret),
            (p.server_cert(), Mode::Public),
            (p.server_key(), Mode::Secret),
            (p.crl(), Mode::Public),
            (p.tls_crypt(), Mode::Secret),
            (p.ledger(), Mode::Secret),
        ]
    }

    /// A new CA, server certificate, empty CRL and tls-crypt key in `dir`.
    pub fn create(dir: &Path) -> Result<Pki> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("ovpn-mfa CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_YEARS);
        let ca_cert = params.self_signed(&ca_key)?;
        let paths = Paths(dir);
        write_file(&paths.ca_cert(), ca_cert.pem().as_bytes(), Mode::Public)?;
        write_file(&paths.ca_key(), ca_key.serialize_pem().as_bytes(), Mode::Secret)?;

        let mut pki = Pki { dir: dir.to_owned(), ca_cert, ca_key, ledger: Ledger::default() };
        pki.ledger.next_serial = 2;
        let (cert, key) = pki.sign(SERVER_CN, ExtendedKeyUsagePurpose::ServerAuth)?;
        write_file(&paths.server_cert(), cert.as_bytes(), Mode::Public)?;
        write_file(&paths.server_key(), key.as_bytes(), Mode::Secret)?;
        generate_tls_crypt(&paths.tls_crypt())?;
        pki.save()?;
        Ok(pki)
    }

    pub fn load(dir: &Path) -> Result<Pki> {
        let paths = Paths(dir);
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
        };
        let ca_key = KeyPair::from_pem(&read(paths.ca_key())?).context("the CA key is invalid")?;
        let params = CertificateParams::from_ca_cert_pem(&read(paths.ca_cert())?)
            .context("the CA certificate is invalid")?;
        // Re-signing the same name and key gives an issuer equivalent to the one on disk.
        let ca_cert = params.self_signed(&ca_key)?;
        let ledger = serde_json::from_str(&read(paths.ledger())?)
            .with_context(|| format!("{} is not valid", paths.ledger().display()))?;
        Ok(Pki { dir: dir.to_owned(), ca_cert, ca_key, ledger })
    }

    fn sign(&mut self, cn: &str, usage: ExtendedKeyUsagePurpose) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let serial = self.ledger.next_serial;
        params.serial_number = Some(SerialNumber::from(serial));
        validity(&mut params, CERT_YEARS);
        self.ledger.next_serial += 1;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate for `user` (common name = user name). A user who already had one
    /// gets a new one and the old one is revoked.
    pub fn issue_client(&mut self, user: &str) -> Result<(String, String)> {
        self.revoke(user)?;
        let serial = self.ledger.next_serial;
        let pair = self.sign(user, ExtendedKeyUsagePurpose::ClientAuth)?;
        self.ledger.issued.insert(user.to_owned(), serial);
        self.save()?;
        Ok(pair)
    }

    /// Revokes the user's certificate, if any, and re-signs the CRL. Returns whether there
    /// was one.
    pub fn revoke(&mut self, user: &str) -> Result<bool> {
        let Some(serial) = self.ledger.issued.remove(user) else { return Ok(false) };
        self.ledger.revoked.insert(serial, OffsetDateTime::now_utc().unix_timestamp());
        self.save()?;
        Ok(true)
    }

    pub fn has_client(&self, user: &str) -> bool {
        self.ledger.issued.contains_key(user)
    }

    pub fn ca_pem(&self) -> Result<String> {
        let path = Paths(&self.dir).ca_cert();
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    fn crl_pem(&self) -> Result<String> {
        let now = OffsetDateTime::now_utc();
        let revoked_certs = self
            .ledger
            .revoked
            .iter()
            .map(|(serial, at)| RevokedCertParams {
                serial_number: SerialNumber::from(*serial),
                revocation_time: OffsetDateTime::from_unix_timestamp(*at).unwrap_or(now),
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(CRL_DAYS),
            crl_number: SerialNumber::from(now.unix_timestamp() as u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.ca_cert, &self.ca_key)?.pem()?)
    }

    /// Writes a freshly signed CRL, then the ledger. In this order a CRL that cannot be
    /// written leaves the ledger as it was: a revocation that failed is not recorded as done,
    /// and running it again writes the CRL.
    fn save(&self) -> Result<()> {
        let paths = Paths(&self.dir);
        write_file(&paths.crl(), self.crl_pem()?.as_bytes(), Mode::Public)?;
        write_file(
            &paths.ledger(),
            serde_json::to_string_pretty(&self.ledger)?.as_bytes(),
            Mode::Secret,
        )
    }
}

fn generate_tls_crypt(path: &Path) -> Result<()> {
    let output = std::process::Command::new("openvpn")
        .args(["--genkey", "tls-crypt"])
        .arg(path)
        .output()
        .context("cannot run `openvpn --genkey tls-crypt` (is OpenVPN installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "`openvpn --genkey tls-crypt` failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    super::files::set_mode(path, Mode::Secret)
}
