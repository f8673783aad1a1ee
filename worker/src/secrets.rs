//! Secrets mounted by the operator (the Secrets contract): every Secret the spec
//! references is a folder `DIR/<secret-name>/` with one file per key, read-only.
//! `DIR` is `--secrets-dir` (env `RISKPIPE_SECRETS_DIR`, default
//! `/etc/riskpipe/secrets`); local mode points it at any folder of the same shape.
//!
//! A `SecretRef{name}` resolves to the folder, a `SecretKeySelector{name,key}` to the
//! file. Values are held in [`SecretValue`], whose `Debug` never shows them; errors
//! name the Secret, the key, the folder and the manifest field, never a value.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::SecretKeySelector;
use riskpipe_crds::{SecretRef, SecretsSpec};
use secrecy::{ExposeSecret, SecretBox};

use crate::audit::AuditKeys;

/// Where the operator mounts the Secrets unless `--secrets-dir` says otherwise.
pub const DEFAULT_SECRETS_DIR: &str = riskpipe_contract::mounts::SECRETS_DIR;

/// The environment variable the operator sets (and `--secrets-dir` reads).
pub const SECRETS_DIR_ENV: &str = "RISKPIPE_SECRETS_DIR";

/// A secret value (key, password, certificate): bytes whose `Debug` is redacted and
/// whose memory is zeroed on drop.
pub struct SecretValue(SecretBox<[u8]>);

impl SecretValue {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(SecretBox::new(bytes.into_boxed_slice()))
    }

    /// The bytes, for the one place that needs them.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The value without trailing line ends (`\n`, `\r\n`), as text. `what` names the
    /// value in the error (never the value itself).
    pub fn trimmed_str(&self, what: &str) -> Result<&str> {
        let text = std::str::from_utf8(self.expose())
            .map_err(|_| anyhow::anyhow!("{what} is not UTF-8 text"))?;
        Ok(text.trim_end_matches(['\n', '\r']))
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        SecretValue(SecretBox::new(Box::from(self.expose())))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

/// The folder of mounted Secrets.
#[derive(Debug, Clone)]
pub struct SecretsDir {
    root: PathBuf,
}

impl SecretsDir {
    /// The Secrets under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SecretsDir { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a referenced Secret; it must exist. `field` is the manifest field
    /// that references it (e.g. `spec.source.kafka.securitySecretRef`), for the error.
    pub fn secret(&self, secret: &SecretRef, field: &str) -> Result<SecretFolder> {
        self.folder(&secret.name, field)
    }

    /// The value of one key of a Secret (`SecretKeySelector`), raw bytes.
    pub fn key(&self, selector: &SecretKeySelector, field: &str) -> Result<SecretValue> {
        self.folder(&selector.name, field)?.read(&selector.key)
    }

    fn folder(&self, name: &str, field: &str) -> Result<SecretFolder> {
        check_secret_name(name).with_context(|| format!("{field}: Secret name '{name}'"))?;
        let path = self.root.join(name);
        if !path.is_dir() {
            bail!(
                "{field}: Secret '{name}' is not mounted: folder {} does not exist \
                 (in Kubernetes the operator mounts it; locally create it under --secrets-dir {} \
                 with one file per key)",
                path.display(),
                self.root.display()
            );
        }
        Ok(SecretFolder {
            name: name.to_owned(),
            field: field.to_owned(),
            path,
        })
    }
}

/// One mounted Secret: a folder with one file per key.
#[derive(Debug, Clone)]
pub struct SecretFolder {
    name: String,
    field: String,
    path: PathBuf,
}

impl SecretFolder {
    /// The Secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Secret's keys, sorted. Kubernetes' own entries (`..data`, `..2024_…`) are
    /// skipped; symbolic links (how Kubernetes mounts keys) are followed.
    pub fn keys(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.path).with_context(|| {
            format!(
                "{}: reading Secret '{}' in folder {}",
                self.field,
                self.name,
                self.path.display()
            )
        })?;
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.path.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with("..") || !entry.path().is_file() {
                continue;
            }
            keys.push(name);
        }
        keys.sort();
        Ok(keys)
    }

    /// The raw value of `key`; a missing key names the Secret, the key and the file.
    pub fn read(&self, key: &str) -> Result<SecretValue> {
        check_key_name(key).with_context(|| {
            format!(
                "{}: key '{key}' of Secret '{}' is not a valid Secret key",
                self.field, self.name
            )
        })?;
        let file = self.path.join(key);
        if !file.is_file() {
            bail!(
                "{}: Secret '{}' has no key '{key}': file {} does not exist (keys present: {})",
                self.field,
                self.name,
                file.display(),
                self.keys().map(|k| k.join(", ")).unwrap_or_default()
            );
        }
        let bytes = std::fs::read(&file).with_context(|| {
            format!(
                "{}: reading key '{key}' of Secret '{}' from {}",
                self.field,
                self.name,
                file.display()
            )
        })?;
        Ok(SecretValue::new(bytes))
    }

    /// Every key with its value, sorted by key.
    pub fn entries(&self) -> Result<Vec<(String, SecretValue)>> {
        self.keys()?
            .into_iter()
            .map(|k| {
                let v = self.read(&k)?;
                Ok((k, v))
            })
            .collect()
    }
}

/// The audit log's keys: from `spec.secrets.encryptionKeyRef` and `hmacKeyRef` when the
/// manifest sets them (the key's name is the key id; the Secret's other keys that are
/// 32-byte keys are kept as retired keys for decryption), else from the local-mode
/// environment variables (`audit::ENV_*`, looked up with `env`), else `None`.
pub fn load_audit_keys(
    spec: &SecretsSpec,
    dir: &SecretsDir,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<AuditKeys>> {
    const ENC: &str = "spec.secrets.encryptionKeyRef";
    const MAC: &str = "spec.secrets.hmacKeyRef";
    let (enc, mac) = match (&spec.encryption_key_ref, &spec.hmac_key_ref) {
        (None, None) => return AuditKeys::from_env(env),
        (Some(_), None) => bail!("{ENC} is set but {MAC} is not: the audit log needs both"),
        (None, Some(_)) => bail!("{MAC} is set but {ENC} is not: the audit log needs both"),
        (Some(e), Some(m)) => (e, m),
    };
    let enc_value = dir.key(enc, ENC)?;
    let mac_value = dir.key(mac, MAC)?;
    let mut keys = AuditKeys::new(&enc.key, enc_value.expose(), mac_value.expose())
        .with_context(|| format!("{ENC}: Secret '{}' key '{}'", enc.name, enc.key))?;
    let folder = dir.folder(&enc.name, ENC)?;
    for other in folder.keys()? {
        if other == enc.key || (enc.name == mac.name && other == mac.key) {
            continue;
        }
        let value = folder.read(&other)?;
        if crate::audit::parse_encryption_key(value.expose(), &other).is_ok() {
            keys = keys.with_retired_key(&other, value.expose())?;
        }
    }
    Ok(Some(keys))
}

/// A Secret name is a DNS subdomain: no path separators, no `..`.
fn check_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if !ok {
        bail!("not a valid Secret name (lower-case letters, digits, '-' and '.')");
    }
    Ok(())
}

/// A Secret key is `[-._a-zA-Z0-9]+`, not `.` or `..` (so never a path).
fn check_key_name(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok {
        bail!("Secret keys are letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(name: &str, key: &str) -> SecretKeySelector {
        SecretKeySelector {
            name: name.to_owned(),
            key: key.to_owned(),
            optional: None,
        }
    }

    fn dir_with(secret: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join(secret);
        std::fs::create_dir_all(&folder).unwrap();
        for (k, v) in files {
            std::fs::write(folder.join(k), v).unwrap();
        }
        tmp
    }

    #[test]
    fn resolves_folder_and_key() {
        let tmp = dir_with("kafka-client", &[("sasl.username", b"alice\n")]);
        let dir = SecretsDir::new(tmp.path());
        let folder = dir
            .secret(
                &SecretRef {
                    name: "kafka-client".into(),
                },
                "spec.source.kafka.securitySecretRef",
            )
            .unwrap();
        assert_eq!(folder.path(), tmp.path().join("kafka-client"));
        assert_eq!(folder.keys().unwrap(), vec!["sasl.username".to_owned()]);
        let v = dir
            .key(&selector("kafka-client", "sasl.username"), "f")
            .unwrap();
        assert_eq!(v.expose(), b"alice\n");
        assert_eq!(v.trimmed_str("x").unwrap(), "alice");
    }

    #[test]
    fn missing_secret_names_secret_field_and_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::new(tmp.path());
        let err = dir
            .key(
                &selector("audit-keys", "k1"),
                "spec.secrets.encryptionKeyRef",
            )
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("spec.secrets.encryptionKeyRef"), "{msg}");
        assert!(msg.contains("Secret 'audit-keys' is not mounted"), "{msg}");
        assert!(
            msg.contains(&tmp.path().join("audit-keys").display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn missing_key_names_key_file_and_present_keys() {
        let tmp = dir_with("audit-keys", &[("k2", b"x")]);
        let dir = SecretsDir::new(tmp.path());
        let msg = format!(
            "{:#}",
            dir.key(
                &selector("audit-keys", "k1"),
                "spec.secrets.encryptionKeyRef"
            )
            .unwrap_err()
        );
        assert!(msg.contains("has no key 'k1'"), "{msg}");
        assert!(msg.contains("audit-keys/k1"), "{msg}");
        assert!(msg.contains("keys present: k2"), "{msg}");
    }

    #[test]
    fn refuses_paths_as_names_and_keys() {
        let tmp = dir_with("s", &[("k", b"x")]);
        let dir = SecretsDir::new(tmp.path());
        assert!(dir.key(&selector("s", "../s/k"), "f").is_err());
        assert!(dir.key(&selector("../s", "k"), "f").is_err());
        assert!(dir.key(&selector("s", ".."), "f").is_err());
        assert!(dir.key(&selector("", "k"), "f").is_err());
    }

    #[test]
    fn skips_kubernetes_internal_entries_and_follows_links() {
        // The layout of a Kubernetes Secret volume: keys are links into ..data.
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("s");
        let data = folder.join("..2026_11_28_20_00_00.1");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("sasl.password"), b"pw").unwrap();
        std::os::unix::fs::symlink("..2026_11_28_20_00_00.1", folder.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/sasl.password", folder.join("sasl.password")).unwrap();
        let dir = SecretsDir::new(tmp.path());
        let f = dir.secret(&SecretRef { name: "s".into() }, "f").unwrap();
        assert_eq!(f.keys().unwrap(), vec!["sasl.password".to_owned()]);
        let entries = f.entries().unwrap();
        assert_eq!(entries[0].1.expose(), b"pw");
    }

    #[test]
    fn audit_keys_from_secrets_with_retired_keys_or_env() {
        let new_key = [1u8; 32];
        let tmp = dir_with(
            "audit",
            &[
                ("k2", &new_key[..]),
                ("k1", &[2u8; 32][..]),
                ("hmac", &b"0123456789abcdef\n"[..]),
            ],
        );
        let dir = SecretsDir::new(tmp.path());
        let spec = SecretsSpec {
            encryption_key_ref: Some(selector("audit", "k2")),
            hmac_key_ref: Some(selector("audit", "hmac")),
        };
        let keys = load_audit_keys(&spec, &dir, |_| None).unwrap().unwrap();
        assert_eq!(keys.key_id(), "k2");
        let shown = format!("{keys:?}");
        assert!(
            shown.contains("\"k1\"") && !shown.contains("hmac\""),
            "{shown}"
        );
        let old = AuditKeys::new("k1", &[2u8; 32], b"0123456789abcdef").unwrap();
        let token = old.encrypt_user_id(5, 6).unwrap();
        assert_eq!(keys.decrypt_user_id(&token, 6).unwrap(), 5);

        let half = SecretsSpec {
            encryption_key_ref: Some(selector("audit", "k2")),
            hmac_key_ref: None,
        };
        let msg = format!("{:#}", load_audit_keys(&half, &dir, |_| None).unwrap_err());
        assert!(msg.contains("hmacKeyRef"), "{msg}");
        let missing = SecretsSpec {
            encryption_key_ref: Some(selector("audit", "k9")),
            hmac_key_ref: Some(selector("audit", "hmac")),
        };
        let msg = format!(
            "{:#}",
            load_audit_keys(&missing, &dir, |_| None).unwrap_err()
        );
        assert!(msg.contains("has no key 'k9'"), "{msg}");
        assert!(
            load_audit_keys(&SecretsSpec::default(), &dir, |_| None)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::new(b"hunter2".to_vec());
        let shown = format!("{v:?} {:?}", (String::from("k"), v.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
