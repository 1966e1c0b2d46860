//! Fresh identifiers and secrets: one of the edges where randomness and the clock enter (the
//! other is the request frame's ids). Handlers, bootstrap and workers mint here and pass the
//! results into a command, so `domain` stays pure and its tests choose every id and secret.

use crate::domain::ids;
use crate::domain::secret::Secret;

/// A new id of the given kind (`org`, `tok`, `key`, `dev`, `req`, …), sortable by creation.
pub fn id(kind: &str) -> String {
    ids::with_ulid(kind, ulid::Ulid::new())
}

/// A new secret such as `qz_…` (tokens), `qzk_…` (pre-auth keys) or `qzn_…` (nodes): the prefix
/// and 256 bits from the OS random source.
pub fn secret(kind_prefix: &str) -> Secret {
    let mut raw = [0u8; 32];
    // Without the OS random source no secret can be issued safely; there is nothing to degrade to.
    getrandom::fill(&mut raw).expect("the OS random source works");
    Secret::from_random(kind_prefix, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_have_the_shape_the_domain_checks() {
        let id = id("dev");
        assert!(ids::looks_like("dev", &id), "{id}");
        assert!(!ids::looks_like("key", &id));
    }

    #[test]
    fn minted_secrets_differ_and_carry_their_prefix() {
        let (a, b) = (secret("qzk_"), secret("qzk_"));
        assert_ne!(a.value, b.value);
        assert!(a.value.starts_with("qzk_"));
        assert_eq!(a.hash, crate::domain::secret::hash(&a.value));
    }
}
