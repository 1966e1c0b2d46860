//! Device tags: `tag:` followed by a short lowercase name. Keys carry them to the devices
//! they admit; policies will select devices by them.

use std::fmt;

use super::Rejection;

/// Longest tag name after `tag:`.
pub const MAX_TAG_NAME: usize = 63;
/// Most tags a device or a key may carry.
pub const MAX_TAGS: usize = 64;

/// A device tag, `tag:` followed by 1–63 of `a-z`, `0-9`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, String> {
        let ok = s.strip_prefix("tag:").is_some_and(|name| {
            (1..=MAX_TAG_NAME).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(format!(
                "'{s}' is not a tag: expected 'tag:' followed by 1 to 63 of a-z, 0-9 and '-'"
            ))
        }
    }

    /// Like [`Tag::parse`], but `production` is taken as `tag:production` (filters, paths).
    pub fn parse_lenient(s: &str) -> Result<Tag, String> {
        if s.starts_with("tag:") {
            Tag::parse(s)
        } else {
            Tag::parse(&format!("tag:{s}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a list of tags for `field`, sorted and deduplicated.
pub fn parse_tags(field: &str, items: &[String]) -> Result<Vec<Tag>, Rejection> {
    if items.len() > MAX_TAGS {
        return Err(Rejection::Invalid(format!(
            "field '{field}' may hold at most {MAX_TAGS} tags"
        )));
    }
    let mut tags = items
        .iter()
        .map(|t| Tag::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Rejection::Invalid(format!("field '{field}': {e}")))?;
    tags.sort();
    tags.dedup();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_tag_colon_and_a_short_lowercase_name() {
        assert!(Tag::parse("tag:prod-1").is_ok());
        for bad in [
            "prod",
            "tag:",
            "tag:Prod",
            "tag:a_b",
            &format!("tag:{}", "a".repeat(64)),
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Tag::parse_lenient("prod").unwrap().as_str(), "tag:prod");
    }

    #[test]
    fn a_tag_list_is_sorted_deduplicated_and_bounded() {
        let tags = parse_tags("tags", &["tag:b".into(), "tag:a".into(), "tag:b".into()]).unwrap();
        assert_eq!(
            tags,
            vec![Tag::parse("tag:a").unwrap(), Tag::parse("tag:b").unwrap()]
        );
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("tag:t{i}")).collect();
        assert!(matches!(
            parse_tags("tags", &many),
            Err(Rejection::Invalid(_))
        ));
    }
}
