//! API keys: `cai_` + 43 URL-safe base64 chars (32 random bytes). Stored as HMAC-SHA256 under a
//! server secret; the first 8 characters are the lookup prefix (api spec §2).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub(crate) const KEY_PREFIX: &str = "cai_";
pub(crate) const KEY_LEN: usize = 47;
pub(crate) const LOOKUP_PREFIX_LEN: usize = 8;

/// Computes key hashes. Holds the server secret, so it is never printed.
#[derive(Clone)]
pub struct KeyHasher {
    secret: SecretString,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

impl KeyHasher {
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    pub fn hash(&self, key: &str) -> Vec<u8> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// A freshly generated key; the plaintext is shown once.
pub fn generate() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// True when `key` has the `cai_` + 43 base64url shape.
pub(crate) fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The lookup prefix (first 8 characters). Only call on well-formed keys.
pub(crate) fn lookup_prefix(key: &str) -> &str {
    &key[..LOOKUP_PREFIX_LEN.min(key.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(a.expose_secret()), "{}", a.expose_secret().len());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(!is_well_formed("cai_short"));
        assert!(!is_well_formed(&format!("xyz_{}", &a.expose_secret()[4..])));
    }

    #[test]
    fn hash_depends_on_server_secret() {
        let k = "cai_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let h1 = KeyHasher::new(SecretString::from("one")).hash(k);
        let h2 = KeyHasher::new(SecretString::from("two")).hash(k);
        assert_eq!(h1.len(), 32);
        assert_ne!(h1, h2);
        assert_eq!(h1, KeyHasher::new(SecretString::from("one")).hash(k));
    }
}
