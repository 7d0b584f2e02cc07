//! Field validation shared by every service. Each function returns the
//! normalised value or a message that names what is wrong, phrased to follow
//! the field name ("must be ...").

use crate::FieldErrors;
use crate::user::{LearningLanguage, limits};

/// Validates and lowercases an email address. The check is deliberately
/// simple (one `@`, a dotted domain, no spaces): the real proof of an address
/// is mail reaching it.
pub fn email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("must not be empty".into());
    }
    if email.len() > 254 {
        return Err("must be at most 254 characters".into());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must be an email address".into());
    };
    let valid = !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid { Ok(email) } else { Err("must be an email address".into()) }
}

/// Checks password length: at least 8 characters, at most 256 bytes.
pub fn password(password: &str) -> Result<(), String> {
    if password.chars().count() < limits::PASSWORD_MIN_CHARS {
        return Err(format!("must be at least {} characters", limits::PASSWORD_MIN_CHARS));
    }
    if password.len() > limits::PASSWORD_MAX_BYTES {
        return Err(format!("must be at most {} bytes", limits::PASSWORD_MAX_BYTES));
    }
    Ok(())
}

/// Trims a display name and checks it is 1 to 50 characters without control
/// characters.
pub fn display_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    text(name, 1, limits::DISPLAY_NAME_MAX_CHARS)?;
    Ok(name.to_owned())
}

/// Checks a free text's length in characters and that it has no control
/// characters other than newlines and tabs.
pub fn text(value: &str, min_chars: usize, max_chars: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars < min_chars {
        return Err(if min_chars == 1 {
            "must not be empty".into()
        } else {
            format!("must be at least {min_chars} characters")
        });
    }
    if chars > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks an `http(s)://` URL of bounded length.
pub fn http_url(value: &str, max_chars: usize) -> Result<(), String> {
    if value.len() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("must be an http or https URL")?;
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be an http or https URL".into());
    }
    Ok(())
}

/// Normalises a language code (BCP 47 shape: `es`, `pt-BR`, `zh-Hant`):
/// a 2-3 letter primary subtag in lowercase, then optional subtags.
pub fn language_code(raw: &str) -> Result<String, String> {
    let code = raw.trim();
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or_default();
    let primary_ok = (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
    let rest: Vec<&str> = parts.collect();
    let rest_ok = rest.iter().all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !primary_ok || !rest_ok || code.len() > 35 {
        return Err("must be a language code such as `es` or `pt-BR`".into());
    }
    let mut normalised = primary.to_ascii_lowercase();
    for part in rest {
        normalised.push('-');
        // Regions are upper case by convention (pt-BR), scripts title case (zh-Hant).
        if part.len() == 2 {
            normalised.push_str(&part.to_ascii_uppercase());
        } else {
            normalised.push_str(part);
        }
    }
    Ok(normalised)
}

/// Normalises a list of language codes, dropping duplicates; problems are
/// recorded under `field[i]`.
pub fn language_list(codes: &[String], field: &str, errors: &mut FieldErrors) -> Vec<String> {
    if codes.len() > limits::MAX_LANGUAGES {
        errors.add(field, format!("must list at most {} languages", limits::MAX_LANGUAGES));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        match language_code(code) {
            Ok(code) if !out.contains(&code) => out.push(code),
            Ok(_) => {}
            Err(msg) => errors.add(format!("{field}[{i}]"), msg),
        }
    }
    out
}

/// Normalises learning languages, dropping a repeated language.
pub fn learning_languages(langs: &[LearningLanguage], errors: &mut FieldErrors) -> Vec<LearningLanguage> {
    const FIELD: &str = "learning_languages";
    if langs.len() > limits::MAX_LANGUAGES {
        errors.add(FIELD, format!("must list at most {} languages", limits::MAX_LANGUAGES));
        return Vec::new();
    }
    let mut out: Vec<LearningLanguage> = Vec::with_capacity(langs.len());
    for (i, lang) in langs.iter().enumerate() {
        match language_code(&lang.code) {
            Ok(code) if !out.iter().any(|l| l.code == code) => out.push(LearningLanguage { code, level: lang.level }),
            Ok(_) => {}
            Err(msg) => errors.add(format!("{FIELD}[{i}].code"), msg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" A@B.co ").unwrap(), "a@b.co");
        for bad in ["", "a", "a@b", "@b.co", "a@.co", "a@b.", "a b@c.de", "a@b@c.de"] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn language_codes() {
        assert_eq!(language_code("PT-br").unwrap(), "pt-BR");
        assert_eq!(language_code("zh-Hant").unwrap(), "zh-Hant");
        assert_eq!(language_code("yue").unwrap(), "yue");
        for bad in ["", "e", "english", "en_US", "en-", "1a"] {
            assert!(language_code(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn texts() {
        assert!(text("", 1, 5).is_err());
        assert!(text("héllo", 1, 5).is_ok());
        assert!(text("héllo!", 1, 5).is_err());
        assert!(text("a\u{0}b", 0, 5).is_err());
        assert!(text("a\nb", 0, 5).is_ok());
    }

    #[test]
    fn urls() {
        assert!(http_url("https://cdn.example.org/a.png", 100).is_ok());
        assert!(http_url("javascript:alert(1)", 100).is_err());
        assert!(http_url("https://", 100).is_err());
    }
}
