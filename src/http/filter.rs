//! The `?filter=` and `?sort=` languages, shared by every list endpoint.
//!
//! A filter is an AND of clauses, each an OR of `key:value` terms:
//!
//! - Clauses are separated by `+` or whitespace. Query decoding turns a literal `+` into a space,
//!   so `tag:production+os:linux` means AND whether the `+` arrives literally or as `%2B`.
//! - Terms inside a clause are separated by `,` and ORed: `tag:production,tag:staging`.
//! - A term splits at its **first** colon, so values may contain colons
//!   (`since:2026-01-01T00:00:00Z`).
//! - A term after the first in a clause may omit its key and reuse the previous term's:
//!   `os:linux,windows` is `os:linux,os:windows`. Such a term is taken as a bare value when it
//!   has no colon, or when the text before its first colon cannot be a key (it does not start
//!   with a letter, as in `2026-01-01T00:00:00Z`). To OR values like `user:bob`, repeat the key:
//!   `owner:user:alice,owner:user:bob`.
//!
//! Keys are checked against the endpoint's allowed keys; values are left to the endpoint.
//! A sort is `field`, `field:asc` or `field:desc`.

use std::fmt;

use super::problem::Problem;

/// Most terms one filter may contain (bounds the work a request can ask for).
pub const MAX_TERMS: usize = 32;

/// One `key:value` condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term {
    /// The filter key, one of the endpoint's allowed keys.
    pub key: String,
    /// The value to match, as sent (after query decoding).
    pub value: String,
}

/// A parsed filter: an AND of clauses, each an OR of terms. No clauses matches everything.
///
/// Clauses and terms are kept sorted and deduplicated, so equal filters compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// AND of ORs.
    pub clauses: Vec<Vec<Term>>,
}

/// A parsed `?sort=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sort {
    /// The field to sort by, one of the endpoint's allowed fields.
    pub field: String,
    /// Whether the order is descending (`:desc`).
    pub descending: bool,
}

/// Why a filter or sort was refused; the message names the offending key or term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A key the endpoint does not filter by.
    #[error("unknown filter key '{key}'; allowed: {}", .allowed.join(", "))]
    UnknownKey { key: String, allowed: Vec<String> },
    /// Two commas in a row, or a comma at either end of a clause.
    #[error("empty filter term in '{clause}'")]
    EmptyTerm { clause: String },
    /// A clause's first term has no `key:`.
    #[error("filter term '{term}' has no ':'; expected key:value")]
    MissingColon { term: String },
    /// A term like `:linux`.
    #[error("filter term '{term}' has an empty key; expected key:value")]
    EmptyKey { term: String },
    /// A term like `os:`.
    #[error("filter term '{term}' has an empty value")]
    EmptyValue { term: String },
    /// More than [`MAX_TERMS`] terms.
    #[error("filter has more than {MAX_TERMS} terms")]
    TooManyTerms,
    /// `?sort=` was empty.
    #[error("sort is empty; expected field, field:asc or field:desc (fields: {})", .allowed.join(", "))]
    EmptySort { allowed: Vec<String> },
    /// A field the endpoint does not sort by.
    #[error("unknown sort field '{field}'; allowed: {}", .allowed.join(", "))]
    UnknownSortField { field: String, allowed: Vec<String> },
    /// A direction other than `asc` or `desc`.
    #[error("unknown sort direction '{direction}'; expected asc or desc")]
    UnknownSortDirection { direction: String },
}

impl From<FilterError> for Problem {
    fn from(err: FilterError) -> Self {
        Problem::invalid_argument(err.to_string())
    }
}

impl Filter {
    /// Parses `input` (the decoded `filter` query parameter), accepting only `allowed_keys`.
    pub fn parse(input: &str, allowed_keys: &[&str]) -> Result<Filter, FilterError> {
        let mut clauses: Vec<Vec<Term>> = Vec::new();
        let mut count = 0;
        for clause_text in input
            .split(|c: char| c == '+' || c.is_whitespace())
            .filter(|c| !c.is_empty())
        {
            let mut clause = Vec::new();
            let mut previous_key: Option<&str> = None;
            for term_text in clause_text.split(',') {
                count += 1;
                if count > MAX_TERMS {
                    return Err(FilterError::TooManyTerms);
                }
                let term = parse_term(term_text, clause_text, previous_key, allowed_keys)?;
                previous_key = allowed_keys.iter().copied().find(|k| *k == term.key);
                clause.push(term);
            }
            clause.sort();
            clause.dedup();
            clauses.push(clause);
        }
        clauses.sort();
        clauses.dedup();
        Ok(Filter { clauses })
    }

    /// Whether the filter has no clauses (matches everything).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// A stable text for the filter, used to bind cursors: terms and clauses sorted and
    /// deduplicated, so filters that differ only in order or repetition give the same string.
    /// (It does not go further, e.g. absorption `a+a,b` = `a`; such filters bind separately.)
    pub fn canonical(&self) -> String {
        self.clauses
            .iter()
            .map(|clause| {
                clause
                    .iter()
                    .map(|t| format!("{}:{}", t.key, t.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Evaluates the filter; `get(key, value)` says whether the item satisfies one term.
    pub fn matches(&self, get: impl Fn(&str, &str) -> bool) -> bool {
        self.clauses
            .iter()
            .all(|clause| clause.iter().any(|t| get(&t.key, &t.value)))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl Sort {
    /// Parses `input` (the `sort` query parameter), accepting only `allowed_fields`.
    pub fn parse(input: &str, allowed_fields: &[&str]) -> Result<Sort, FilterError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(FilterError::EmptySort {
                allowed: owned(allowed_fields),
            });
        }
        let (field, direction) = match input.split_once(':') {
            Some((field, direction)) => (field, Some(direction)),
            None => (input, None),
        };
        if !allowed_fields.contains(&field) {
            return Err(FilterError::UnknownSortField {
                field: field.to_owned(),
                allowed: owned(allowed_fields),
            });
        }
        let descending = match direction {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(FilterError::UnknownSortDirection {
                    direction: other.to_owned(),
                });
            }
        };
        Ok(Sort {
            field: field.to_owned(),
            descending,
        })
    }

    /// `field:asc` or `field:desc`, for binding cursors.
    pub fn canonical(&self) -> String {
        let direction = if self.descending { "desc" } else { "asc" };
        format!("{}:{direction}", self.field)
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

fn parse_term(
    text: &str,
    clause: &str,
    previous_key: Option<&str>,
    allowed_keys: &[&str],
) -> Result<Term, FilterError> {
    if text.is_empty() {
        return Err(FilterError::EmptyTerm {
            clause: clause.to_owned(),
        });
    }
    let split = text
        .split_once(':')
        .filter(|(key, _)| previous_key.is_none() || looks_like_key(key));
    let (key, value) = match (split, previous_key) {
        (Some((key, value)), _) => (key, value),
        (None, Some(previous)) => (previous, text),
        (None, None) => {
            return Err(FilterError::MissingColon {
                term: text.to_owned(),
            });
        }
    };
    if key.is_empty() {
        return Err(FilterError::EmptyKey {
            term: text.to_owned(),
        });
    }
    if !allowed_keys.contains(&key) {
        return Err(FilterError::UnknownKey {
            key: key.to_owned(),
            allowed: owned(allowed_keys),
        });
    }
    if value.is_empty() {
        return Err(FilterError::EmptyValue {
            term: text.to_owned(),
        });
    }
    Ok(Term {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Whether text before a colon can be a key: a letter, then letters, digits, `_`, `.` or `-`.
/// An empty prefix counts, so `:x` is reported as an empty key rather than swallowed as a value.
fn looks_like_key(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    match chars.next() {
        None => true,
        Some(first) => {
            first.is_ascii_alphabetic()
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
    }
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEYS: &[&str] = &["tag", "os", "owner", "since"];

    fn term(key: &str, value: &str) -> Term {
        Term {
            key: key.into(),
            value: value.into(),
        }
    }

    fn parse(input: &str) -> Result<Filter, FilterError> {
        Filter::parse(input, KEYS)
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        let f = parse("").unwrap();
        assert!(f.is_empty());
        assert!(f.matches(|_, _| false));
        assert_eq!(parse("  + ").unwrap(), f);
        assert_eq!(f.canonical(), "");
    }

    #[test]
    fn plus_and_whitespace_both_mean_and() {
        let expected = Filter {
            clauses: vec![vec![term("os", "linux")], vec![term("tag", "production")]],
        };
        assert_eq!(parse("tag:production+os:linux").unwrap(), expected);
        assert_eq!(parse("tag:production os:linux").unwrap(), expected);
        assert_eq!(parse("tag:production \t os:linux").unwrap(), expected);
    }

    #[test]
    fn commas_mean_or() {
        let f = parse("tag:production,tag:staging").unwrap();
        assert_eq!(
            f.clauses,
            vec![vec![term("tag", "production"), term("tag", "staging")]]
        );
        assert!(f.matches(|k, v| k == "tag" && v == "staging"));
        assert!(!f.matches(|k, v| k == "tag" && v == "dev"));
    }

    #[test]
    fn and_of_ors_evaluates_every_clause() {
        let f = parse("tag:a,tag:b+os:linux").unwrap();
        let device = |tags: &'static [&'static str], os: &'static str| {
            move |k: &str, v: &str| match k {
                "tag" => tags.contains(&v),
                "os" => v == os,
                _ => false,
            }
        };
        assert!(f.matches(device(&["b"], "linux")));
        assert!(!f.matches(device(&["b"], "windows")));
        assert!(!f.matches(device(&["c"], "linux")));
    }

    #[test]
    fn a_term_splits_at_its_first_colon() {
        let f = parse("since:2026-01-01T00:00:00Z").unwrap();
        assert_eq!(f.clauses, vec![vec![term("since", "2026-01-01T00:00:00Z")]]);
        let f = parse("owner:user:alice@example.com").unwrap();
        assert_eq!(
            f.clauses,
            vec![vec![term("owner", "user:alice@example.com")]]
        );
    }

    #[test]
    fn a_bare_term_reuses_the_previous_key() {
        let f = parse("os:linux,windows,macos").unwrap();
        assert_eq!(
            f.clauses,
            vec![vec![
                term("os", "linux"),
                term("os", "macos"),
                term("os", "windows")
            ]]
        );
        let f = parse("since:2026-01-01T00:00:00Z,2026-02-01T00:00:00Z").unwrap();
        assert_eq!(f.clauses[0][1], term("since", "2026-02-01T00:00:00Z"));
        let f = parse("os:linux,tag:prod,staging").unwrap();
        assert_eq!(
            f.clauses[0],
            vec![
                term("os", "linux"),
                term("tag", "prod"),
                term("tag", "staging")
            ]
        );
    }

    #[test]
    fn an_unknown_key_names_it_and_the_allowed_ones() {
        let err = parse("tag:a+foo:b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown filter key 'foo'; allowed: tag, os, owner, since"
        );
        // A key-like prefix after a comma is a key, so typos are caught rather than matched.
        let err = parse("os:linux,tga:prod").unwrap_err();
        assert!(err.to_string().starts_with("unknown filter key 'tga'"));
    }

    #[test]
    fn an_empty_term_is_refused() {
        for input in ["os:linux,,windows", "os:linux,", ",os:linux"] {
            let err = parse(input).unwrap_err();
            assert!(matches!(err, FilterError::EmptyTerm { .. }), "{input}");
            assert!(err.to_string().starts_with("empty filter term in '"));
        }
    }

    #[test]
    fn a_first_term_without_a_colon_is_refused() {
        let err = parse("linux").unwrap_err();
        assert_eq!(
            err.to_string(),
            "filter term 'linux' has no ':'; expected key:value"
        );
    }

    #[test]
    fn empty_keys_and_values_are_refused() {
        assert_eq!(
            parse("os:").unwrap_err().to_string(),
            "filter term 'os:' has an empty value"
        );
        assert_eq!(
            parse(":linux").unwrap_err(),
            FilterError::EmptyKey {
                term: ":linux".into()
            }
        );
        assert!(matches!(
            parse("os:linux,:mac").unwrap_err(),
            FilterError::EmptyKey { .. }
        ));
    }

    #[test]
    fn more_than_32_terms_are_refused() {
        let ok = vec!["tag:x"; 32].join(",");
        assert!(parse(&ok).is_ok());
        let too_many = vec!["tag:x"; 33].join("+");
        assert_eq!(parse(&too_many).unwrap_err(), FilterError::TooManyTerms);
        assert_eq!(
            FilterError::TooManyTerms.to_string(),
            "filter has more than 32 terms"
        );
    }

    #[test]
    fn canonical_ignores_order_and_repetition() {
        let a = parse("os:linux,windows+tag:b,tag:a").unwrap();
        let b = parse("tag:a,b tag:b,tag:a os:windows,linux").unwrap();
        assert_eq!(a.canonical(), "os:linux,os:windows+tag:a,tag:b");
        assert_eq!(a.canonical(), b.canonical());
    }

    #[test]
    fn a_filter_error_is_an_invalid_argument_problem() {
        let p: Problem = parse("nope:x").unwrap_err().into();
        assert_eq!(p.status, http::StatusCode::BAD_REQUEST);
        assert_eq!(p.code, "invalid_argument");
        assert!(p.detail.contains("'nope'"));
    }

    #[test]
    fn sort_accepts_field_with_an_optional_direction() {
        let fields = &["created_at", "hostname"];
        let asc = Sort::parse("hostname", fields).unwrap();
        assert_eq!((asc.field.as_str(), asc.descending), ("hostname", false));
        assert_eq!(Sort::parse("hostname:asc", fields).unwrap(), asc);
        let desc = Sort::parse("created_at:desc", fields).unwrap();
        assert!(desc.descending);
        assert_eq!(desc.canonical(), "created_at:desc");
    }

    #[test]
    fn sort_errors_name_the_field_or_direction() {
        let fields = &["created_at", "hostname"];
        assert_eq!(
            Sort::parse("size:asc", fields).unwrap_err().to_string(),
            "unknown sort field 'size'; allowed: created_at, hostname"
        );
        assert_eq!(
            Sort::parse("hostname:up", fields).unwrap_err().to_string(),
            "unknown sort direction 'up'; expected asc or desc"
        );
        assert!(matches!(
            Sort::parse(" ", fields).unwrap_err(),
            FilterError::EmptySort { .. }
        ));
    }

    fn arb_term() -> impl Strategy<Value = (String, String)> {
        (
            prop::sample::select(KEYS),
            "[a-zA-Z0-9][a-zA-Z0-9:._@-]{0,12}",
        )
            .prop_map(|(k, v)| (k.to_owned(), v))
    }

    fn render(clauses: &[Vec<(String, String)>]) -> String {
        clauses
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("+")
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in ".{0,200}") {
            let _ = parse(&input);
        }

        #[test]
        fn parsing_filter_like_noise_never_panics(input in "[a-z:, +\t]{0,80}") {
            if let Ok(f) = parse(&input) {
                // A filter that parses re-parses from its canonical text to itself.
                prop_assert_eq!(parse(&f.canonical()).unwrap(), f);
            }
        }

        #[test]
        fn canonical_is_stable_under_reordering(
            clauses in prop::collection::vec(prop::collection::vec(arb_term(), 1..4), 1..6),
            seed in any::<u64>(),
        ) {
            let original = parse(&render(&clauses)).unwrap();
            // Shuffle terms within clauses and clauses themselves, and repeat one clause.
            let mut shuffled = clauses.clone();
            let mut state = seed;
            let mut next = || { state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (state >> 33) as usize };
            for clause in &mut shuffled {
                for i in (1..clause.len()).rev() { let j = next() % (i + 1); clause.swap(i, j); }
            }
            for i in (1..shuffled.len()).rev() { let j = next() % (i + 1); shuffled.swap(i, j); }
            shuffled.push(shuffled[0].clone());
            let input = render(&shuffled).replace('+', " ");
            let reordered = parse(&input).unwrap();
            prop_assert_eq!(original.canonical(), reordered.canonical());
            prop_assert_eq!(original, reordered);
        }
    }
}
