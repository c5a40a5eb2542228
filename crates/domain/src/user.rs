//! People's accounts: names, e-mail addresses and the password policy.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Why an account attribute was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseUserError {
    /// Username outside `[A-Za-z0-9._-]{3,64}`.
    #[error("must be 3 to 64 characters of letters, digits, '.', '_' or '-'")]
    BadUsername,
    /// Not an e-mail address.
    #[error("must be an e-mail address")]
    BadEmail,
    /// Password policy violated; the text says which rule.
    #[error("{0}")]
    WeakPassword(&'static str),
}

/// A user's identity.
#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Uuid))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// The underlying UUID, for storage adapters.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// A gateway client's identity (the subject of its tokens).
#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Uuid))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GatewayId(Uuid);

impl GatewayId {
    /// The underlying UUID, for storage adapters.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for GatewayId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A login name, compared case-insensitively (stored as given, unique in lower case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    /// Parses a username.
    pub fn parse(raw: &str) -> Result<Self, ParseUserError> {
        let ok = (3..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseUserError::BadUsername)
        }
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, checked for shape only (delivery is not our business).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a dot in the domain, no spaces, at most 255 characters.
    pub fn parse(raw: &str) -> Result<Self, ParseUserError> {
        let raw = raw.trim();
        let ok = raw.len() <= 255
            && !raw.contains(char::is_whitespace)
            && raw.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseUserError::BadEmail)
        }
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A new password that passed the policy. Deliberately neither `Debug`-printable nor
/// serialisable, so it cannot end up in a log line or a response.
pub struct NewPassword(String);

impl NewPassword {
    /// Shortest accepted password (NIST SP 800-63B recommends at least 8; we ask for 12).
    pub const MIN_LEN: usize = 12;
    /// Longest accepted password (bounds the hashing work an attacker can request).
    pub const MAX_LEN: usize = 128;

    /// Checks the policy: length, not the username, not one repeated character, not a
    /// well-known password.
    pub fn parse(raw: &str, username: &str) -> Result<Self, ParseUserError> {
        let chars = raw.chars().count();
        if chars < Self::MIN_LEN {
            return Err(ParseUserError::WeakPassword(
                "must be at least 12 characters",
            ));
        }
        if chars > Self::MAX_LEN {
            return Err(ParseUserError::WeakPassword(
                "must be at most 128 characters",
            ));
        }
        if raw.to_lowercase().contains(&username.to_lowercase()) {
            return Err(ParseUserError::WeakPassword(
                "must not contain the username",
            ));
        }
        let mut distinct: Vec<char> = raw.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 5 {
            return Err(ParseUserError::WeakPassword(
                "must use at least 5 different characters",
            ));
        }
        const COMMON: [&str; 8] = [
            "password1234",
            "123456789012",
            "qwertyuiop12",
            "administrator",
            "letmein12345",
            "welcome12345",
            "plantline123",
            "changeme1234",
        ];
        if COMMON.iter().any(|c| raw.eq_ignore_ascii_case(c)) {
            return Err(ParseUserError::WeakPassword("is a well-known password"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_bounded_and_plain() {
        assert!(Username::parse("j.doe-2").is_ok());
        for bad in ["ab", "a b c", "x@y", &"u".repeat(65)] {
            assert_eq!(
                Username::parse(bad),
                Err(ParseUserError::BadUsername),
                "{bad}"
            );
        }
    }

    #[test]
    fn emails_need_a_domain() {
        assert!(Email::parse("ops@plant.example").is_ok());
        for bad in ["ops", "ops@plant", "a@b@c.d", "o ps@p.de", "@p.de", "o@.p"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_policy_names_the_rule() {
        assert!(NewPassword::parse("bright-lathe-42-turns", "operator").is_ok());
        let rule = |raw: &str| match NewPassword::parse(raw, "operator") {
            Err(ParseUserError::WeakPassword(rule)) => rule,
            _ => "accepted",
        };
        assert_eq!(rule("short"), "must be at least 12 characters");
        assert_eq!(rule("my-operator-pass"), "must not contain the username");
        assert_eq!(
            rule("aaaaaaaaaaaaaaab"),
            "must use at least 5 different characters"
        );
        assert_eq!(rule("Password1234"), "is a well-known password");
        assert_eq!(rule(&"abcdef".repeat(22)), "must be at most 128 characters");
    }
}
