//! `otpauth://` URIs, the format authenticator apps read from QR codes.

use super::{Algorithm, OtpKey, SecretError, TotpParams};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything except RFC 3986 unreserved characters is encoded, so a space becomes `%20`
/// (never `+`) and `:` inside an issuer or user name cannot be mistaken for the separator.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Builds `otpauth://totp/ISSUER:USER?secret=..&issuer=..`, naming the algorithm, digits and
/// period only when they differ from the defaults every app assumes.
pub fn otpauth_uri(issuer: &str, user: &str, key: &OtpKey, params: &TotpParams) -> String {
    let issuer_enc = utf8_percent_encode(issuer, COMPONENT).to_string();
    let user_enc = utf8_percent_encode(user, COMPONENT);
    let mut uri = format!(
        "otpauth://totp/{issuer_enc}:{user_enc}?secret={}&issuer={issuer_enc}",
        key.to_base32()
    );
    let defaults = TotpParams::default();
    if params.algorithm != defaults.algorithm {
        uri.push_str(&format!("&algorithm={}", params.algorithm));
    }
    if params.digits != defaults.digits {
        uri.push_str(&format!("&digits={}", params.digits));
    }
    if params.period != defaults.period {
        uri.push_str(&format!("&period={}", params.period));
    }
    uri
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("not an otpauth://totp/ URI")]
    NotTotp,
    #[error("the URI has no secret parameter")]
    NoSecret,
    #[error("bad secret in the URI: {0}")]
    Secret(#[from] SecretError),
    #[error("bad {0} parameter in the URI")]
    BadParameter(&'static str),
    #[error("the URI is not valid percent-encoded UTF-8")]
    BadEncoding,
}

/// What a parsed `otpauth://totp/` URI holds.
#[derive(Debug)]
pub struct OtpauthUri {
    pub issuer: Option<String>,
    pub account: String,
    pub key: OtpKey,
    pub params: TotpParams,
}

/// Reads an `otpauth://totp/` URI, for importing an existing enrolment.
pub fn parse_otpauth_uri(uri: &str) -> Result<OtpauthUri, UriError> {
    let rest = uri
        .strip_prefix("otpauth://")
        .and_then(|r| r.get(..5).filter(|t| t.eq_ignore_ascii_case("totp/")).map(|_| &r[5..]))
        .ok_or(UriError::NotTotp)?;
    let (label, query) = rest.split_once('?').unwrap_or((rest, ""));
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| UriError::BadEncoding)
    };
    let label = decode(label)?;
    let (label_issuer, account) = match label.split_once(':') {
        Some((i, a)) => (Some(i.trim().to_owned()), a.trim().to_owned()),
        None => (None, label.trim().to_owned()),
    };

    let mut secret = None;
    let mut issuer = label_issuer;
    let mut params = TotpParams::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(&value.replace('+', "%20"))?;
        match name.to_ascii_lowercase().as_str() {
            "secret" => secret = Some(OtpKey::from_base32(&value)?),
            "issuer" => issuer = Some(value),
            "algorithm" => {
                params.algorithm =
                    value.parse::<Algorithm>().map_err(|_| UriError::BadParameter("algorithm"))?
            }
            "digits" => {
                params.digits = value.parse().map_err(|_| UriError::BadParameter("digits"))?
            }
            "period" => {
                params.period = value.parse().map_err(|_| UriError::BadParameter("period"))?
            }
            _ => {}
        }
    }
    params.validate().map_err(|_| UriError::BadParameter("digits or period"))?;
    let key = secret.ok_or(UriError::NoSecret)?;
    Ok(OtpauthUri { issuer, account, key, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OtpKey {
        OtpKey::from_base32("JBSWY3DPEHPK3PXP").unwrap()
    }

    #[test]
    fn default_parameters_are_left_out() {
        let uri = otpauth_uri("ACME VPN", "alice@example.com", &key(), &TotpParams::default());
        assert_eq!(
            uri,
            "otpauth://totp/ACME%20VPN:alice%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=ACME%20VPN"
        );
    }

    #[test]
    fn other_parameters_are_named() {
        let params = TotpParams { algorithm: Algorithm::Sha256, digits: 8, period: 60 };
        let uri = otpauth_uri("a:b&c", "bob", &key(), &params);
        assert!(uri.starts_with("otpauth://totp/a%3Ab%26c:bob?"), "{uri}");
        assert!(uri.ends_with("&algorithm=SHA256&digits=8&period=60"), "{uri}");
        assert!(!uri.contains('+'));
    }

    #[test]
    fn a_built_uri_parses_back() {
        let params = TotpParams { algorithm: Algorithm::Sha512, digits: 8, period: 30 };
        let uri = otpauth_uri("My Co", "carol.d", &key(), &params);
        let parsed = parse_otpauth_uri(&uri).unwrap();
        assert_eq!(parsed.issuer.as_deref(), Some("My Co"));
        assert_eq!(parsed.account, "carol.d");
        assert_eq!(parsed.key, key());
        assert_eq!(parsed.params, params);
    }

    #[test]
    fn bad_uris_are_refused() {
        assert_eq!(parse_otpauth_uri("http://x").unwrap_err(), UriError::NotTotp);
        assert_eq!(parse_otpauth_uri("otpauth://hotp/x?secret=A").unwrap_err(), UriError::NotTotp);
        assert_eq!(parse_otpauth_uri("otpauth://totp/x").unwrap_err(), UriError::NoSecret);
        let bad = parse_otpauth_uri("otpauth://totp/x?secret=JBSWY3DPEHPK3PXP&digits=7");
        assert!(matches!(bad, Err(UriError::BadParameter(_))));
        assert!(parse_otpauth_uri("otpauth://totp/%ff?secret=JBSWY3DPEHPK3PXP").is_err());
        assert!(parse_otpauth_uri("otpauth://t").is_err());
    }
}
