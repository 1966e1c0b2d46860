//! A device's public key: what identifies it in the overlay network (a WireGuard key).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// 32 bytes in standard base64 (44 characters, `=`-padded), as `wg genkey | wg pubkey` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(String);

impl PublicKey {
    pub fn parse(s: &str) -> Result<PublicKey, String> {
        let ok = s.len() == 44
            && STANDARD
                .decode(s)
                .is_ok_and(|raw| raw.len() == 32 && STANDARD.encode(&raw) == s);
        if ok {
            Ok(PublicKey(s.to_owned()))
        } else {
            Err(
                "field 'public_key' must be 32 bytes in base64 (44 characters, as `wg pubkey` \
                 prints)"
                    .into(),
            )
        }
    }

    pub fn from_bytes(raw: &[u8; 32]) -> PublicKey {
        PublicKey(STANDARD.encode(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_32_bytes_of_canonical_base64() {
        let good = STANDARD.encode([7u8; 32]);
        assert_eq!(PublicKey::parse(&good).unwrap().as_str(), good);
        for bad in [
            "",
            "pk",
            &STANDARD.encode([7u8; 31]),
            &STANDARD.encode([7u8; 33]),
            // Right length, but not base64, or with non-zero padding bits.
            "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
        ] {
            assert!(PublicKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
