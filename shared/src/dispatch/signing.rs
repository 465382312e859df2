//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), the scheme agent
//! deliveries use: `webhook-id` (the delivery id, so agents can de-duplicate), `webhook-timestamp`
//! (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//! Signing secrets are `whsec_` followed by the base64 key; several space-separated signatures
//! are allowed while a secret is rotated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Prefix of a signing secret.
pub(crate) const SECRET_PREFIX: &str = "whsec_";
/// How far a verifier accepts timestamps from its clock (the scheme's recommendation).
pub(crate) const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("signing secret must be whsec_ followed by base64")]
    BadSecret,
    #[error("no valid signature")]
    NoMatch,
    #[error("timestamp outside the tolerance")]
    Stale,
}

/// A new random signing secret (24 random bytes, like the reference implementations).
pub fn generate_secret() -> SecretString {
    let key: [u8; 24] = rand::random();
    SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

fn key_bytes(secret: &SecretString) -> Result<Vec<u8>, SigningError> {
    let s = secret.expose_secret();
    let b64 = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
    STANDARD.decode(b64).map_err(|_| SigningError::BadSecret)
}

/// `v1,<signature>` for one delivery.
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SigningError> {
    let key = key_bytes(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SigningError::BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The three headers of a delivery: (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
/// With a previous secret still valid (rotation), both signatures are sent.
pub fn headers(
    secrets: &[&SecretString],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<[(&'static str, String); 3], SigningError> {
    let sigs: Result<Vec<String>, SigningError> = secrets.iter().map(|s| sign(s, id, timestamp, body)).collect();
    Ok([
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sigs?.join(" ")),
    ])
}

/// What an agent does: checks the timestamp window and any `v1` signature in the header.
pub fn verify(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SigningError> {
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SigningError::Stale);
    }
    let expected = sign(secret, id, timestamp, body)?;
    let ok = signature_header
        .split_whitespace()
        .filter(|s| s.starts_with("v1,"))
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
    if ok {
        Ok(())
    } else {
        Err(SigningError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The scheme's published example (secret, id, timestamp, body → signature).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        let secret = SecretString::from(SECRET);
        assert_eq!(sign(&secret, ID, TS, BODY).unwrap(), SIG);
        assert_eq!(verify(&secret, ID, TS, SIG, BODY, TS + 10), Ok(()));
    }

    #[test]
    fn rejects_tampering_staleness_and_bad_secrets() {
        let secret = SecretString::from(SECRET);
        assert_eq!(verify(&secret, ID, TS, SIG, b"{}", TS), Err(SigningError::NoMatch));
        assert_eq!(
            verify(&secret, "msg_other", TS, SIG, BODY, TS),
            Err(SigningError::NoMatch)
        );
        assert_eq!(verify(&secret, ID, TS, SIG, BODY, TS + 301), Err(SigningError::Stale));
        assert_eq!(verify(&secret, ID, TS, "v2,abc", BODY, TS), Err(SigningError::NoMatch));
        assert_eq!(
            sign(&SecretString::from("whsec_not base64!"), ID, TS, BODY),
            Err(SigningError::BadSecret)
        );
    }

    #[test]
    fn rotation_sends_both_signatures() {
        let old = SecretString::from(SECRET);
        let new = generate_secret();
        assert!(new.expose_secret().starts_with(SECRET_PREFIX));
        let h = headers(&[&new, &old], ID, TS, BODY).unwrap();
        assert_eq!(h[0], ("webhook-id", ID.to_string()));
        assert_eq!(h[1], ("webhook-timestamp", TS.to_string()));
        // An agent holding either secret accepts the delivery.
        assert_eq!(verify(&old, ID, TS, &h[2].1, BODY, TS), Ok(()));
        assert_eq!(verify(&new, ID, TS, &h[2].1, BODY, TS), Ok(()));
        assert_eq!(
            verify(&generate_secret(), ID, TS, &h[2].1, BODY, TS),
            Err(SigningError::NoMatch)
        );
    }
}
