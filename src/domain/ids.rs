//! Resource ids: a short type prefix and a ULID, e.g. `tok_01J9Z3…`; sortable by creation.

/// A new id of the given kind (`org`, `tok`, `key`, `dev`, …).
pub fn new_id(kind: &str) -> String {
    format!(
        "{kind}_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// True if `id` has the shape of an id of this kind (used to reject garbage early).
pub fn looks_like(kind: &str, id: &str) -> bool {
    id.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|u| u.len() == 26 && u.bytes().all(|b| b.is_ascii_alphanumeric()))
}
