//! Secret hashing: argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

/// Why a secret could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("hashing failed: {0}")]
pub struct HashError(String);

fn hasher() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19456 KiB, t=2, p=1.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a secret into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash_secret(secret: &SecretString) -> Result<String, HashError> {
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
    hasher()
        .hash_password(secret.expose_secret().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks a secret against a stored PHC string; a malformed hash never verifies.
pub fn verify_secret(secret: &SecretString, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        hasher()
            .verify_password(secret.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A random secret of `len` URL-safe characters (demo passwords, gateway secrets).
pub fn generate_secret(len: usize) -> SecretString {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let text: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    SecretString::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_secret() {
        let secret = SecretString::from("correct horse battery staple");
        let hash = hash_secret(&secret).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_secret(&secret, &hash));
        assert!(!verify_secret(&SecretString::from("wrong"), &hash));
        assert!(!verify_secret(&secret, "not a hash"));
    }

    #[test]
    fn generated_secrets_are_random_and_sized() {
        let a = generate_secret(24);
        let b = generate_secret(24);
        assert_eq!(a.expose_secret().len(), 24);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
