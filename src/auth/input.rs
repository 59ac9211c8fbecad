//! How a client's password field carries the code: alone, after the password, or in
//! OpenVPN's static-challenge form `SCRV1:<base64 password>:<base64 code>`.

use crate::secret::Sensitive;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The form the credentials arrived in, for logs and the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    Otp,
    Concat,
    Scrv1,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Otp => "otp",
            InputFormat::Concat => "concat",
            InputFormat::Scrv1 => "scrv1",
        }
    }
}

/// The password (when the user has one) and the code, taken apart.
#[derive(Debug)]
pub struct Presented {
    pub format: InputFormat,
    pub password: Option<Sensitive>,
    pub code: Sensitive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("malformed static-challenge (SCRV1) response")]
    BadScrv1,
    #[error("no code was given")]
    NoCode,
    #[error("the user has a password but none was given")]
    NoPassword,
    #[error("the password field is longer than any password and code")]
    TooLong,
}

/// Longest password field considered; anything longer is refused before it is parsed.
pub const MAX_FIELD_LEN: usize = 4096;

/// Recovery codes look like `abcde-fgh23`: recognisable at the end of `password+code`.
pub const RECOVERY_CODE_LEN: usize = 11;

pub fn looks_like_recovery_code(s: &str) -> bool {
    s.len() == RECOVERY_CODE_LEN
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 5 {
                b == b'-'
            } else {
                b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)
            }
        })
}

/// Whether a password field may hold a password besides the code, judged from its shape
/// alone: the front ends decide whether to defer before they know the user. Only a bare code
/// (6 or 8 digits, the lengths `TotpParams` allows), a bare recovery code, a blank field and a
/// static-challenge response with an empty password part hold none.
///
/// A numeric password followed by the code is all digits too; it is told apart by its length
/// except when password and code have 8 digits together (a 2-digit PIN before a 6-digit
/// code), which is taken for a bare code and hashed without deferring.
pub fn may_hold_a_password(field: &str) -> bool {
    if let Some(rest) = field.strip_prefix("SCRV1:") {
        return !rest.starts_with(':');
    }
    let field = field.trim();
    let bare_code = matches!(field.len(), 6 | 8) && field.bytes().all(|b| b.is_ascii_digit());
    !(field.is_empty() || bare_code || looks_like_recovery_code(field))
}

/// Length of the scratch codes google-authenticator-libpam issues, which `import` keeps as
/// recovery codes.
pub const SCRATCH_CODE_LEN: usize = 8;

/// The other reading of `password+code` when the code is an 8-digit scratch code and the
/// user's codes have 6 digits: the last 8 digits as the code. `None` when the field does not
/// end in 8 digits after something, or is a static-challenge response (which needs no
/// guessing).
pub fn split_scratch_code(field: &str, digits: u32) -> Option<Presented> {
    let cut = field.len().checked_sub(SCRATCH_CODE_LEN).filter(|c| *c > 0)?;
    if digits as usize == SCRATCH_CODE_LEN
        || field.starts_with("SCRV1:")
        || !field.is_char_boundary(cut)
    {
        return None;
    }
    let (password, code) = field.split_at(cut);
    code.bytes().all(|b| b.is_ascii_digit()).then(|| Presented {
        format: InputFormat::Concat,
        password: Some(password.into()),
        code: code.into(),
    })
}

/// Takes the password field apart. `has_password` and `digits` come from the user's record:
/// with a fixed code length, a password that itself ends in digits still splits correctly.
pub fn split(field: &str, has_password: bool, digits: u32) -> Result<Presented, InputError> {
    if field.len() > MAX_FIELD_LEN {
        return Err(InputError::TooLong);
    }
    if let Some(rest) = field.strip_prefix("SCRV1:") {
        return split_scrv1(rest, has_password);
    }
    if !has_password {
        let code = field.trim();
        if code.is_empty() {
            return Err(InputError::NoCode);
        }
        return Ok(Presented { format: InputFormat::Otp, password: None, code: code.into() });
    }

    let digits = digits as usize;
    let tail_len = if field.len() > RECOVERY_CODE_LEN
        && field.is_char_boundary(field.len() - RECOVERY_CODE_LEN)
        && looks_like_recovery_code(&field[field.len() - RECOVERY_CODE_LEN..])
    {
        RECOVERY_CODE_LEN
    } else {
        digits
    };
    if field.len() <= tail_len || !field.is_char_boundary(field.len() - tail_len) {
        return Err(if field.len() <= digits {
            InputError::NoPassword
        } else {
            InputError::NoCode
        });
    }
    let (password, code) = field.split_at(field.len() - tail_len);
    if tail_len == digits && !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::NoCode);
    }
    Ok(Presented {
        format: InputFormat::Concat,
        password: Some(password.into()),
        code: code.into(),
    })
}

fn split_scrv1(rest: &str, has_password: bool) -> Result<Presented, InputError> {
    let (password_b64, code_b64) = rest.split_once(':').ok_or(InputError::BadScrv1)?;
    let decode = |part: &str| -> Result<Sensitive, InputError> {
        let bytes = STANDARD.decode(part).map_err(|_| InputError::BadScrv1)?;
        String::from_utf8(bytes).map(Sensitive::from).map_err(|_| InputError::BadScrv1)
    };
    let password = decode(password_b64)?;
    let code = decode(code_b64)?;
    let code = Sensitive::new(code.expose().trim());
    if code.is_empty() {
        return Err(InputError::NoCode);
    }
    let password = if has_password {
        if password.is_empty() {
            return Err(InputError::NoPassword);
        }
        Some(password)
    } else {
        // A user without a password may still have a client that asks for one.
        None
    };
    Ok(Presented { format: InputFormat::Scrv1, password, code })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn a_code_alone_is_taken_as_the_code() {
        let p = split(" 123456\n", false, 6).unwrap();
        assert_eq!(p.format, InputFormat::Otp);
        assert_eq!(p.code.expose(), "123456");
        assert!(p.password.is_none());
        assert_eq!(split("  ", false, 6).unwrap_err(), InputError::NoCode);
    }

    #[test]
    fn password_and_code_split_on_the_fixed_code_length() {
        let p = split("hunter2024654321", true, 6).unwrap();
        assert_eq!(p.format, InputFormat::Concat);
        assert_eq!(p.password.unwrap().expose(), "hunter2024");
        assert_eq!(p.code.expose(), "654321");
        let p = split("pw12345678", true, 8).unwrap();
        assert_eq!((p.password.unwrap().expose(), p.code.expose()), ("pw", "12345678"));
        assert_eq!(split("123456", true, 6).unwrap_err(), InputError::NoPassword);
        assert_eq!(split("passwordabcdef", true, 6).unwrap_err(), InputError::NoCode);
    }

    #[test]
    fn a_recovery_code_after_the_password_is_recognised() {
        let p = split("s3cret99abcde-fgh23", true, 6).unwrap();
        assert_eq!(p.password.unwrap().expose(), "s3cret99");
        assert_eq!(p.code.expose(), "abcde-fgh23");
    }

    #[test]
    fn an_eight_digit_scratch_code_after_the_password_has_its_own_reading() {
        let p = split_scratch_code("pw1212345678", 6).unwrap();
        assert_eq!((p.password.unwrap().expose(), p.code.expose()), ("pw12", "12345678"));
        for none in ["12345678", "pw1234567x", "SCRV1:cHc=:MTIzNDU2Nzg=", "pwä12345678x"] {
            assert!(split_scratch_code(none, 6).is_none(), "{none:?}");
        }
        assert!(split_scratch_code("pw12345678", 8).is_none());
    }

    #[test]
    fn static_challenge_responses_are_decoded() {
        let field = format!("SCRV1:{}:{}", b64("pässword"), b64(" 012345 "));
        let p = split(&field, true, 6).unwrap();
        assert_eq!(p.format, InputFormat::Scrv1);
        assert_eq!(p.password.unwrap().expose(), "pässword");
        assert_eq!(p.code.expose(), "012345");
        let no_pw = format!("SCRV1::{}", b64("012345"));
        assert_eq!(split(&no_pw, false, 6).unwrap().code.expose(), "012345");
        assert_eq!(split(&no_pw, true, 6).unwrap_err(), InputError::NoPassword);
    }

    #[test]
    fn malformed_static_challenge_responses_are_refused() {
        let good = b64("123456");
        for bad in [
            "SCRV1:".to_string(),
            "SCRV1:abc".to_string(),
            format!("SCRV1:!!!:{good}"),
            "SCRV1::MTIzND".to_string(),     // unpadded
            "SCRV1::MTIz\nNDU2".to_string(), // line-wrapped
            format!("SCRV1::{}", STANDARD.encode([0xff, 0xfe])), // not UTF-8
            format!("SCRV1::{}", b64("   ")),
        ] {
            assert!(split(&bad, false, 6).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn oversized_fields_are_refused_before_parsing() {
        let huge = "1".repeat(MAX_FIELD_LEN + 1);
        assert_eq!(split(&huge, false, 6).unwrap_err(), InputError::TooLong);
        assert_eq!(split(&format!("SCRV1:{huge}:MTIz"), true, 6).unwrap_err(), InputError::TooLong);
    }

    #[test]
    fn only_fields_beyond_a_bare_code_may_hold_a_password() {
        for bare in ["123456", " 12345678 ", "abcde-fgh23", "", "SCRV1::MTIzNDU2"] {
            assert!(!may_hold_a_password(bare), "{bare:?}");
        }
        // A numeric PIN before the code is all digits but longer than any code.
        for more in ["4711123456", "1234567", "pw123456", "pwabcde-fgh23", "SCRV1:cHc=:MTIz"] {
            assert!(may_hold_a_password(more), "{more:?}");
        }
    }

    #[test]
    fn multibyte_input_never_panics() {
        for field in ["ä", "äääää", "pwäääääää", "€€€€€€€€€€€€", "x€-€€€€€€€€€"]
        {
            let _ = split(field, true, 6);
            let _ = split(field, false, 6);
        }
    }
}
