//! Webhook signing secrets and the two signatures every delivery carries.
//!
//! A receiver can check a delivery two ways, so both are computed here from one secret: the
//! Standard Webhooks `webhook-signature` (HMAC over `id.timestamp.body`, which lets a receiver
//! reject replays) and the seed's `X-QuickZTNA-Signature` (HMAC over the body alone, keyed with
//! the secret exactly as it was shown). Keeping both in one file keeps their keys from drifting
//! apart. A secret never reaches Debug output or an error message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What every secret's text starts with (the Standard Webhooks symmetric-key prefix).
pub const PREFIX: &str = "whsec_";

/// A webhook signing secret: `whsec_` + standard base64 (with padding) of 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
}

/// Why a text is not a webhook secret. The messages never repeat the text: it may be a secret
/// pasted into the wrong field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_")]
    Prefix,
    #[error("a webhook secret is whsec_ followed by standard base64")]
    Base64,
    #[error("a webhook secret holds 24 to 64 bytes, not {0}")]
    Length(usize),
}

impl Secret {
    /// A new secret of 32 bytes from the operating system's generator.
    pub fn generate() -> Secret {
        let mut raw = [0u8; 32];
        // Without the OS generator no secret can be made safely; there is nothing to fall back to.
        getrandom::fill(&mut raw).expect("the operating system's random generator failed");
        Secret {
            text: format!("{PREFIX}{}", STANDARD.encode(raw)),
        }
    }

    /// Accepts `whsec_` + standard base64 of 24 to 64 bytes, the range Standard Webhooks allows.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret {
            text: text.to_owned(),
        })
    }

    /// The `whsec_…` text, to show the user once and to store encrypted.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The Standard Webhooks HMAC key: the bytes the base64 after `whsec_` stands for.
    fn key(&self) -> Vec<u8> {
        STANDARD
            .decode(&self.text[PREFIX.len()..])
            .expect("a Secret is only built from valid base64")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…redacted)")
    }
}

/// The signature headers of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The `webhook-signature` header value.
    pub standard: String,
    /// The `X-QuickZTNA-Signature` header value.
    pub quickztna: String,
}

/// Signs `body` for delivery `msg_id` at unix-seconds `timestamp` with every secret in `secrets`
/// (the current one first; during a rotation also the previous one).
pub fn sign(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> Signature {
    let standard = secrets
        .iter()
        .map(|s| {
            format!(
                "v1,{}",
                STANDARD.encode(standard_mac(s, msg_id, timestamp, body))
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let quickztna = secrets
        .iter()
        .map(|s| format!("sha256={}", hex::encode(quickztna_mac(s, body))))
        .collect::<Vec<_>>()
        .join(" ");
    Signature {
        standard,
        quickztna,
    }
}

/// Whether any `v1,` entry of a `webhook-signature` header is `secret`'s signature. Entries of
/// other versions (`v1a,` for ed25519) are skipped, as Standard Webhooks verifiers do.
pub fn verify_standard(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = standard_mac(secret, msg_id, timestamp, body);
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|given| bool::from(given.ct_eq(&expected)))
}

/// Whether any `sha256=` entry of an `X-QuickZTNA-Signature` header is `secret`'s signature.
pub fn verify_quickztna(secret: &Secret, body: &[u8], header: &str) -> bool {
    let expected = quickztna_mac(secret, body);
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("sha256="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|given| bool::from(given.ct_eq(&expected)))
}

fn standard_mac(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(&secret.key()).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Keyed with the whole `whsec_…` text: the seed tells receivers to use "the per-webhook
/// secret", and the string they were shown is the only form of it they have.
fn quickztna_mac(secret: &Secret, body: &[u8]) -> Vec<u8> {
    let mut mac =
        HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn the_standard_signature_matches_the_specs_example() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let sig = sign(&[&secret], SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_eq!(
            sig.standard,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(verify_standard(
            &secret,
            SPEC_ID,
            SPEC_TS,
            SPEC_BODY,
            &sig.standard
        ));
    }

    #[test]
    fn the_quickztna_signature_is_keyed_with_the_secret_text() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let sig = sign(&[&secret], SPEC_ID, SPEC_TS, SPEC_BODY);
        let mut mac = HmacSha256::new_from_slice(SPEC_SECRET.as_bytes()).unwrap();
        mac.update(SPEC_BODY);
        let hex = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig.quickztna, format!("sha256={hex}"));
        assert_eq!(sig.quickztna.len(), "sha256=".len() + 64);
        assert!(verify_quickztna(&secret, SPEC_BODY, &sig.quickztna));
    }

    #[test]
    fn generated_secrets_are_32_bytes_and_distinct() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.key().len(), 32);
        assert_eq!(a.expose().len(), PREFIX.len() + 44);
        assert!(a.expose().ends_with('='));
        assert_eq!(Secret::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn parse_refuses_what_is_not_a_secret() {
        assert_eq!(Secret::parse("MfKQ9r8GKYqrTwjU"), Err(SecretError::Prefix));
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::Base64));
        let short = format!("whsec_{}", STANDARD.encode([1u8; 23]));
        assert_eq!(Secret::parse(&short), Err(SecretError::Length(23)));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        assert_eq!(Secret::parse(&long), Err(SecretError::Length(65)));
        let longest = format!("whsec_{}", STANDARD.encode([1u8; 64]));
        assert!(Secret::parse(&longest).is_ok());
    }

    #[test]
    fn a_rotation_sends_two_signatures_that_each_verify() {
        let new = Secret::generate();
        let old = Secret::generate();
        let sig = sign(&[&new, &old], "msg_1", 1_700_000_000, b"{}");
        assert_eq!(sig.standard.split(' ').count(), 2);
        assert_eq!(sig.quickztna.split(' ').count(), 2);
        assert!(sig.standard.split(' ').all(|e| e.starts_with("v1,")));
        assert!(sig.quickztna.split(' ').all(|e| e.starts_with("sha256=")));
        for secret in [&new, &old] {
            assert!(verify_standard(
                secret,
                "msg_1",
                1_700_000_000,
                b"{}",
                &sig.standard
            ));
            assert!(verify_quickztna(secret, b"{}", &sig.quickztna));
        }
        let stranger = Secret::generate();
        assert!(!verify_standard(
            &stranger,
            "msg_1",
            1_700_000_000,
            b"{}",
            &sig.standard
        ));
        assert!(!verify_quickztna(&stranger, b"{}", &sig.quickztna));
    }

    #[test]
    fn tampering_with_body_timestamp_or_id_fails_verification() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let sig = sign(&[&secret], SPEC_ID, SPEC_TS, SPEC_BODY);
        let body = br#"{"test": 2432232315}"#;
        assert!(!verify_standard(
            &secret,
            SPEC_ID,
            SPEC_TS,
            body,
            &sig.standard
        ));
        assert!(!verify_standard(
            &secret,
            SPEC_ID,
            SPEC_TS + 1,
            SPEC_BODY,
            &sig.standard
        ));
        assert!(!verify_standard(
            &secret,
            "msg_other",
            SPEC_TS,
            SPEC_BODY,
            &sig.standard
        ));
        assert!(!verify_quickztna(&secret, body, &sig.quickztna));
        assert!(!verify_standard(&secret, SPEC_ID, SPEC_TS, SPEC_BODY, ""));
        assert!(!verify_quickztna(&secret, SPEC_BODY, "sha256=zz"));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let shown = format!("{secret:?} {:?}", vec![secret.clone()]);
        assert!(shown.contains("Secret(whsec_…redacted)"));
        assert!(!shown.contains("MfKQ9r8GKYqrTwjU"));
        let err = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("MfKQ9r8"));
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            id in "[A-Za-z0-9_]{1,40}",
            timestamp in any::<i64>(),
            rotating in any::<bool>(),
        ) {
            let current = Secret::generate();
            let previous = Secret::generate();
            let secrets: Vec<&Secret> =
                if rotating { vec![&current, &previous] } else { vec![&current] };
            let sig = sign(&secrets, &id, timestamp, &body);
            for s in &secrets {
                prop_assert!(verify_standard(s, &id, timestamp, &body, &sig.standard));
                prop_assert!(verify_quickztna(s, &body, &sig.quickztna));
            }
            prop_assert!(!verify_standard(&current, &id, timestamp.wrapping_add(1), &body, &sig.standard));
        }
    }
}
