//! Keys and tokens: random, shown once, stored only as SHA-256.
//!
//! Lookups go by the hash of the presented secret, so the database never compares
//! secrets themselves and response timing reveals nothing about a stored one.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// 32 random bytes from the OS-seeded CSPRNG, hex encoded.
pub fn new_secret() -> String {
    random_hex(32)
}

/// Client keys identify an app to its own clients and ship inside apps, so they are not
/// secret; 16 random bytes keep them unguessable all the same.
pub fn new_client_key() -> String {
    random_hex(16)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            hex::encode(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
