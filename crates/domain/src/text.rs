//! One rule for text that comes from outside (JSON fields, query parameters, headers we keep,
//! MQTT topics and payload strings): valid UTF-8, no control characters, and no longer than
//! the field's documented maximum. PostgreSQL refuses NUL outright and a control character in
//! a name or a tag is never what an operator meant, so both are refused at the boundary with
//! the field named, never discovered later as a database error.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Why a client's text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A NUL, another C0/C1 control character or DEL.
    #[error("must not contain control characters (found U+{0:04X})")]
    Control(u32),
    /// Longer than the field allows.
    #[error("must be at most {0} characters")]
    TooLong(usize),
    /// Not UTF-8 (only possible for bytes that were not already a Rust string).
    #[error("must be valid UTF-8")]
    NotUtf8,
}

/// The first control character of `text`, if any.
pub fn first_control(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control())
}

/// Checks `text` against the rule with `max_chars` as its bound.
pub fn check(text: &str, max_chars: usize) -> Result<(), TextError> {
    if let Some(c) = first_control(text) {
        return Err(TextError::Control(u32::from(c)));
    }
    // Byte length bounds the character count from above: most text never needs the count.
    if text.len() > max_chars && text.chars().count() > max_chars {
        return Err(TextError::TooLong(max_chars));
    }
    Ok(())
}

/// Checks bytes that should be text (a line-protocol body, an MQTT topic).
pub fn check_bytes(bytes: &[u8], max_chars: usize) -> Result<&str, TextError> {
    let text = std::str::from_utf8(bytes).map_err(|_| TextError::NotUtf8)?;
    check(text, max_chars).map(|()| text)
}

/// A client string that passed [`check`] with `MAX` characters as its bound. Deserialising
/// one fails with the rule's message, so a JSON body with a NUL in a field is a 400 naming
/// that field before any handler code runs.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    /// Checks and wraps.
    pub fn parse(raw: impl Into<String>) -> Result<Self, TextError> {
        let raw = raw.into();
        check(&raw, MAX)?;
        Ok(Self(raw))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owned text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX: usize> AsRef<str> for Text<MAX> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> std::ops::Deref for Text<MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> fmt::Display for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Text<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_everywhere_in_the_text() {
        for bad in [
            "a\0b",
            "\u{7}",
            "tab\there",
            "line\nbreak",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert!(
                matches!(check(bad, 100), Err(TextError::Control(_))),
                "{bad:?}"
            );
        }
        assert_eq!(check("a\0", 100), Err(TextError::Control(0)));
        assert_eq!(check("Halle 1 – Süd ✓", 100), Ok(()));
    }

    #[test]
    fn the_bound_counts_characters_not_bytes() {
        assert_eq!(check(&"ü".repeat(64), 64), Ok(()));
        assert_eq!(check(&"ü".repeat(65), 64), Err(TextError::TooLong(64)));
        assert_eq!(check_bytes(b"\xff\xfe", 10), Err(TextError::NotUtf8));
    }

    #[test]
    fn text_fields_refuse_bad_values_while_deserialising() {
        #[derive(Deserialize, Debug)]
        struct Body {
            #[allow(dead_code)]
            name: Text<8>,
        }
        assert!(serde_json::from_str::<Body>(r#"{"name":"Mill"}"#).is_ok());
        let err = serde_json::from_str::<Body>(r#"{"name":"a\u0000b"}"#).unwrap_err();
        assert!(err.to_string().contains("control characters"), "{err}");
        let err = serde_json::from_str::<Body>(r#"{"name":"123456789"}"#).unwrap_err();
        assert!(err.to_string().contains("at most 8"), "{err}");
    }
}
