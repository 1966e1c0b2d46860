//! Typed stream names: the one place that knows how a stream is spelled in the log.
//!
//! The spellings (`org:<id>`, `token:<id>`, `key:<id>`, `device:<id>`, `ipam:<org>`, `user:<id>`,
//! `group:<id>`, `policy:<org>`, `posture:<org>`, `webhook:<id>`) are persisted in every envelope and in the per-stream index, so they must never
//! change; a new kind of stream is a new variant here, never a `format!` at a call site.

use std::fmt;

/// A stream of the log: one aggregate's events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// An organization's own settings and limits.
    Org(String),
    /// An API token.
    Token(String),
    /// A pre-auth key.
    Key(String),
    /// A device.
    Device(String),
    /// An organization's overlay address allocator: its revision orders registrations.
    Ipam(String),
    /// A person of an organization's directory.
    User(String),
    /// A group of an organization's directory.
    Group(String),
    /// An organization's access policy: its versions and its tests' verdicts.
    Policy(String),
    /// An organization's posture requirements and its devices' posture.
    Posture(String),
    /// A webhook destination of an organization.
    Webhook(String),
}

/// Why a name is not a stream this server knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseStreamError {
    #[error("stream name '{0}' has no 'kind:' prefix")]
    NoKind(String),
    #[error("unknown stream kind '{0}'")]
    UnknownKind(String),
    #[error("stream name '{0}' has an empty id")]
    EmptyId(String),
}

impl Stream {
    pub fn org(id: impl Into<String>) -> Stream {
        Stream::Org(id.into())
    }

    pub fn token(id: impl Into<String>) -> Stream {
        Stream::Token(id.into())
    }

    pub fn key(id: impl Into<String>) -> Stream {
        Stream::Key(id.into())
    }

    pub fn device(id: impl Into<String>) -> Stream {
        Stream::Device(id.into())
    }

    pub fn user(id: impl Into<String>) -> Stream {
        Stream::User(id.into())
    }

    pub fn group(id: impl Into<String>) -> Stream {
        Stream::Group(id.into())
    }

    /// The access policy of organization `org_id`.
    pub fn policy(org_id: impl Into<String>) -> Stream {
        Stream::Policy(org_id.into())
    }

    /// The posture of organization `org_id`'s devices.
    pub fn posture(org_id: impl Into<String>) -> Stream {
        Stream::Posture(org_id.into())
    }

    pub fn webhook(id: impl Into<String>) -> Stream {
        Stream::Webhook(id.into())
    }

    /// The address allocator of organization `org_id`.
    pub fn ipam(org_id: impl Into<String>) -> Stream {
        Stream::Ipam(org_id.into())
    }

    /// The persisted prefix before the colon.
    pub fn kind(&self) -> &'static str {
        match self {
            Stream::Org(_) => "org",
            Stream::Token(_) => "token",
            Stream::Key(_) => "key",
            Stream::Device(_) => "device",
            Stream::Ipam(_) => "ipam",
            Stream::User(_) => "user",
            Stream::Group(_) => "group",
            Stream::Policy(_) => "policy",
            Stream::Posture(_) => "posture",
            Stream::Webhook(_) => "webhook",
        }
    }

    /// The id after the colon (for `ipam`, the organization's).
    pub fn id(&self) -> &str {
        match self {
            Stream::Org(id)
            | Stream::Token(id)
            | Stream::Key(id)
            | Stream::Device(id)
            | Stream::Ipam(id)
            | Stream::User(id)
            | Stream::Group(id)
            | Stream::Policy(id)
            | Stream::Posture(id)
            | Stream::Webhook(id) => id,
        }
    }

    /// Reads a persisted name back. Only the first colon separates: ids may contain colons.
    pub fn parse(name: &str) -> Result<Stream, ParseStreamError> {
        let (kind, id) = name
            .split_once(':')
            .ok_or_else(|| ParseStreamError::NoKind(name.to_owned()))?;
        if id.is_empty() {
            return Err(ParseStreamError::EmptyId(name.to_owned()));
        }
        let id = id.to_owned();
        Ok(match kind {
            "org" => Stream::Org(id),
            "token" => Stream::Token(id),
            "key" => Stream::Key(id),
            "device" => Stream::Device(id),
            "ipam" => Stream::Ipam(id),
            "user" => Stream::User(id),
            "group" => Stream::Group(id),
            "policy" => Stream::Policy(id),
            "posture" => Stream::Posture(id),
            "webhook" => Stream::Webhook(id),
            other => return Err(ParseStreamError::UnknownKind(other.to_owned())),
        })
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

impl std::str::FromStr for Stream {
    type Err = ParseStreamError;

    fn from_str(s: &str) -> Result<Stream, ParseStreamError> {
        Stream::parse(s)
    }
}

impl From<Stream> for String {
    fn from(s: Stream) -> String {
        s.to_string()
    }
}

impl From<&Stream> for String {
    fn from(s: &Stream) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn any_stream() -> impl Strategy<Value = Stream> {
        let id = "[a-zA-Z0-9_:-]{1,40}";
        prop_oneof![
            id.prop_map(Stream::org),
            id.prop_map(Stream::token),
            id.prop_map(Stream::key),
            id.prop_map(Stream::device),
            id.prop_map(Stream::ipam),
            id.prop_map(Stream::user),
            id.prop_map(Stream::group),
            id.prop_map(Stream::policy),
            id.prop_map(Stream::posture),
            id.prop_map(Stream::webhook),
        ]
    }

    proptest! {
        #[test]
        fn a_stream_reads_back_as_itself(s in any_stream()) {
            prop_assert_eq!(Stream::parse(&s.to_string()), Ok(s));
        }
    }

    #[test]
    fn persisted_spellings_do_not_change() {
        assert_eq!(Stream::org("org_1").to_string(), "org:org_1");
        assert_eq!(Stream::token("tok_1").to_string(), "token:tok_1");
        assert_eq!(Stream::key("key_1").to_string(), "key:key_1");
        assert_eq!(Stream::device("dev_1").to_string(), "device:dev_1");
        assert_eq!(Stream::ipam("org_1").to_string(), "ipam:org_1");
        assert_eq!(Stream::user("usr_1").to_string(), "user:usr_1");
        assert_eq!(Stream::group("grp_1").to_string(), "group:grp_1");
        assert_eq!(Stream::policy("org_1").to_string(), "policy:org_1");
        assert_eq!(Stream::posture("org_1").to_string(), "posture:org_1");
        assert_eq!(Stream::webhook("wh_1").to_string(), "webhook:wh_1");
    }

    #[test]
    fn names_that_are_not_streams_are_refused_with_the_reason() {
        assert!(matches!(
            Stream::parse("device"),
            Err(ParseStreamError::NoKind(_))
        ));
        assert!(matches!(
            Stream::parse("team:t_1"),
            Err(ParseStreamError::UnknownKind(_))
        ));
        assert!(matches!(
            Stream::parse("device:"),
            Err(ParseStreamError::EmptyId(_))
        ));
    }
}
