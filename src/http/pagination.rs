//! Cursor pagination for list endpoints: `?limit=` and `?cursor=`, the `{items, next_cursor}`
//! envelope, sealed cursors and a keyset helper.
//!
//! Cursors are stateless, so they survive restarts and never expire: a cursor is the position of
//! the last item served (its sort key and id), plus the organization and a hash of the query it
//! belongs to, MACed with the server's [`CursorKey`] and encoded as unpadded base64url. A client
//! can neither forge a position, nor reuse a cursor with another organization, filter or sort.
//! Keyset positions (rather than offsets) keep pages stable while items are added or removed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::problem::Problem;

/// Page size when the client sends no `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 200;

/// Longest cursor we try to decode; real ones are ~100–200 characters.
const MAX_CURSOR_LEN: usize = 4096;
/// Cursor format version, the first payload byte.
const CURSOR_VERSION: u8 = 1;
/// Bytes of the HMAC-SHA256 tag kept in a cursor.
const TAG_LEN: usize = 16;
/// Bytes of SHA-256(binding) kept in a cursor.
const BINDING_HASH_LEN: usize = 16;

/// The validated `limit` and `cursor` query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageParams {
    /// Items per page, 1..=200.
    pub limit: usize,
    /// The opaque cursor from a previous page's `next_cursor`; `None` for the first page.
    pub cursor: Option<String>,
}

/// One page of a list: the items and the cursor of the next page (`null` on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page, in the list's order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` when there are no more items.
    pub next_cursor: Option<String>,
}

/// The secret that seals cursors. Keep it stable across restarts (cursors must survive them).
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

/// Where a page ended: the last item's sort value and id (ids break ties between equal sort
/// values, so positions are unique).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CursorPosition {
    /// The last item's sort value, as an order-preserving string.
    pub sort_key: String,
    /// The last item's id.
    pub id: String,
}

impl PageParams {
    /// Validates the raw `limit` and `cursor` query values. `limit` defaults to 50 and must be
    /// an integer from 1 to 200; `cursor`, if present, must not be empty (it is opened later,
    /// with [`CursorKey::open`]).
    pub fn from_query(limit: Option<&str>, cursor: Option<&str>) -> Result<PageParams, Problem> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n) && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    Problem::invalid_argument(format!(
                        "limit must be an integer from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        let cursor = match cursor {
            None => None,
            Some("") => {
                return Err(Problem::invalid_argument(
                    "cursor must not be empty; omit it to start from the first page",
                ));
            }
            Some(c) => Some(c.to_owned()),
        };
        Ok(PageParams { limit, cursor })
    }
}

impl<T> Page<T> {
    /// A page of `items` followed by `next_cursor`.
    pub fn new(items: Vec<T>, next_cursor: Option<String>) -> Self {
        Page { items, next_cursor }
    }
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key from 32 secret random bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        CursorKey(bytes)
    }

    /// Seals `pos` into an opaque cursor valid only for `org_id` and `binding` (the endpoint,
    /// canonical filter and sort the page was produced under).
    pub fn seal(&self, org_id: &str, binding: &str, pos: &CursorPosition) -> String {
        let mut payload = Vec::with_capacity(
            1 + org_id.len() + BINDING_HASH_LEN + pos.sort_key.len() + pos.id.len() + 12,
        );
        payload.push(CURSOR_VERSION);
        put_bytes(&mut payload, org_id.as_bytes());
        payload.extend_from_slice(&binding_hash(binding));
        put_bytes(&mut payload, pos.sort_key.as_bytes());
        put_bytes(&mut payload, pos.id.as_bytes());
        let tag = self.tag(&payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// Opens a cursor sealed by [`CursorKey::seal`], checking that it was issued by this server,
    /// for `org_id` and for the same `binding`. Every failure is `400 invalid_argument`.
    pub fn open(
        &self,
        token: &str,
        org_id: &str,
        binding: &str,
    ) -> Result<CursorPosition, Problem> {
        let malformed = || Problem::invalid_argument("cursor is malformed");
        if token.is_empty() || token.len() > MAX_CURSOR_LEN {
            return Err(malformed());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
        if bytes.len() < 1 + TAG_LEN {
            return Err(malformed());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if !bool::from(self.tag(payload).ct_eq(tag)) {
            return Err(Problem::invalid_argument("cursor was tampered with"));
        }
        // Authentic from here on: anything unexpected is a format we no longer understand.
        let (org, hash, pos) = decode_payload(payload).ok_or_else(malformed)?;
        if org != org_id.as_bytes() || hash != binding_hash(binding) {
            return Err(Problem::invalid_argument(
                "cursor was issued for a different organization or query",
            ));
        }
        Ok(pos)
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// Keyset pagination over items already sorted by `(sort_key, id)`, ascending or (with
/// `descending`) descending.
///
/// Skips the items at or before `after` in that order, takes up to `limit` (0 counts as 1), and
/// returns them with the position of the last one if more items remain (`None` on the last page).
/// Sort keys and ids compare as strings (bytewise), so callers must make sort keys
/// order-preserving strings: zero-padded numbers (`format!("{n:020}")`), RFC 3339 UTC times with
/// a fixed number of fractional digits, lower-cased names if the order is case-insensitive.
pub fn paginate<T>(
    sorted: impl IntoIterator<Item = T>,
    after: Option<&CursorPosition>,
    limit: usize,
    position_of: impl Fn(&T) -> CursorPosition,
    descending: bool,
) -> (Vec<T>, Option<CursorPosition>) {
    let limit = limit.max(1);
    let is_past = |item: &T| match after {
        None => true,
        Some(after) => {
            let pos = position_of(item);
            let order = (pos.sort_key.as_str(), pos.id.as_str())
                .cmp(&(after.sort_key.as_str(), after.id.as_str()));
            if descending {
                order.is_lt()
            } else {
                order.is_gt()
            }
        }
    };
    let mut rest = sorted
        .into_iter()
        .skip_while(|item| !is_past(item))
        .peekable();
    let items: Vec<T> = rest.by_ref().take(limit).collect();
    let next = match (rest.peek(), items.last()) {
        (Some(_), Some(last)) => Some(position_of(last)),
        _ => None,
    };
    (items, next)
}

fn binding_hash(binding: &str) -> [u8; BINDING_HASH_LEN] {
    let digest = Sha256::digest(binding.as_bytes());
    let mut hash = [0; BINDING_HASH_LEN];
    hash.copy_from_slice(&digest[..BINDING_HASH_LEN]);
    hash
}

/// Appends a LEB128 length and the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut n = bytes.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(bytes);
}

/// Reads a LEB128 length and that many bytes from the front of `input`.
fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len: usize = 0;
    for shift in (0..).step_by(7).take(4) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            if len > input.len() {
                return None;
            }
            let (bytes, rest) = input.split_at(len);
            *input = rest;
            return Some(bytes);
        }
    }
    None
}

fn decode_payload(payload: &[u8]) -> Option<(&[u8], &[u8], CursorPosition)> {
    let (&version, mut rest) = payload.split_first()?;
    if version != CURSOR_VERSION {
        return None;
    }
    let org = take_bytes(&mut rest)?;
    if rest.len() < BINDING_HASH_LEN {
        return None;
    }
    let (hash, mut rest) = rest.split_at(BINDING_HASH_LEN);
    let sort_key = String::from_utf8(take_bytes(&mut rest)?.to_vec()).ok()?;
    let id = String::from_utf8(take_bytes(&mut rest)?.to_vec()).ok()?;
    if !rest.is_empty() {
        return None;
    }
    Some((org, hash, CursorPosition { sort_key, id }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use utoipa::PartialSchema;

    fn key() -> CursorKey {
        CursorKey::new([7; 32])
    }

    fn pos(sort_key: &str, id: &str) -> CursorPosition {
        CursorPosition {
            sort_key: sort_key.into(),
            id: id.into(),
        }
    }

    fn detail(result: Result<CursorPosition, Problem>) -> String {
        let problem = result.unwrap_err();
        assert_eq!(problem.code, "invalid_argument");
        problem.detail
    }

    #[test]
    fn limit_defaults_to_50() {
        let p = PageParams::from_query(None, None).unwrap();
        assert_eq!(
            p,
            PageParams {
                limit: 50,
                cursor: None
            }
        );
    }

    #[test]
    fn limit_accepts_1_to_200() {
        for (text, n) in [("1", 1), ("200", 200), ("100", 100), ("007", 7)] {
            assert_eq!(PageParams::from_query(Some(text), None).unwrap().limit, n);
        }
    }

    #[test]
    fn limit_refuses_everything_else() {
        for text in [
            "0",
            "201",
            "-1",
            "+5",
            "ten",
            "",
            "1.5",
            " 5",
            "99999999999999999999999",
        ] {
            let problem = PageParams::from_query(Some(text), None).unwrap_err();
            assert_eq!(problem.status, http::StatusCode::BAD_REQUEST, "{text:?}");
            assert_eq!(problem.detail, "limit must be an integer from 1 to 200");
        }
    }

    #[test]
    fn an_empty_cursor_is_refused_and_others_are_kept() {
        assert!(PageParams::from_query(None, Some("")).is_err());
        let p = PageParams::from_query(Some("10"), Some("abc")).unwrap();
        assert_eq!(p.cursor.as_deref(), Some("abc"));
    }

    #[test]
    fn next_cursor_is_null_on_the_last_page() {
        let page = Page::new(vec![1, 2], None);
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"items":[1,2],"next_cursor":null}"#
        );
        let page = Page::new(Vec::<u8>::new(), Some("c".into()));
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"items":[],"next_cursor":"c"}"#
        );
    }

    #[test]
    fn the_page_schema_documents_items_and_next_cursor() {
        let schema = serde_json::to_value(Page::<String>::schema()).unwrap();
        let properties = &schema["properties"];
        assert!(properties.get("items").is_some(), "{schema}");
        assert!(properties.get("next_cursor").is_some(), "{schema}");
    }

    #[test]
    fn a_sealed_cursor_opens_to_its_position() {
        let p = pos("2026-01-01T00:00:00Z", "01HXY");
        let token = key().seal("org1", "/devices?tag:a", &p);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(key().open(&token, "org1", "/devices?tag:a").unwrap(), p);
    }

    #[test]
    fn garbage_is_malformed() {
        for token in ["", "!!!", "a", "AAAA", "AAAA=", &"A".repeat(5000)] {
            assert_eq!(
                detail(key().open(token, "o", "b")),
                "cursor is malformed",
                "{token}"
            );
        }
    }

    #[test]
    fn a_cursor_from_another_key_is_tampered() {
        let token = CursorKey::new([8; 32]).seal("o", "b", &pos("k", "i"));
        assert_eq!(
            detail(key().open(&token, "o", "b")),
            "cursor was tampered with"
        );
    }

    #[test]
    fn a_cursor_for_another_org_or_query_is_refused() {
        let token = key().seal("o", "b", &pos("k", "i"));
        let expected = "cursor was issued for a different organization or query";
        assert_eq!(detail(key().open(&token, "other", "b")), expected);
        assert_eq!(detail(key().open(&token, "o", "b2")), expected);
    }

    #[test]
    fn the_key_is_not_printed() {
        assert_eq!(format!("{:?}", key()), "CursorKey(..)");
    }

    #[test]
    fn paginate_pages_through_ascending_items() {
        let items: Vec<(String, String)> = (0..5)
            .map(|i| (format!("{i:03}"), format!("id{i}")))
            .collect();
        let position = |item: &(String, String)| pos(&item.0, &item.1);
        let (page, next) = paginate(items.clone(), None, 2, position, false);
        assert_eq!(page, items[..2]);
        let next = next.unwrap();
        assert_eq!(next, pos("001", "id1"));
        let (page, next) = paginate(items.clone(), Some(&next), 2, position, false);
        assert_eq!(page, items[2..4]);
        let (page, next) = paginate(items.clone(), next.as_ref(), 2, position, false);
        assert_eq!(page, items[4..]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_full_last_page_has_no_next_cursor() {
        let items = vec![pos("a", "1"), pos("b", "2")];
        let (page, next) = paginate(items, None, 2, Clone::clone, false);
        assert_eq!(page.len(), 2);
        assert_eq!(next, None);
    }

    #[test]
    fn paginate_resumes_after_a_deleted_item() {
        let items = vec![pos("a", "1"), pos("c", "3")];
        let (page, _) = paginate(items, Some(&pos("b", "2")), 10, Clone::clone, false);
        assert_eq!(page, vec![pos("c", "3")]);
        let desc = vec![pos("c", "3"), pos("a", "1")];
        let (page, _) = paginate(desc, Some(&pos("b", "2")), 10, Clone::clone, true);
        assert_eq!(page, vec![pos("a", "1")]);
    }

    #[test]
    fn ties_in_sort_key_are_broken_by_id() {
        let items = vec![pos("a", "1"), pos("a", "2"), pos("a", "3")];
        let (page, next) = paginate(items.clone(), Some(&pos("a", "1")), 1, Clone::clone, false);
        assert_eq!(page, vec![pos("a", "2")]);
        assert_eq!(next, Some(pos("a", "2")));
    }

    proptest! {
        #[test]
        fn seal_and_open_round_trip(
            org in ".{0,40}", binding in ".{0,80}", sort_key in ".{0,100}", id in ".{0,40}",
            key_bytes in any::<[u8; 32]>(),
        ) {
            let key = CursorKey::new(key_bytes);
            let p = pos(&sort_key, &id);
            let token = key.seal(&org, &binding, &p);
            prop_assert_eq!(key.open(&token, &org, &binding).unwrap(), p);
        }

        #[test]
        fn any_single_character_change_is_rejected(
            sort_key in "[ -~]{0,40}", id in "[0-9A-Z]{0,26}",
            index in any::<prop::sample::Index>(),
            replacement in prop::char::range(' ', '~'),
        ) {
            let token = key().seal("org", "binding", &pos(&sort_key, &id));
            let i = index.index(token.len());
            prop_assume!(token.as_bytes()[i] != replacement as u8);
            let mut changed = token.into_bytes();
            changed[i] = replacement as u8;
            let changed = String::from_utf8(changed).unwrap();
            prop_assert!(key().open(&changed, "org", "binding").is_err());
        }

        #[test]
        fn a_token_for_another_org_or_binding_is_rejected(
            org in "[a-z]{1,8}", other_org in "[a-z]{1,8}",
            binding in "[a-z]{0,8}", other_binding in "[a-z]{0,8}",
        ) {
            let token = key().seal(&org, &binding, &pos("k", "i"));
            if org != other_org {
                prop_assert!(key().open(&token, &other_org, &binding).is_err());
            }
            if binding != other_binding {
                prop_assert!(key().open(&token, &org, &other_binding).is_err());
            }
        }

        #[test]
        fn paging_visits_every_item_exactly_once(
            raw in prop::collection::btree_set(("[a-c]{0,2}", "[0-9]{1,3}"), 0..60),
            limit in 1usize..12,
            descending in any::<bool>(),
        ) {
            // Distinct (sort_key, id) pairs, many ties on sort_key.
            let mut items: Vec<CursorPosition> = raw.into_iter().map(|(s, i)| pos(&s, &i)).collect();
            if descending {
                items.reverse();
            }
            let mut seen = Vec::new();
            let mut after: Option<CursorPosition> = None;
            let mut pages = 0;
            loop {
                let (page, next) = paginate(items.clone(), after.as_ref(), limit, Clone::clone, descending);
                prop_assert!(page.len() <= limit);
                pages += 1;
                prop_assert!(pages <= items.len() + 1, "no progress");
                seen.extend(page);
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            prop_assert_eq!(seen, items);
        }
    }
}
