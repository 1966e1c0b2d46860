//! Resource ids: a short type prefix and a ULID, e.g. `tok_01j9z3…`; sortable by creation.
//! New ones are minted at the edge ([`crate::mint::id`]); this module only spells and checks them.

/// The id of the given kind (`org`, `tok`, `key`, `dev`, …) for a ULID.
pub fn with_ulid(kind: &str, ulid: ulid::Ulid) -> String {
    format!("{kind}_{}", ulid.to_string().to_ascii_lowercase())
}

/// True if `id` has the shape of an id of this kind (used to reject garbage early).
pub fn looks_like(kind: &str, id: &str) -> bool {
    id.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|u| u.len() == 26 && u.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_kind_and_a_lowercase_ulid() {
        let id = with_ulid("tok", ulid::Ulid::from_parts(1_764_000_000_000, 7));
        assert_eq!(id, "tok_01kav9ft000000000000000007");
        assert!(looks_like("tok", &id));
        assert!(!looks_like("tok", "tok_short"));
        assert!(!looks_like("key", &id));
    }
}
