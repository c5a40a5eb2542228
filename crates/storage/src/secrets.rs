//! Secret hashing: argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Argon2's working memory (19 MiB with our parameters), kept by the caller and reused while
/// checks keep coming: a busy hashing thread never asks the allocator again, so memory stays
/// bounded by the number of hashing threads however many logins arrive.
#[derive(Default)]
pub struct Scratch(Vec<Block>);

/// Blocks reserved at once: 33 MiB, above glibc's largest mmap threshold (32 MiB on 64-bit,
/// mallopt(3)), so the memory is its own mapping, handed back to the system when dropped.
/// A smaller reservation (19 MiB) would stay in the thread's malloc arena after the first
/// free (glibc raises its threshold to the size of a freed mapping), and auth kept ~20 MiB per
/// hashing thread for good after a burst of logins. Only the blocks in use are ever touched,
/// so the rest of the reservation costs address space, not memory.
const RESERVED_BLOCKS: usize = 33 * 1024 * 1024 / std::mem::size_of::<Block>();

impl Scratch {
    /// Whether it holds no working memory.
    pub fn is_empty(&self) -> bool {
        self.0.capacity() == 0
    }

    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let needed = params.block_count();
        if self.0.capacity() < needed {
            self.0 = Vec::with_capacity(needed.max(RESERVED_BLOCKS));
        }
        if self.0.len() < needed {
            self.0.resize(needed, Block::default());
        }
        &mut self.0[..needed]
    }
}

/// Hashes a secret into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash_secret(secret: &SecretString) -> Result<String, HashError> {
    hash_secret_with(secret, &mut Scratch::default())
}

/// [`hash_secret`] in reused memory.
pub fn hash_secret_with(secret: &SecretString, scratch: &mut Scratch) -> Result<String, HashError> {
    let error = |e: argon2::password_hash::Error| HashError(e.to_string());
    let mut salt_bytes = [0u8; 16];
    rand::fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(error)?;
    let argon = hasher();
    let params = argon.params().clone();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon
        .hash_password_into_with_memory(
            secret.expose_secret().as_bytes(),
            &salt_bytes,
            &mut out,
            scratch.blocks(&params),
        )
        .map_err(|e| HashError(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(error)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(error)?),
    };
    Ok(phc.to_string())
}

/// Checks a secret against a stored PHC string; a malformed hash never verifies.
pub fn verify_secret(secret: &SecretString, phc: &str) -> bool {
    verify_secret_with(secret, phc, &mut Scratch::default())
}

/// [`verify_secret`] in reused memory.
pub fn verify_secret_with(secret: &SecretString, phc: &str, scratch: &mut Scratch) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    // Only hashes we could have written: a stored string asking for more memory or passes
    // than ours would make one check cost what it likes (and keep that memory).
    let ours = hasher().params().clone();
    if params.m_cost() > ours.m_cost()
        || params.t_cost() > ours.t_cost()
        || params.p_cost() > ours.p_cost()
    {
        tracing::error!("a stored hash asks for more than Plantline's argon2 parameters; refused");
        return false;
    }
    let Ok(version) = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map(Option::unwrap_or_default)
    else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    argon
        .hash_password_into_with_memory(
            secret.expose_secret().as_bytes(),
            salt,
            &mut out,
            scratch.blocks(&params),
        )
        .is_ok()
        // `Output` compares in constant time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
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
    fn reused_memory_agrees_with_the_reference_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let secret = SecretString::from("pw-1234");
        let mut scratch = Scratch::default();
        // Ours verifies the crate's own hash, and the crate verifies ours.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let reference = hasher()
            .hash_password(b"pw-1234", &salt)
            .unwrap()
            .to_string();
        assert!(verify_secret_with(&secret, &reference, &mut scratch));
        let ours = hash_secret_with(&secret, &mut scratch).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(hasher().verify_password(b"pw-1234", &parsed).is_ok());
        assert!(!verify_secret_with(
            &SecretString::from("pw-1235"),
            &ours,
            &mut scratch
        ));
        // Nothing we would not have written: heavier parameters, an unknown version.
        let heavy = ours.replace("m=19456", "m=4194304");
        assert!(!verify_secret_with(&secret, &heavy, &mut scratch));
        let unknown = ours.replace("v=19", "v=99");
        assert!(!verify_secret_with(&secret, &unknown, &mut scratch));
    }

    #[test]
    fn generated_secrets_are_random_and_sized() {
        let a = generate_secret(24);
        let b = generate_secret(24);
        assert_eq!(a.expose_secret().len(), 24);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
