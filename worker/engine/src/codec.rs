//! A compact, versioned binary form of window state for the state store.
//!
//! Entries are written oldest first; times and ids as zig-zag varint deltas from
//! the previous entry, amounts as varints, and each hash only when present (a flag
//! byte says which). Aggregates are not stored: they are rebuilt on load.

use crate::config::WindowConfig;
use crate::merchant::{MerchantEntry, MerchantState};
use crate::window::{Entry, UserState};

const USER_FORMAT: u8 = 1;
const MERCHANT_FORMAT: u8 = 1;

/// Stored state that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Unknown format version (written by a newer riskpipe?).
    #[error("state format {0} is not supported by this riskpipe version")]
    Version(u8),
    /// Ends early or holds an impossible value.
    #[error("state record is truncated or corrupt")]
    Corrupt,
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.bytes.split_first().ok_or(CodecError::Corrupt)?;
        self.bytes = rest;
        Ok(b)
    }
    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt)
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        let (head, rest) = self.bytes.split_at_checked(8).ok_or(CodecError::Corrupt)?;
        self.bytes = rest;
        let mut b = [0u8; 8];
        b.copy_from_slice(head);
        Ok(u64::from_le_bytes(b))
    }
}

/// Appends a user's state.
pub fn encode_user(state: &UserState, out: &mut Vec<u8>) {
    out.push(USER_FORMAT);
    put_varint(state.entries().len() as u64, out);
    let (mut time, mut id) = (0i64, 0i64);
    for e in state.entries() {
        put_varint(zigzag(e.time.wrapping_sub(time)), out);
        put_varint(zigzag(e.id.wrapping_sub(id)), out);
        put_varint(e.cents as u64, out);
        let flags =
            u8::from(e.ip != 0) | u8::from(e.device != 0) << 1 | u8::from(e.location != 0) << 2;
        out.push(flags);
        for h in [e.ip, e.device, e.location] {
            if h != 0 {
                out.extend_from_slice(&h.to_le_bytes());
            }
        }
        (time, id) = (e.time, e.id);
    }
}

/// Reads a user's state written by [`encode_user`].
pub fn decode_user(bytes: &[u8], cfg: &WindowConfig) -> Result<UserState, CodecError> {
    let mut r = Reader { bytes };
    let version = r.byte()?;
    if version != USER_FORMAT {
        return Err(CodecError::Version(version));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| CodecError::Corrupt)?;
    if n > bytes.len() {
        return Err(CodecError::Corrupt);
    }
    let mut entries = Vec::with_capacity(n);
    let (mut time, mut id) = (0i64, 0i64);
    for _ in 0..n {
        time = time.wrapping_add(unzigzag(r.varint()?));
        id = id.wrapping_add(unzigzag(r.varint()?));
        let cents = i64::try_from(r.varint()?).map_err(|_| CodecError::Corrupt)?;
        let flags = r.byte()?;
        let mut hashes = [0u64; 3];
        for (i, h) in hashes.iter_mut().enumerate() {
            if flags & (1 << i) != 0 {
                *h = r.u64()?;
            }
        }
        entries.push(Entry {
            time,
            id,
            cents,
            ip: hashes[0],
            device: hashes[1],
            location: hashes[2],
        });
    }
    if !r.bytes.is_empty() {
        return Err(CodecError::Corrupt);
    }
    Ok(UserState::from_entries(entries, cfg))
}

/// Appends a merchant's state.
pub fn encode_merchant(state: &MerchantState, out: &mut Vec<u8>) {
    out.push(MERCHANT_FORMAT);
    put_varint(state.entries().len() as u64, out);
    let (mut time, mut id) = (0i64, 0i64);
    for e in state.entries() {
        put_varint(zigzag(e.time.wrapping_sub(time)), out);
        put_varint(zigzag(e.id.wrapping_sub(id)), out);
        put_varint(e.cents as u64, out);
        (time, id) = (e.time, e.id);
    }
}

/// Reads a merchant's state written by [`encode_merchant`].
pub fn decode_merchant(bytes: &[u8], cfg: &WindowConfig) -> Result<MerchantState, CodecError> {
    let mut r = Reader { bytes };
    let version = r.byte()?;
    if version != MERCHANT_FORMAT {
        return Err(CodecError::Version(version));
    }
    let n = usize::try_from(r.varint()?).map_err(|_| CodecError::Corrupt)?;
    if n > bytes.len() {
        return Err(CodecError::Corrupt);
    }
    let mut entries = Vec::with_capacity(n);
    let (mut time, mut id) = (0i64, 0i64);
    for _ in 0..n {
        time = time.wrapping_add(unzigzag(r.varint()?));
        id = id.wrapping_add(unzigzag(r.varint()?));
        let cents = i64::try_from(r.varint()?).map_err(|_| CodecError::Corrupt)?;
        entries.push(MerchantEntry { time, id, cents });
    }
    if !r.bytes.is_empty() {
        return Err(CodecError::Corrupt);
    }
    Ok(MerchantState::from_entries(
        entries,
        cfg.merchant_feature_ms,
        cfg.merchant_feature_ms + cfg.allowed_lateness_ms,
    ))
}
