//! The `event_type` filter: a comma-separated list of exact types (`device.registered`) or
//! prefixes (`device.*`), any of which may match. One parser for the audit log, the SSE stream
//! and webhook subscriptions, so the three agree on what a filter means.

use std::fmt;

/// Longest `event_type` value accepted.
const MAX_LEN: usize = 1024;
/// Most alternatives in one filter.
const MAX_TERMS: usize = 32;

/// A parsed `event_type` filter. The empty filter matches every type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TypeFilter {
    terms: Vec<TypeTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TypeTerm {
    Exact(String),
    /// `device.*` is stored as `device.`.
    Prefix(String),
}

/// Why an `event_type` value was refused; the message names the offending term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFilterError(pub String);

impl fmt::Display for TypeFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TypeFilterError {}

impl TypeFilter {
    /// Parses `device.registered,key.*`. Every exact type must be one the server records, and
    /// every prefix must match at least one, so a typo is a 400 instead of a silent empty page.
    pub fn parse(input: &str) -> Result<TypeFilter, TypeFilterError> {
        if input.len() > MAX_LEN {
            return Err(TypeFilterError(format!(
                "event_type is longer than {MAX_LEN} characters"
            )));
        }
        let mut terms = Vec::new();
        for raw in input.split(',') {
            let term = raw.trim();
            if term.is_empty() {
                return Err(TypeFilterError(
                    "event_type has an empty term; separate types with single commas".into(),
                ));
            }
            let parsed = if term == "*" {
                TypeTerm::Prefix(String::new())
            } else if let Some(prefix) = term.strip_suffix(".*") {
                let prefix = format!("{prefix}.");
                if !known_types().any(|t| t.starts_with(&prefix)) {
                    return Err(TypeFilterError(format!(
                        "event_type '{}' matches no event type",
                        crate::domain::text::echo(term)
                    )));
                }
                TypeTerm::Prefix(prefix)
            } else {
                if !known_types().any(|t| t == term) {
                    return Err(TypeFilterError(format!(
                        "event_type '{}' is not an event type; use an exact type such as \
                         'device.registered' or a prefix such as 'device.*'",
                        crate::domain::text::echo(term)
                    )));
                }
                TypeTerm::Exact(term.to_owned())
            };
            terms.push(parsed);
        }
        if terms.len() > MAX_TERMS {
            return Err(TypeFilterError(format!(
                "event_type has more than {MAX_TERMS} terms"
            )));
        }
        terms.sort();
        terms.dedup();
        Ok(TypeFilter { terms })
    }

    /// Whether nothing is filtered out.
    pub fn is_all(&self) -> bool {
        self.terms.is_empty() || self.terms.contains(&TypeTerm::Prefix(String::new()))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.is_all()
            || self.terms.iter().any(|t| match t {
                TypeTerm::Exact(e) => e == event_type,
                TypeTerm::Prefix(p) => event_type.starts_with(p.as_str()),
            })
    }

    /// The exact types this filter admits, from the catalogue: what an index lookup unions.
    pub fn expand(&self) -> Vec<&'static str> {
        known_types().filter(|t| self.matches(t)).collect()
    }

    /// The log query for these types, through its per-type index (`None`: every event).
    pub fn query(&self) -> Option<events::query::Query> {
        use events::query::Query;
        (!self.is_all()).then(|| {
            Query::Or(
                self.expand()
                    .into_iter()
                    .map(|t| Query::Type(t.to_owned()))
                    .collect(),
            )
        })
    }

    /// A normal form (sorted, deduplicated), for cursor bindings and cache keys.
    pub fn canonical(&self) -> String {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                TypeTerm::Exact(e) => e.clone(),
                TypeTerm::Prefix(p) if p.is_empty() => "*".into(),
                TypeTerm::Prefix(p) => format!("{p}*"),
            })
            .collect();
        parts.join(",")
    }
}

/// Every event type the server records.
fn known_types() -> impl Iterator<Item = &'static str> {
    events::Event::TYPES.iter().map(|(t, _)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_types_and_prefixes_match_and_typos_are_refused() {
        let f = TypeFilter::parse("device.*,key.created").unwrap();
        assert!(f.matches("device.registered"));
        assert!(f.matches("key.created"));
        assert!(!f.matches("key.revoked"));
        assert!(!f.matches("devicex.registered"));
        assert!(f.expand().contains(&"device.registered"));
        assert!(!f.expand().contains(&"token.created"));
        assert_eq!(
            f,
            TypeFilter::parse("key.created, device.*,device.*").unwrap()
        );
        assert!(TypeFilter::parse("*").unwrap().is_all());
        assert!(TypeFilter::parse("device.registerd").is_err());
        assert!(TypeFilter::parse("nothing.*").is_err());
        assert!(TypeFilter::parse("device.*,,key.created").is_err());
        assert!(TypeFilter::parse(&"a,".repeat(600)).is_err());
    }
}
