//! Ed25519 keys: loading PEM files, key ids (RFC 7638 thumbprints) and the JWKS document.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("reading key file {path}: {source}")]
    Read {
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an Ed25519 key in PEM.
    #[error("key file {path} is not an Ed25519 PEM key: {reason}")]
    Parse { path: String, reason: String },
}

/// An Ed25519 public key with its key id.
#[derive(Clone)]
pub struct PublicKey {
    kid: String,
    raw: [u8; 32],
}

impl PublicKey {
    /// From the 32 raw key bytes.
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self {
            kid: thumbprint(&raw),
            raw,
        }
    }

    /// Loads a PEM (`-----BEGIN PUBLIC KEY-----`) file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&text).map_err(|e| {
            KeyError::Parse {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self::from_raw(key.to_bytes()))
    }

    /// The key id: the RFC 7638 JWK thumbprint, so every service derives the same id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK `x` member: the raw key, base64url without padding.
    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.raw)
    }

    /// The JWKS entry for this key.
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: self.x(),
            kid: self.kid.clone(),
            alg: "EdDSA".to_owned(),
            key_use: "sig".to_owned(),
        }
    }

    /// PEM text (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        ed25519_dalek::VerifyingKey::from_bytes(&self.raw)
            .ok()
            .and_then(|key| key.to_public_key_pem(Default::default()).ok())
            .unwrap_or_default()
    }
}

/// The private key `auth` signs with.
pub struct SigningKey {
    pkcs8_pem: String,
    pkcs8_der: Vec<u8>,
    public: PublicKey,
}

impl SigningKey {
    /// A new random key (demo setups and tests).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Loads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) file.
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Parse {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_dalek(key))
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> Self {
        let pkcs8_pem = key
            .to_pkcs8_pem(Default::default())
            .map(|pem| pem.to_string())
            .unwrap_or_default();
        let pkcs8_der = key
            .to_pkcs8_der()
            .map(|der| der.as_bytes().to_vec())
            .unwrap_or_default();
        Self {
            pkcs8_pem,
            pkcs8_der,
            public: PublicKey::from_raw(key.verifying_key().to_bytes()),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The PKCS#8 DER bytes (for the JWT signer; never log them).
    pub fn to_pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// The PKCS#8 PEM text (for writing the key file; never log it).
    pub fn to_pkcs8_pem(&self) -> &str {
        &self.pkcs8_pem
    }
}

/// One entry of a JSON Web Key Set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// Key id, as in the token header.
    pub kid: String,
    /// Algorithm: `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
}

/// A JSON Web Key Set (`/.well-known/jwks.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// RFC 7638 thumbprint of an OKP key: SHA-256 over the canonical JSON, base64url.
fn thumbprint(raw: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(raw)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_files_with_stable_ids() {
        let dir = std::env::temp_dir().join(format!("plantline-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let signing = SigningKey::generate();
        std::fs::write(dir.join("private.pem"), signing.to_pkcs8_pem()).unwrap();
        std::fs::write(dir.join("public.pem"), signing.public_key().to_pem()).unwrap();

        let reloaded = SigningKey::from_pem_file(&dir.join("private.pem")).unwrap();
        let public = PublicKey::from_pem_file(&dir.join("public.pem")).unwrap();
        assert_eq!(reloaded.public_key().kid(), signing.public_key().kid());
        assert_eq!(public.kid(), signing.public_key().kid());
        assert_eq!(public.x().len(), 43);
        assert!(PublicKey::from_pem_file(&dir.join("private.pem")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let raw: [u8; 32] = x.try_into().unwrap();
        assert_eq!(
            PublicKey::from_raw(raw).kid(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
