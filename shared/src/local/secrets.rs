//! The local stack's key-hashing and encryption secrets, persisted with a persistent database.
//!
//! With `DATABASE_URL` the database outlives a `calseta dev` run, so the secrets that hash its API
//! keys and encrypt its agent and source secrets must outlive it too. They are kept in a 0600 file
//! under `<data-dir>/secrets/` (folder 0700), one file per database (named after a hash of the URL
//! without its password). Not in the database itself: the encryption key next to the ciphertext
//! (and the key-hash pepper next to the hashes) would make a dump or backup enough to decrypt the
//! agents' auth headers and brute-force keys offline. `CALSETA_KEY_HASH_SECRET` and
//! `CALSETA_ENCRYPTION_KEY`, when both set, win over the file (as in AWS).

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::AppSecrets;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    /// The database the secrets belong to, without credentials (for a human reading the folder).
    database: String,
    key_hash_secret: String,
    encryption_key: String,
}

/// Where the secrets of `database_url` are kept under `data_dir`.
pub(crate) fn path_for(data_dir: &Path, database_url: &str) -> PathBuf {
    let id = hex::encode(Sha256::digest(redacted(database_url).as_bytes()));
    data_dir.join("secrets").join(format!("{}.json", &id[..16]))
}

/// The URL without password (and without query, which may carry one): what identifies the
/// database across runs whose password changed.
fn redacted(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        // Not a URL (a key=value connection string): hash it whole.
        Err(_) => database_url.to_owned(),
    }
}

/// The secrets for `database_url`: from the environment when both are set, else the stored
/// ones, else fresh ones written 0600 for the next run. `created` tells the caller they are new.
pub(crate) fn load_or_create(data_dir: &Path, database_url: &str) -> std::io::Result<(AppSecrets, bool)> {
    if let (Some(h), Some(e)) = (
        crate::config::var("CALSETA_KEY_HASH_SECRET"),
        crate::config::var("CALSETA_ENCRYPTION_KEY"),
    ) {
        return Ok((
            AppSecrets {
                key_hash_secret: SecretString::from(h),
                encryption_key: SecretString::from(e),
            },
            false,
        ));
    }
    let path = path_for(data_dir, database_url);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let s: Stored = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a calseta secrets file: {e}", path.display()),
                )
            })?;
            return Ok((
                AppSecrets {
                    key_hash_secret: SecretString::from(s.key_hash_secret),
                    encryption_key: SecretString::from(s.encryption_key),
                },
                false,
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secrets = AppSecrets::random();
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let body = serde_json::to_vec_pretty(&Stored {
        database: redacted(database_url),
        key_hash_secret: secrets.key_hash_secret.expose_secret().to_owned(),
        encryption_key: secrets.encryption_key.expose_secret().to_owned(),
    })
    .map_err(std::io::Error::other)?;
    // Written aside and renamed: a crash never leaves a half file that would lock out the keys.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok((secrets, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_database_same_secrets_file_private() {
        let dir = std::env::temp_dir().join(format!("calseta-secrets-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, created) = load_or_create(&dir, "postgres://u:one@127.0.0.1:5432/calseta").expect("create");
        assert!(created);
        // A changed password is still the same database.
        let (b, created) = load_or_create(&dir, "postgres://u:two@127.0.0.1:5432/calseta").expect("load");
        assert!(!created);
        assert_eq!(a.key_hash_secret.expose_secret(), b.key_hash_secret.expose_secret());
        assert_eq!(a.encryption_key.expose_secret(), b.encryption_key.expose_secret());
        let (c, created) = load_or_create(&dir, "postgres://u:one@127.0.0.1:5432/other").expect("other");
        assert!(created);
        assert_ne!(a.encryption_key.expose_secret(), c.encryption_key.expose_secret());
        let path = path_for(&dir, "postgres://u:one@127.0.0.1:5432/calseta");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("one"), "no database password in the file: {text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
