//! Secrets at rest (source shared/HMAC secrets, agent signing secrets, agent auth headers):
//! AES-256-GCM under the app encryption key, a fresh 96-bit nonce per value, stored as
//! `nonce || ciphertext+tag`. The key never leaves this type.

use aes_gcm::{
    aead::{Aead, KeyInit},
    Aes256Gcm, Nonce,
};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("encryption key must be 64 hex characters (32 bytes)")]
    BadKey,
    #[error("stored secret could not be decrypted (wrong key or corrupted)")]
    Decrypt,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// From 64 hex characters.
    pub fn from_hex(key: &SecretString) -> Result<Self, CryptoError> {
        let bytes = hex::decode(key.expose_secret().trim()).map_err(|_| CryptoError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    pub fn seal(&self, plaintext: &str) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        if sealed.len() < 12 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(pt)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let s = Sealer::random();
        let sealed = s.seal("whsec_topsecret");
        assert!(!sealed.windows(6).any(|w| w == b"topsec"));
        assert_eq!(s.open(&sealed).expect("open").expose_secret(), "whsec_topsecret");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(s.open(&bad).is_err());
        assert!(Sealer::random().open(&sealed).is_err());
        assert!(Sealer::from_hex(&SecretString::from("abc")).is_err());
        let k = SecretString::from("00".repeat(32));
        assert!(Sealer::from_hex(&k).is_ok());
    }
}
