//! The audit record of a decision (SPEC §10, seed §11.2) with personal data
//! protected: pure code, no I/O (keys arrive as bytes; see `secrets::load_audit_keys`).
//!
//! - `ip_address`: IPv4 keeps its first two octets (`10.1.*.*`), IPv6 its first two
//!   groups (`2001:db8:*:*:*:*:*:*`), anything else is `***.***.***.***`.
//! - `device_id`: HMAC-SHA256 with the HMAC key, lower-case hex.
//! - `user_id`: AES-256-GCM-SIV (RFC 8452) under the encryption key, written as
//!   `<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`; the key id is the key's name in
//!   its Secret, so keys rotate. The associated data binds the ciphertext to its key
//!   id and transaction_id. `user_pseudonym` beside it is a keyed hash (HMAC-SHA256
//!   of `riskpipe/user/v1\0<user_id>`), equal for equal users, for joins.
//! - The nonce is derived, not random: the first 12 bytes of HMAC-SHA256(HMAC key,
//!   `riskpipe/audit/nonce/v1\0<key id>\0<transaction_id><user_id>`). GCM-SIV is
//!   nonce-misuse resistant (a repeated nonce reveals only that the very same
//!   plaintext was encrypted), and the nonce is unique per key id, transaction and
//!   user, so a replay after a crash writes byte-identical records (exactly once,
//!   idempotent downstream) while two transactions of one user still get unrelated
//!   ciphertexts (only the pseudonym links them, by design). No RNG on the hot path.
//! - `log_id` is derived from the pipeline and transaction_id (SHA-256, 63 bits), and
//!   `operation_time` is the transaction's time (as the seed does), so the whole
//!   record is a function of the transaction.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use riskpipe_engine::decision::write_json_str;
use riskpipe_engine::timefmt::write_wall_time;
use riskpipe_engine::{Decision, Transaction};
use sha2::{Digest, Sha256};

/// Length of the AES-256 key.
pub const ENCRYPTION_KEY_LEN: usize = 32;
/// Shortest HMAC key accepted.
pub const MIN_HMAC_KEY_LEN: usize = 16;
/// Local mode: the 32-byte encryption key (raw, 64 hex digits or base64), used when
/// the manifest has no `spec.secrets.encryptionKeyRef`.
pub const ENV_ENCRYPTION_KEY: &str = "RISKPIPE_AUDIT_ENCRYPTION_KEY";
/// Local mode: the id written with the ciphertext (default [`DEFAULT_LOCAL_KEY_ID`]).
pub const ENV_ENCRYPTION_KEY_ID: &str = "RISKPIPE_AUDIT_ENCRYPTION_KEY_ID";
/// Local mode: the HMAC key (its bytes, at least 16), used when the manifest has no
/// `spec.secrets.hmacKeyRef`.
pub const ENV_HMAC_KEY: &str = "RISKPIPE_AUDIT_HMAC_KEY";
/// The key id of an encryption key from [`ENV_ENCRYPTION_KEY`] without an id.
pub const DEFAULT_LOCAL_KEY_ID: &str = "local";
/// What an address that is neither IPv4 nor IPv6 is masked to.
pub const MASKED_UNKNOWN_IP: &str = "***.***.***.***";

type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 12;
const NONCE_DOMAIN: &[u8] = b"riskpipe/audit/nonce/v1\0";
const AAD_DOMAIN: &[u8] = b"riskpipe/audit/user_id/v1\0";
const PSEUDONYM_DOMAIN: &[u8] = b"riskpipe/user/v1\0";
const LOG_ID_DOMAIN: &[u8] = b"riskpipe/audit/log_id/v1\0";

/// Decodes a 32-byte encryption key: exactly 32 raw bytes, or (line end trimmed) 64
/// hex digits, or base64 of 32 bytes (`openssl rand -base64 32`). `what` names the
/// key in the error; the value is never shown.
pub fn parse_encryption_key(material: &[u8], what: &str) -> Result<[u8; ENCRYPTION_KEY_LEN]> {
    if let Ok(raw) = <[u8; ENCRYPTION_KEY_LEN]>::try_from(material) {
        return Ok(raw);
    }
    let text = trim_line_end(material);
    let decoded = if text.len() == 2 * ENCRYPTION_KEY_LEN && text.iter().all(u8::is_ascii_hexdigit)
    {
        hex_decode(text)
    } else {
        BASE64.decode(text).ok()
    };
    decoded
        .and_then(|d| <[u8; ENCRYPTION_KEY_LEN]>::try_from(d.as_slice()).ok())
        .with_context(|| {
            format!(
                "{what} must be a 32-byte key: 32 raw bytes, 64 hex digits or base64 \
                 (e.g. `openssl rand -base64 32`); it has {} bytes that are none of these",
                material.len()
            )
        })
}

/// The keys of the audit log. `Debug` shows the key ids only.
#[derive(Clone)]
pub struct AuditKeys {
    key_id: String,
    cipher: Aes256GcmSiv,
    retired: Vec<(String, Aes256GcmSiv)>,
    hmac: HmacSha256,
}

impl fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKeys")
            .field("key_id", &self.key_id)
            .field(
                "retired_key_ids",
                &self.retired.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("keys", &"[REDACTED]")
            .finish()
    }
}

impl AuditKeys {
    /// Keys from their material: `key_id` names the encryption key (its name in the
    /// Secret), `encryption_key` as [`parse_encryption_key`] reads it, `hmac_key` its
    /// bytes with a trailing line end trimmed.
    pub fn new(key_id: &str, encryption_key: &[u8], hmac_key: &[u8]) -> Result<Self> {
        check_key_id(key_id)?;
        let key = parse_encryption_key(encryption_key, &format!("encryption key '{key_id}'"))?;
        let hmac_key = trim_line_end(hmac_key);
        if hmac_key.len() < MIN_HMAC_KEY_LEN {
            bail!(
                "the HMAC key must have at least {MIN_HMAC_KEY_LEN} bytes; it has {}",
                hmac_key.len()
            );
        }
        Ok(AuditKeys {
            key_id: key_id.to_owned(),
            cipher: cipher(&key)?,
            retired: Vec::new(),
            hmac: <HmacSha256 as Mac>::new_from_slice(hmac_key)
                .context("initialising HMAC-SHA256")?,
        })
    }

    /// Adds an older encryption key that [`AuditKeys::decrypt_user_id`] accepts
    /// (rotation: records written before keep their key id).
    pub fn with_retired_key(mut self, key_id: &str, encryption_key: &[u8]) -> Result<Self> {
        check_key_id(key_id)?;
        let key = parse_encryption_key(encryption_key, &format!("encryption key '{key_id}'"))?;
        self.retired.push((key_id.to_owned(), cipher(&key)?));
        Ok(self)
    }

    /// Local mode: keys from [`ENV_ENCRYPTION_KEY`], [`ENV_ENCRYPTION_KEY_ID`] and
    /// [`ENV_HMAC_KEY`] as `var` returns them (e.g. `|k| std::env::var(k).ok()`).
    /// `None` when neither key is set; an error when only one is.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        match (var(ENV_ENCRYPTION_KEY), var(ENV_HMAC_KEY)) {
            (None, None) => Ok(None),
            (Some(enc), Some(mac)) => {
                let id = var(ENV_ENCRYPTION_KEY_ID).unwrap_or_else(|| DEFAULT_LOCAL_KEY_ID.into());
                Self::new(&id, enc.as_bytes(), mac.as_bytes())
                    .with_context(|| {
                        format!("audit keys from {ENV_ENCRYPTION_KEY} and {ENV_HMAC_KEY}")
                    })
                    .map(Some)
            }
            (Some(_), None) => {
                bail!("{ENV_ENCRYPTION_KEY} is set but {ENV_HMAC_KEY} is not: set both")
            }
            (None, Some(_)) => {
                bail!("{ENV_HMAC_KEY} is set but {ENV_ENCRYPTION_KEY} is not: set both")
            }
        }
    }

    /// The id of the key new records are encrypted with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// HMAC-SHA256 of `data`, lower-case hex (the `device_id` of the record).
    pub fn hash_hex(&self, data: &[u8]) -> String {
        hex(&self.mac(&[data]))
    }

    /// The user's pseudonym: equal for equal users, unlinkable without the key.
    pub fn user_pseudonym(&self, user_id: i64) -> String {
        let mut buf = itoa::Buffer::new();
        hex(&self.mac(&[PSEUDONYM_DOMAIN, buf.format(user_id).as_bytes()]))
    }

    /// `<key id>:<base64(nonce ‖ ciphertext)>` of the user_id, bound to the transaction.
    pub fn encrypt_user_id(&self, user_id: i64, transaction_id: i64) -> Result<String> {
        let nonce_full = self.mac(&[
            NONCE_DOMAIN,
            self.key_id.as_bytes(),
            b"\0",
            &transaction_id.to_be_bytes(),
            &user_id.to_be_bytes(),
        ]);
        let nonce = &nonce_full[..NONCE_LEN];
        let mut buf = itoa::Buffer::new();
        let aad = aad(&self.key_id, transaction_id);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: buf.format(user_id).as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("AES-256-GCM-SIV encryption of user_id failed"))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!("{}:{}", self.key_id, BASE64.encode(blob)))
    }

    /// Reverses [`AuditKeys::encrypt_user_id`] with the key the token names (current
    /// or retired); fails for an unknown key id, a wrong key, another transaction's
    /// token or any tampering.
    pub fn decrypt_user_id(&self, token: &str, transaction_id: i64) -> Result<i64> {
        let (key_id, b64) = token
            .split_once(':')
            .context("an encrypted user_id is `<key id>:<base64>`")?;
        let cipher = std::iter::once((&self.key_id, &self.cipher))
            .chain(self.retired.iter().map(|(id, c)| (id, c)))
            .find(|(id, _)| id.as_str() == key_id)
            .map(|(_, c)| c)
            .with_context(|| format!("no encryption key with id '{key_id}'"))?;
        let blob = BASE64
            .decode(b64)
            .context("the encrypted user_id is not base64")?;
        if blob.len() <= NONCE_LEN {
            bail!("the encrypted user_id is too short");
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(key_id, transaction_id),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "the encrypted user_id does not authenticate under key '{key_id}' \
                     for transaction {transaction_id}"
                )
            })?;
        std::str::from_utf8(&plain)
            .ok()
            .and_then(|s| s.parse().ok())
            .context("the decrypted user_id is not an integer")
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.hmac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Masks an IP address (SPEC §10): IPv4 keeps two octets, IPv6 two groups.
pub fn mask_ip(ip: &str) -> String {
    if let Ok(v4) = ip.parse::<Ipv4Addr>() {
        let [a, b, _, _] = v4.octets();
        return format!("{a}.{b}.*.*");
    }
    if let Ok(v6) = ip.parse::<Ipv6Addr>() {
        let s = v6.segments();
        return format!("{:x}:{:x}:*:*:*:*:*:*", s[0], s[1]);
    }
    MASKED_UNKNOWN_IP.to_owned()
}

/// Writes audit records, one JSON object per decision.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    pipeline: String,
    system_version: String,
    keys: AuditKeys,
}

impl AuditWriter {
    /// A writer for `pipeline` stamping `system_version` (e.g. the worker's version).
    pub fn new(pipeline: &str, system_version: &str, keys: AuditKeys) -> Self {
        AuditWriter {
            pipeline: pipeline.to_owned(),
            system_version: system_version.to_owned(),
            keys,
        }
    }

    /// The keys (e.g. to decrypt in tools and tests).
    pub fn keys(&self) -> &AuditKeys {
        &self.keys
    }

    /// The record's id: the first 63 bits of SHA-256 of the pipeline and transaction_id,
    /// so the same transaction always gets the same id.
    pub fn log_id(&self, transaction_id: i64) -> i64 {
        let digest = Sha256::new()
            .chain_update(LOG_ID_DOMAIN)
            .chain_update(self.pipeline.as_bytes())
            .chain_update(b"\0")
            .chain_update(transaction_id.to_be_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) >> 1) as i64
    }

    /// Appends the audit record of `d` (the decision of `t`) as one JSON object
    /// without a trailing newline. Nothing is appended on error.
    pub fn write(&self, d: &Decision, t: &Transaction, out: &mut Vec<u8>) -> Result<()> {
        let user_id = self.keys.encrypt_user_id(d.user_id, d.transaction_id)?;
        let mut int = itoa::Buffer::new();
        let field = |out: &mut Vec<u8>, first: bool, key: &str| {
            out.extend_from_slice(if first { b"{\"" } else { b",\"" });
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
        };
        field(out, true, "log_id");
        out.extend_from_slice(int.format(self.log_id(d.transaction_id)).as_bytes());
        field(out, false, "transaction_id");
        out.extend_from_slice(int.format(d.transaction_id).as_bytes());
        field(out, false, "user_id");
        write_json_str(&user_id, out);
        field(out, false, "user_pseudonym");
        write_json_str(&self.keys.user_pseudonym(d.user_id), out);
        field(out, false, "operation_type");
        write_json_str("RISK_ASSESSMENT", out);
        field(out, false, "risk_decision");
        write_json_str(d.final_decision.as_str(), out);
        field(out, false, "risk_score");
        out.extend_from_slice(int.format(d.total_risk_score).as_bytes());
        field(out, false, "decision_reason");
        write_json_str(&d.risk_reasons, out);
        field(out, false, "operator_id");
        write_json_str("SYSTEM_AUTO", out);
        field(out, false, "operation_time");
        out.push(b'"');
        write_wall_time(d.event_wall_ms, out);
        out.push(b'"');
        field(out, false, "ip_address");
        match t.ip_address.as_deref() {
            Some(ip) => write_json_str(&mask_ip(ip), out),
            None => out.extend_from_slice(b"null"),
        }
        field(out, false, "device_id");
        match t.device_id.as_deref() {
            Some(dev) => write_json_str(&self.keys.hash_hex(dev.as_bytes()), out),
            None => out.extend_from_slice(b"null"),
        }
        field(out, false, "system_version");
        write_json_str(&self.system_version, out);
        out.push(b'}');
        Ok(())
    }
}

fn cipher(key: &[u8; ENCRYPTION_KEY_LEN]) -> Result<Aes256GcmSiv> {
    Aes256GcmSiv::new_from_slice(key).map_err(|_| anyhow::anyhow!("AES-256-GCM-SIV key setup"))
}

fn aad(key_id: &str, transaction_id: i64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + key_id.len() + 9);
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&transaction_id.to_be_bytes());
    aad
}

/// Key ids are Secret key names: `[-._a-zA-Z0-9]+` (so never contain `:`).
fn check_key_id(key_id: &str) -> Result<()> {
    if key_id.is_empty()
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        bail!("key id '{key_id}' must be letters, digits, '-', '_' or '.' (a Secret key name)");
    }
    Ok(())
}

fn trim_line_end(bytes: &[u8]) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &bytes[..end]
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskpipe_engine::parse_transaction;
    use riskpipe_engine::{Engine, EngineConfig, MemoryStore, StaticDimensions, Zone};

    const ENC: [u8; 32] = [7; 32];
    const MAC: &[u8] = b"an hmac key of 32 bytes length!!";

    fn keys() -> AuditKeys {
        AuditKeys::new("k2026", &ENC, MAC).unwrap()
    }

    #[test]
    fn masking_table() {
        for (ip, masked) in [
            ("10.1.2.3", "10.1.*.*"),
            ("192.168.0.1", "192.168.*.*"),
            ("0.0.0.0", "0.0.*.*"),
            ("2001:db8::1", "2001:db8:*:*:*:*:*:*"),
            ("FE80:0:0:0:202:B3FF:FE1E:8329", "fe80:0:*:*:*:*:*:*"),
            ("::1", "0:0:*:*:*:*:*:*"),
            ("::ffff:10.1.2.3", "0:0:*:*:*:*:*:*"),
            ("10.1.2", MASKED_UNKNOWN_IP),
            ("10.1.2.3.4", MASKED_UNKNOWN_IP),
            ("256.1.2.3", MASKED_UNKNOWN_IP),
            (" 10.1.2.3", MASKED_UNKNOWN_IP),
            ("fe80::1%eth0", MASKED_UNKNOWN_IP),
            ("not an ip", MASKED_UNKNOWN_IP),
            ("", MASKED_UNKNOWN_IP),
        ] {
            assert_eq!(mask_ip(ip), masked, "{ip}");
        }
    }

    #[test]
    fn hmac_known_vector_rfc4231_case1() {
        let k = AuditKeys::new("k", &ENC, &[0x0b; 20]).unwrap();
        assert_eq!(
            k.hash_hex(b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn encryption_round_trip_with_key_id_and_rotation() {
        let k = keys();
        let token = k.encrypt_user_id(1_234_567, 42).unwrap();
        assert!(token.starts_with("k2026:"), "{token}");
        assert!(!token.contains("1234567"));
        assert_eq!(k.decrypt_user_id(&token, 42).unwrap(), 1_234_567);
        // Deterministic: a replay writes the same bytes; another transaction does not.
        assert_eq!(k.encrypt_user_id(1_234_567, 42).unwrap(), token);
        assert_ne!(k.encrypt_user_id(1_234_567, 43).unwrap(), token);
        // After rotation the old key still decrypts what it wrote.
        let rotated = AuditKeys::new("k2027", &[9; 32], MAC)
            .unwrap()
            .with_retired_key("k2026", &ENC)
            .unwrap();
        assert_eq!(rotated.decrypt_user_id(&token, 42).unwrap(), 1_234_567);
        assert!(rotated.encrypt_user_id(1, 1).unwrap().starts_with("k2027:"));
    }

    #[test]
    fn wrong_key_other_transaction_and_tampering_fail() {
        let token = keys().encrypt_user_id(99, 7).unwrap();
        let other = AuditKeys::new("k2026", &[8; 32], MAC).unwrap();
        assert!(other.decrypt_user_id(&token, 7).is_err());
        assert!(keys().decrypt_user_id(&token, 8).is_err());
        let unknown = AuditKeys::new("other", &ENC, MAC).unwrap();
        let msg = format!("{:#}", unknown.decrypt_user_id(&token, 7).unwrap_err());
        assert!(msg.contains("no encryption key with id 'k2026'"), "{msg}");
        let (id, b64) = token.split_once(':').unwrap();
        let mut blob = BASE64.decode(b64).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!("{id}:{}", BASE64.encode(blob));
        assert!(keys().decrypt_user_id(&tampered, 7).is_err());
    }

    #[test]
    fn key_formats() {
        let raw = [0xab_u8; 32];
        let hex_text = format!("{}\n", hex(&raw));
        let b64_text = format!("{}\n", BASE64.encode(raw));
        assert_eq!(parse_encryption_key(&raw, "k").unwrap(), raw);
        assert_eq!(parse_encryption_key(hex_text.as_bytes(), "k").unwrap(), raw);
        assert_eq!(parse_encryption_key(b64_text.as_bytes(), "k").unwrap(), raw);
        let msg = format!(
            "{:#}",
            parse_encryption_key(b"short-secret", "key 'k1'").unwrap_err()
        );
        assert!(msg.contains("key 'k1' must be a 32-byte key"), "{msg}");
        assert!(!msg.contains("short-secret"), "{msg}");
        assert!(AuditKeys::new("k", &raw, b"too short\n").is_err());
        assert!(AuditKeys::new("a:b", &raw, MAC).is_err());
    }

    #[test]
    fn env_keys_for_local_mode() {
        let vars = |enc: Option<&str>, mac: Option<&str>| {
            let enc = enc.map(str::to_owned);
            let mac = mac.map(str::to_owned);
            move |k: &str| match k {
                ENV_ENCRYPTION_KEY => enc.clone(),
                ENV_HMAC_KEY => mac.clone(),
                _ => None,
            }
        };
        assert!(AuditKeys::from_env(vars(None, None)).unwrap().is_none());
        let b64 = BASE64.encode(ENC);
        let k = AuditKeys::from_env(vars(Some(&b64), Some("0123456789abcdef")))
            .unwrap()
            .unwrap();
        assert_eq!(k.key_id(), DEFAULT_LOCAL_KEY_ID);
        let msg = format!(
            "{:#}",
            AuditKeys::from_env(vars(Some(&b64), None)).unwrap_err()
        );
        assert!(msg.contains(ENV_HMAC_KEY), "{msg}");
    }

    fn decided(json: &str) -> (Decision, Transaction) {
        let cfg = EngineConfig::default();
        let tx = parse_transaction(json.as_bytes(), Zone::Utc).unwrap();
        let d = Engine::new(cfg)
            .decide(
                &tx,
                &StaticDimensions::default(),
                &mut MemoryStore::default(),
            )
            .unwrap();
        (d, tx)
    }

    #[test]
    fn record_fields_and_no_secrets_in_output() {
        let (d, tx) = decided(
            r#"{"transaction_id":42,"user_id":1234567,"amount":"12.50","merchant_id":5,
                "transaction_time":"2026-11-28 10:11:12.345","ip_address":"10.1.2.3",
                "device_id":"dev-abc","location":"Taipei"}"#,
        );
        let w = AuditWriter::new("p1", "0.1.0", keys());
        let mut out = Vec::new();
        w.write(&d, &tx, &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["log_id"].as_i64().unwrap(), w.log_id(42));
        assert!(v["log_id"].as_i64().unwrap() >= 0);
        assert_eq!(v["transaction_id"], 42);
        let token = v["user_id"].as_str().unwrap();
        assert_eq!(w.keys().decrypt_user_id(token, 42).unwrap(), 1_234_567);
        assert_eq!(v["user_pseudonym"], keys().user_pseudonym(1_234_567));
        assert_eq!(v["operation_type"], "RISK_ASSESSMENT");
        assert_eq!(v["risk_decision"], d.final_decision.as_str());
        assert_eq!(v["risk_score"], d.total_risk_score);
        assert_eq!(v["decision_reason"], d.risk_reasons.as_str());
        assert_eq!(v["operator_id"], "SYSTEM_AUTO");
        assert_eq!(v["operation_time"], "2026-11-28 10:11:12.345");
        assert_eq!(v["ip_address"], "10.1.*.*");
        assert_eq!(v["device_id"], keys().hash_hex(b"dev-abc"));
        assert_eq!(v["system_version"], "0.1.0");
        assert_eq!(v.as_object().unwrap().len(), 13);
        // No clear personal data, no key material.
        for leak in ["1234567", "dev-abc", "10.1.2.3"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        for key in [
            hex(&ENC),
            BASE64.encode(ENC),
            String::from_utf8_lossy(MAC).into(),
        ] {
            assert!(!text.contains(&key), "key material in {text}");
        }
        let shown = format!("{w:?}");
        assert!(
            !shown.contains(&hex(&ENC)) && !shown.contains("an hmac key"),
            "{shown}"
        );
        assert!(!shown.contains("[7, 7, 7"), "{shown}");
        // A replay writes the same bytes.
        let mut again = Vec::new();
        w.write(&d, &tx, &mut again).unwrap();
        assert_eq!(again, out);
        // Another pipeline gets other log ids.
        assert_ne!(
            AuditWriter::new("p2", "0.1.0", keys()).log_id(42),
            w.log_id(42)
        );
    }

    #[test]
    fn absent_ip_and_device_are_null() {
        let (d, tx) = decided(
            r#"{"transaction_id":1,"user_id":2,"amount":1,"merchant_id":3,
                "transaction_time":"2026-11-28 10:11:12"}"#,
        );
        let mut out = Vec::new();
        AuditWriter::new("p", "v", keys())
            .write(&d, &tx, &mut out)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["ip_address"].is_null());
        assert!(v["device_id"].is_null());
    }
}
