//! The token-signing key pair for a deployment without a secret store (local stack, demos).

use platform::auth::SigningKey;
use std::path::Path;

/// File names inside the key folder.
pub const PRIVATE_KEY_FILE: &str = "signing-key.pem";
/// The public half, for every verifying service.
pub const PUBLIC_KEY_FILE: &str = "public-key.pem";

/// Writes a new Ed25519 key pair into `dir` unless one is there already; returns whether it
/// generated one. The private key is readable by its owner only.
pub fn ensure_key_pair(dir: &Path) -> std::io::Result<bool> {
    let private = dir.join(PRIVATE_KEY_FILE);
    if private.exists() && dir.join(PUBLIC_KEY_FILE).exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let key = SigningKey::generate();
    let tmp = private.with_extension("tmp");
    std::fs::write(&tmp, key.to_pkcs8_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &private)?;
    std::fs::write(dir.join(PUBLIC_KEY_FILE), key.public_key().to_pem())?;
    Ok(true)
}
