//! Evaluating a [`Filter`] against a resource in its SCIM JSON form.
//!
//! Attribute names match case-insensitively. Strings compare case-insensitively except for the
//! `caseExact` attributes (`id`, `externalId`, references), as RFC 7643 §2.3.1 and §3.1 define
//! them: an identity provider looking up `userName eq "Alice@Example.com"` must find `alice@…`,
//! but an `externalId` is an opaque key. A complex value compared without a sub-attribute
//! compares its `value` (RFC 7644 §3.4.2.2). A missing attribute equals `null` and nothing else.

use std::cmp::Ordering;

use serde_json::Value;

use super::filter::{AttrPath, CompValue, CompareOp, Filter, Path};

/// Whether `resource` (a JSON object) matches `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(x) => !matches(x, resource),
        Filter::Has { attr, filter } => elements(resource, attr)
            .into_iter()
            .any(|element| matches(filter, element)),
        Filter::Present(path) => leaves(resource, path).into_iter().any(is_present),
        Filter::Compare { path, op, value } => {
            let exact = is_case_exact(path);
            let leaves = leaves(resource, path);
            match op {
                // A missing attribute equals `null` only.
                CompareOp::Ne if leaves.is_empty() => *value != CompValue::Null,
                CompareOp::Ne => !leaves
                    .iter()
                    .any(|leaf| compare(leaf, CompareOp::Eq, value, exact)),
                _ if leaves.is_empty() => *op == CompareOp::Eq && *value == CompValue::Null,
                _ => leaves.iter().any(|leaf| compare(leaf, *op, value, exact)),
            }
        }
    }
}

/// The member of `object` called `name`, matched case-insensitively.
pub fn member<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    let map = object.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Where `attr` lives: the resource itself, or the extension object its URN names.
fn base<'a>(resource: &'a Value, attr: &AttrPath) -> &'a Value {
    match &attr.urn {
        Some(urn) => member(resource, urn).unwrap_or(resource),
        None => resource,
    }
}

/// The values of `attr` as a list: each element of a multi-valued attribute, or the one value.
/// A sub-attribute is taken from each.
fn attr_values<'a>(resource: &'a Value, attr: &AttrPath) -> Vec<&'a Value> {
    let Some(value) = member(base(resource, attr), &attr.name) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    match &attr.sub {
        None => items,
        Some(sub) => items
            .into_iter()
            .filter_map(|item| member(item, sub))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            })
            .collect(),
    }
}

/// The values of a multi-valued (or single complex) attribute, for a value filter to test.
fn elements<'a>(resource: &'a Value, attr: &AttrPath) -> Vec<&'a Value> {
    attr_values(resource, attr)
}

/// The leaf values a path designates.
fn leaves<'a>(resource: &'a Value, path: &Path) -> Vec<&'a Value> {
    let Some(filter) = &path.filter else {
        return attr_values(resource, &path.attr);
    };
    let chosen = elements(resource, &path.attr)
        .into_iter()
        .filter(|element| matches(filter, element));
    match &path.sub {
        Some(sub) => chosen.filter_map(|e| member(e, sub)).collect(),
        None => chosen.collect(),
    }
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => !map.is_empty(),
        _ => true,
    }
}

/// `id`, `externalId` and references are compared exactly; everything else we store is not.
pub fn is_case_exact(path: &Path) -> bool {
    let last = path
        .sub
        .as_deref()
        .or(path.attr.sub.as_deref())
        .unwrap_or(&path.attr.name);
    let top_level = path.sub.is_none() && path.attr.sub.is_none();
    (top_level && (last.eq_ignore_ascii_case("id") || last.eq_ignore_ascii_case("externalId")))
        || last == "$ref"
}

fn compare(leaf: &Value, op: CompareOp, value: &CompValue, exact: bool) -> bool {
    // A complex value without a sub-attribute is compared by its `value`.
    let leaf = match leaf {
        Value::Object(_) => match member(leaf, "value") {
            Some(v) => v,
            None => return false,
        },
        other => other,
    };
    match (leaf, value) {
        (Value::String(have), CompValue::Str(want)) => {
            let (have, want) = if exact {
                (have.clone(), want.clone())
            } else {
                (have.to_lowercase(), want.to_lowercase())
            };
            match op {
                CompareOp::Eq => have == want,
                CompareOp::Ne => have != want,
                CompareOp::Co => have.contains(&want),
                CompareOp::Sw => have.starts_with(&want),
                CompareOp::Ew => have.ends_with(&want),
                _ => ordered(have.cmp(&want), op),
            }
        }
        (Value::Bool(have), CompValue::Bool(want)) => match op {
            CompareOp::Eq => have == want,
            CompareOp::Ne => have != want,
            _ => false,
        },
        (Value::Number(have), CompValue::Number(want)) => match (have.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => match op {
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
                _ => a.partial_cmp(&b).is_some_and(|o| ordered(o, op)),
            },
            _ => false,
        },
        (Value::Null, CompValue::Null) => op == CompareOp::Eq,
        _ => op == CompareOp::Ne,
    }
}

fn ordered(ordering: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::parse;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "usr_01ABC",
            "externalId": "Ext-1",
            "userName": "Alice@Example.com",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "displayName": "Alice L",
            "active": true,
            "emails": [{"value": "alice@example.com", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42"},
        })
    }

    fn check(filter: &str) -> bool {
        matches(&parse(filter).unwrap(), &user())
    }

    #[test]
    fn user_name_is_compared_case_insensitively() {
        assert!(check(r#"userName eq "alice@example.com""#));
        assert!(check(r#"USERNAME Eq "ALICE@EXAMPLE.COM""#));
        assert!(!check(r#"userName eq "bob@example.com""#));
    }

    #[test]
    fn external_id_and_id_are_case_exact() {
        assert!(check(r#"externalId eq "Ext-1""#));
        assert!(!check(r#"externalId eq "ext-1""#));
        assert!(!check(r#"id eq "USR_01abc""#));
    }

    #[test]
    fn entra_email_value_path_filter_matches() {
        assert!(check(
            r#"emails[type eq "work"].value eq "Alice@example.com""#
        ));
        assert!(!check(
            r#"emails[type eq "home"].value eq "alice@example.com""#
        ));
        assert!(check(r#"emails[type eq "work"]"#));
        assert!(check(r#"emails eq "alice@example.com""#));
        assert!(check(r#"emails.value co "@example""#));
    }

    #[test]
    fn logic_urns_presence_and_null() {
        assert!(check(r#"name.givenName sw "al" and active eq true"#));
        assert!(check(r#"displayName eq "x" or not (active eq false)"#));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName ew "example.com""#
        ));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42""#
        ));
        assert!(check("title eq null"));
        assert!(!check("title pr"));
        assert!(check("externalId pr"));
        assert!(check(r#"title ne "x""#));
        assert!(check(r#"userName gt "a" and userName lt "b""#));
    }
}
