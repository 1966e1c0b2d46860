//! Decisions about pre-auth keys: issuing and revoking them. (Using one is a registration, see
//! [`super::registration::decide_register`].)

use events::Expected;
use events::event::{KeyCreated, KeyRevoked};
use events::stream::Stream;
use projections::OrgView;

use super::Rejection;
use super::decision::Decision;
use super::expiry::{Expiry, Lifetime};
use super::tag::Tag;
use super::text::check_text;

/// Largest accepted `max_uses`.
pub const MAX_USES: u32 = 1_000_000;

/// A request to issue a pre-auth key, with its id and secret hash already generated.
#[derive(Debug, Clone)]
pub struct CreateKey {
    pub key_id: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub reusable: bool,
    pub ephemeral: bool,
    pub tags: Vec<Tag>,
    pub owner: Option<String>,
    /// Microseconds since the epoch.
    pub expires_at: i64,
    pub description: String,
    pub max_uses: Option<u32>,
}

/// Issues a key expiring after `now` and at most 90 days from it.
pub fn decide_create(cmd: CreateKey, now: i64) -> Result<KeyCreated, Rejection> {
    check_text("description", &cmd.description, 0, 200)?;
    if let Some(owner) = &cmd.owner {
        check_text("owner", owner, 1, 254)?;
    }
    match cmd.max_uses {
        Some(n) if n == 0 || n > MAX_USES => {
            return Err(Rejection::Invalid(format!(
                "field 'max_uses' must be from 1 to {MAX_USES}"
            )));
        }
        Some(n) if !cmd.reusable && n != 1 => {
            return Err(Rejection::Invalid(
                "field 'max_uses' needs 'reusable': true (a single-use key is used once)".into(),
            ));
        }
        _ => {}
    }
    let expires_at = Expiry::at(Lifetime::PreAuthKey, cmd.expires_at, now)?;
    Ok(KeyCreated {
        key_id: cmd.key_id,
        prefix: cmd.prefix,
        secret_hash: cmd.secret_hash,
        reusable: cmd.reusable,
        ephemeral: cmd.ephemeral,
        tags: cmd.tags.into_iter().map(Tag::into_string).collect(),
        owner: cmd.owner,
        expires_at: expires_at.micros(),
        description: cmd.description,
        max_uses: if cmd.reusable { cmd.max_uses } else { None },
    })
}

/// Revokes a key of the organization; `Ok(None)` when it already was (revocation is
/// idempotent). Another organization's key is not in the view, so it is not found either.
pub fn decide_revoke(org: OrgView<'_>, key_id: &str) -> Result<Option<KeyRevoked>, Rejection> {
    let key = org
        .key(key_id)
        .ok_or_else(|| Rejection::NotFound(format!("no pre-auth key '{key_id}'")))?;
    Ok(key.revoked_at.is_none().then(|| KeyRevoked {
        key_id: key_id.to_owned(),
    }))
}

/// Issuing a pre-auth key: a new stream, so two requests can never both create the same one.
pub fn create(cmd: CreateKey, now: i64) -> Result<Decision, Rejection> {
    let stream = Stream::key(&cmd.key_id);
    let event = decide_create(cmd, now)?;
    Ok(Decision::none()
        .expect(stream.clone(), Expected::NoStream)
        .event(stream, event))
}

/// Revoking a key of the organization; nothing to append when it already was.
pub fn revoke(org: OrgView<'_>, key_id: &str) -> Result<Decision, Rejection> {
    let Some(event) = decide_revoke(org, key_id)? else {
        return Ok(Decision::none());
    };
    let stream = Stream::key(key_id);
    Ok(Decision::none()
        .expect(stream.clone(), Expected::Exists)
        .event(stream, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;
    const HOUR: i64 = 3_600_000_000;

    fn cmd() -> CreateKey {
        CreateKey {
            key_id: "key_1".into(),
            prefix: "qzk_abcdef".into(),
            secret_hash: [3; 32],
            reusable: false,
            ephemeral: false,
            tags: vec![Tag::parse("tag:ci").unwrap()],
            owner: None,
            expires_at: NOW + HOUR,
            description: String::new(),
            max_uses: None,
        }
    }

    #[test]
    fn given_a_valid_request_when_a_key_is_created_then_key_created() {
        let e = decide_create(cmd(), NOW).unwrap();
        assert_eq!(e.tags, vec!["tag:ci"]);
        assert_eq!(e.expires_at, NOW + HOUR);
        assert_eq!(e.max_uses, None);
    }

    #[test]
    fn expiry_must_be_in_the_future_and_within_90_days() {
        let mut c = cmd();
        c.expires_at = NOW;
        assert!(decide_create(c, NOW).is_err());
        let mut c = cmd();
        c.expires_at = NOW + 91 * 24 * HOUR;
        assert!(decide_create(c, NOW).is_err());
        let mut c = cmd();
        c.expires_at = NOW + 90 * 24 * HOUR;
        assert!(decide_create(c, NOW).is_ok());
    }

    #[test]
    fn max_uses_needs_a_reusable_key_and_a_sane_bound() {
        let mut c = cmd();
        c.max_uses = Some(5);
        assert!(decide_create(c.clone(), NOW).is_err());
        c.reusable = true;
        assert_eq!(decide_create(c.clone(), NOW).unwrap().max_uses, Some(5));
        c.max_uses = Some(0);
        assert!(decide_create(c, NOW).is_err());
    }

    #[test]
    fn owner_and_description_are_bounded() {
        let mut c = cmd();
        c.owner = Some(String::new());
        assert!(decide_create(c, NOW).is_err());
        let mut c = cmd();
        c.description = "x".repeat(201);
        assert!(decide_create(c, NOW).is_err());
        let mut c = cmd();
        c.description = "bad\nline".into();
        assert!(decide_create(c, NOW).is_err());
    }
}
