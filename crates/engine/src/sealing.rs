//! Secrets at rest: users' secrets and git credentials are sealed with XChaCha20-Poly1305
//! (RustCrypto's `chacha20poly1305`, audited) under the installation's key before they
//! reach the store. Each sealed value is bound to what it is (its kind, owner and name,
//! as associated data), so a row copied onto another user's or another name does not
//! open. The key is `secrets.key`, or a file in the data directory made on first start
//! (readable by its owner only; replicas must share one).

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The first byte of every sealed value: the format, so it can change later.
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<hidden>)")
    }
}

impl SecretKey {
    /// 64 hexadecimal digits.
    pub fn parse(text: &str) -> Option<SecretKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(SecretKey(bytes.try_into().ok()?))
    }

    /// A key of its own for `purpose`, derived from this one (HMAC-SHA256): what replicas
    /// sharing `secrets.key` also share, such as the preview passes' signing key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The key in `path`, made (random, mode 0600) when there is none yet.
    pub fn load_or_make(path: &Path) -> std::io::Result<SecretKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => SecretKey::parse(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the key file does not hold 64 hex digits",
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut file =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                file.write_all(hex::encode(key).as_bytes())?;
                file.sync_all()?;
                Ok(SecretKey(key))
            }
            Err(error) => Err(error),
        }
    }
}

/// Seals and opens values with the installation's key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

/// A sealed value that does not open: another key, another owner or name, or changed.
#[derive(Debug, thiserror::Error)]
#[error("a sealed value does not open with this installation's key")]
pub struct Unsealable;

impl Sealer {
    pub fn new(key: &SecretKey) -> Sealer {
        Sealer { cipher: XChaCha20Poly1305::new((&key.0).into()) }
    }

    /// `plain`, sealed for `context` (such as `secret:<user id>:<name>`).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 seals any message that fits in memory");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        let (format, rest) = sealed.split_first().ok_or(Unsealable)?;
        if *format != FORMAT || rest.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, message) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: message, aad: context.as_bytes() })
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_context_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::load_or_make(&dir.path().join("secret.key")).unwrap();
        assert_eq!(SecretKey::load_or_make(&dir.path().join("secret.key")).unwrap(), key, "made once");
        let sealer = Sealer::new(&key);
        let sealed = sealer.seal("secret:u_1:TOKEN", b"sk-live-123");
        assert!(!sealed.windows(11).any(|window| window == b"sk-live-123"), "not the plain text");
        assert_eq!(sealer.open("secret:u_1:TOKEN", &sealed).unwrap(), b"sk-live-123");
        assert!(sealer.open("secret:u_2:TOKEN", &sealed).is_err(), "another owner");
        let other = Sealer::new(&SecretKey::parse(&"ab".repeat(32)).unwrap());
        assert!(other.open("secret:u_1:TOKEN", &sealed).is_err(), "another key");
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(sealer.open("secret:u_1:TOKEN", &changed).is_err());
        assert_ne!(sealer.seal("c", b"x"), sealer.seal("c", b"x"), "a fresh nonce each time");
        assert!(!format!("{key:?}").contains(&hex::encode(&key.0[..4])));
    }

    #[test]
    fn key_text_is_64_hex_digits() {
        assert!(SecretKey::parse(&"0f".repeat(32)).is_some());
        for bad in ["", "xyz", &"0f".repeat(31), &"0f".repeat(33)] {
            assert!(SecretKey::parse(bad).is_none(), "{bad}");
        }
    }
}
