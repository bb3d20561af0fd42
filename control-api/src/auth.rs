//! The admin bearer token, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The expected token, kept only as its SHA-256: comparing digests in constant time also
/// hides the token's length, and the clear token never sits in memory past startup.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        AdminToken { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Checks an `Authorization` header value (`Bearer <token>`).
    pub fn verify_header(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else { return false };
        let Some(token) = value.strip_prefix(b"Bearer ").or_else(|| value.strip_prefix(b"bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token).into();
        digest.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        let t = AdminToken::new("s3cret");
        assert!(t.verify_header(Some(b"Bearer s3cret")));
        assert!(!t.verify_header(Some(b"Bearer s3cret ")));
        assert!(!t.verify_header(Some(b"Bearer s3cre")));
        assert!(!t.verify_header(Some(b"Basic s3cret")));
        assert!(!t.verify_header(Some(b"s3cret")));
        assert!(!t.verify_header(None));
    }
}
