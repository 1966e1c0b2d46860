//! Decisions about pre-auth keys: issuing and revoking them. (Using one is a registration, see
//! [`super::registration::decide_register`].)

use events::Expected;
use events::event::{KeyCreated, KeyRevoked};
use events::stream::Stream;
use projections::OrgView;

use super::Rejection;
use super::decision::Decision;
use super::expiry::{Expiry, Lifetime};
use super::scope::{Group, Need, Scopes};
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

/// Issues a key expiring after `now` and at most 90 days from it, for a `caller` that may set
/// what it asks.
pub fn decide_create(caller: &Scopes, cmd: CreateKey, now: i64) -> Result<KeyCreated, Rejection> {
    // A key's owner becomes the owner of every device it admits: the same power as
    // reassigning a device (`PATCH /devices`), or a keys:write token could hand devices to any
    // user.
    if cmd.owner.is_some() && !caller.allows(Need::write(Group::Users)) {
        return Err(Rejection::Forbidden(
            "setting a key's 'owner' needs a token that may also write users (users:write or \
             write), as reassigning a device's owner does"
                .into(),
        ));
    }
    // Tags are checked only for their form so far. Once the policy lands, each tag must be
    // one the caller may assign under the policy's `tag_owners`, as on a device (issue 9,
    // item 6): this decision will then take the policy's view of the organization.
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
pub fn create(caller: &Scopes, cmd: CreateKey, now: i64) -> Result<Decision, Rejection> {
    let stream = Stream::key(&cmd.key_id);
    let event = decide_create(caller, cmd, now)?;
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

    fn write() -> Scopes {
        Scopes::parse(&["write"]).unwrap()
    }

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
        let e = decide_create(&write(), cmd(), NOW).unwrap();
        assert_eq!(e.tags, vec!["tag:ci"]);
        assert_eq!(e.expires_at, NOW + HOUR);
        assert_eq!(e.max_uses, None);
    }

    #[test]
    fn expiry_must_be_in_the_future_and_within_90_days() {
        let mut c = cmd();
        c.expires_at = NOW;
        assert!(decide_create(&write(), c, NOW).is_err());
        let mut c = cmd();
        c.expires_at = NOW + 91 * 24 * HOUR;
        assert!(decide_create(&write(), c, NOW).is_err());
        let mut c = cmd();
        c.expires_at = NOW + 90 * 24 * HOUR;
        assert!(decide_create(&write(), c, NOW).is_ok());
    }

    #[test]
    fn max_uses_needs_a_reusable_key_and_a_sane_bound() {
        let mut c = cmd();
        c.max_uses = Some(5);
        assert!(decide_create(&write(), c.clone(), NOW).is_err());
        c.reusable = true;
        assert_eq!(
            decide_create(&write(), c.clone(), NOW).unwrap().max_uses,
            Some(5)
        );
        c.max_uses = Some(0);
        assert!(decide_create(&write(), c, NOW).is_err());
    }

    #[test]
    fn an_owner_needs_a_caller_that_may_write_users() {
        let mut c = cmd();
        c.owner = Some("alice@example.com".into());
        let keys_only = Scopes::parse(&["keys:write"]).unwrap();
        assert!(matches!(
            decide_create(&keys_only, c.clone(), NOW),
            Err(Rejection::Forbidden(_))
        ));
        let with_users = Scopes::parse(&["keys:write", "users:write"]).unwrap();
        assert!(decide_create(&with_users, c.clone(), NOW).is_ok());
        assert!(
            decide_create(&keys_only, cmd(), NOW).is_ok(),
            "no owner, no need"
        );
    }

    #[test]
    fn owner_and_description_are_bounded() {
        let mut c = cmd();
        c.owner = Some(String::new());
        assert!(decide_create(&write(), c, NOW).is_err());
        let mut c = cmd();
        c.description = "x".repeat(201);
        assert!(decide_create(&write(), c, NOW).is_err());
        let mut c = cmd();
        c.description = "bad\nline".into();
        assert!(decide_create(&write(), c, NOW).is_err());
    }
}
