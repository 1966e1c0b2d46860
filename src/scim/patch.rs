//! SCIM PATCH (RFC 7644 §3.5.2), in the shapes identity providers really send.
//!
//! A PatchOp body is parsed into typed [`Operation`]s, then applied to the resource's SCIM JSON
//! (as we would render it); the result is read back into our typed representation by
//! [`super::model`], which checks every type. Working on the JSON keeps one implementation of
//! every path form, and a body that fails anywhere changes nothing, because the caller only
//! writes the final typed value.
//!
//! The tolerances, each for a client that sends it:
//! - `op` in any case (`Add`, `Replace`, `Remove` from Microsoft Entra);
//! - a path-less operation whose `value` maps attribute paths, dotted (`name.givenName`) or
//!   URN-prefixed, to values (Okta, and Entra with `?aadOptscim062020`);
//! - `"True"`/`"False"` strings for booleans (Entra's default job; [`super::model`] reads them);
//! - Entra's `remove` of `members` carrying a `value` list removes those members only; a
//!   literal reading of RFC 7644 would empty the group;
//! - a `replace`/`add` through a value filter that matches nothing creates the element
//!   (`emails[type eq "work"].value` on a user without a work address);
//! - attributes we do not store (enterprise extension, `roles`, `password`) are accepted and
//!   dropped, so a provisioning job with default mappings does not fail.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::eval::{matches, member};
use super::filter::{self, AttrPath, CompValue, CompareOp, Filter, Path};
use super::model::{ScimGroup, ScimUser};
use super::schema::{self, Attr, GROUP_ATTRS, GROUP_SCHEMA, PATCH_OP, USER_ATTRS, USER_SCHEMA};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
}

/// One operation of a PatchOp body.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<Path>,
    pub value: Option<Value>,
}

/// Most operations one body may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// The user `body` (a PatchOp) makes of `user`; `user` itself is untouched.
pub fn patch_user(user: &ScimUser, body: &Value) -> Result<ScimUser, ScimError> {
    let ops = parse(body)?;
    let mut doc = user.to_json();
    apply(&mut doc, &ops, USER_SCHEMA, USER_ATTRS)?;
    ScimUser::from_json(&doc)
}

/// The group `body` (a PatchOp) makes of `group`; `group` itself is untouched.
pub fn patch_group(group: &ScimGroup, body: &Value) -> Result<ScimGroup, ScimError> {
    let ops = parse(body)?;
    let mut doc = group.to_json();
    apply(&mut doc, &ops, GROUP_SCHEMA, GROUP_ATTRS)?;
    ScimGroup::from_json(&doc)
}

/// Parses a PatchOp body.
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a PatchOp body must be a JSON object"))?;
    let schemas = member(body, "schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax(format!("'schemas' must list '{PATCH_OP}'")))?;
    if !schemas
        .iter()
        .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP)))
    {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must list '{PATCH_OP}'"
        )));
    }
    let ops = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .map(|(_, v)| v)
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("'Operations' must be an array"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "'Operations' must hold 1 to {MAX_OPERATIONS} operations"
        )));
    }
    ops.iter()
        .enumerate()
        .map(|(n, op)| parse_operation(op).map_err(|e| at(e, n)))
        .collect()
}

fn at(mut e: ScimError, n: usize) -> ScimError {
    e.detail = format!("Operations[{n}]: {}", e.detail);
    e
}

fn parse_operation(op: &Value) -> Result<Operation, ScimError> {
    if !op.is_object() {
        return Err(ScimError::invalid_syntax("an operation must be an object"));
    }
    let name = member(op, "op").and_then(Value::as_str).ok_or_else(|| {
        ScimError::invalid_syntax("'op' must be \"add\", \"replace\" or \"remove\"")
    })?;
    let kind = match name.to_ascii_lowercase().as_str() {
        "add" => Op::Add,
        "replace" => Op::Replace,
        "remove" => Op::Remove,
        _ => {
            return Err(ScimError::invalid_syntax(format!(
                "unknown op '{}'; expected add, replace or remove",
                name.escape_debug()
            )));
        }
    };
    let path = match member(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(
            filter::parse_path(p)
                .map_err(|e| ScimError::bad_request(ScimType::InvalidPath, format!("path: {e}")))?,
        ),
        Some(_) => return Err(ScimError::invalid_syntax("'path' must be a string")),
    };
    let value = member(op, "value").cloned();
    match (kind, &path, &value) {
        (Op::Remove, None, _) => Err(ScimError::bad_request(
            ScimType::NoTarget,
            "a remove operation needs a path",
        )),
        (Op::Add | Op::Replace, _, None) => {
            Err(ScimError::invalid_value(format!("{name} needs a value")))
        }
        (Op::Add | Op::Replace, None, Some(v)) if !v.is_object() => Err(ScimError::invalid_value(
            format!("{name} without a path needs an object value"),
        )),
        _ => Ok(Operation {
            op: kind,
            path,
            value,
        }),
    }
}

/// Applies `ops` in order to `doc`, the JSON of a resource whose core schema is `schema_urn`
/// and whose attributes are `attrs`.
pub fn apply(
    doc: &mut Value,
    ops: &[Operation],
    schema_urn: &str,
    attrs: &[Attr],
) -> Result<(), ScimError> {
    let target = Target { schema_urn, attrs };
    for (n, op) in ops.iter().enumerate() {
        let result = match &op.path {
            Some(path) => target.at_path(doc, op.op, path, op.value.as_ref()),
            None => target.value_map(doc, op.op, op.value.as_ref()),
        };
        result.map_err(|e| at(e, n))?;
    }
    Ok(())
}

struct Target<'a> {
    schema_urn: &'a str,
    attrs: &'a [Attr],
}

impl Target<'_> {
    /// A path-less add/replace: each key of the value is a path (or our schema's URN, whose
    /// object holds paths).
    fn value_map(&self, doc: &mut Value, op: Op, value: Option<&Value>) -> Result<(), ScimError> {
        let Some(Value::Object(map)) = value else {
            return Ok(());
        };
        for (key, v) in map {
            if key.eq_ignore_ascii_case(self.schema_urn) {
                self.value_map(doc, op, Some(v))?;
                continue;
            }
            if ["schemas", "id", "meta"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
            {
                continue;
            }
            let path = filter::parse_path(key).map_err(|e| {
                ScimError::bad_request(ScimType::InvalidPath, format!("value key '{key}': {e}"))
            })?;
            self.at_path(doc, op, &path, Some(v))?;
        }
        Ok(())
    }

    fn at_path(
        &self,
        doc: &mut Value,
        op: Op,
        path: &Path,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        // Attributes of other schemas (the enterprise extension) are not stored.
        if let Some(urn) = &path.attr.urn
            && !urn.eq_ignore_ascii_case(self.schema_urn)
        {
            return Ok(());
        }
        let Some(obj) = doc.as_object_mut() else {
            return Err(ScimError::invalid_value("the resource is not an object"));
        };
        let described = schema::find(self.attrs, &path.attr.name);
        let key = described.map_or(path.attr.name.as_str(), |a| a.name);
        let key = existing_key(obj, key);
        let multi =
            described.is_some_and(|a| a.multi_valued) || obj.get(&key).is_some_and(Value::is_array);
        match &path.filter {
            Some(f) => filtered(obj, &key, op, f, path.sub.as_deref(), value),
            None => match &path.attr.sub {
                Some(sub) => {
                    sub_attribute(obj, &key, op, sub, value);
                    Ok(())
                }
                None => {
                    whole(obj, &key, op, multi, value);
                    Ok(())
                }
            },
        }
    }
}

/// The key `name` already has in `obj` (in whatever case it was stored), or `name`.
fn existing_key(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// Whether two values of a multi-valued attribute are the same: by `value` when both have one.
fn same_item(a: &Value, b: &Value) -> bool {
    match (member(a, "value"), member(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn whole(obj: &mut Map<String, Value>, key: &str, op: Op, multi: bool, value: Option<&Value>) {
    let value = value.cloned().unwrap_or(Value::Null);
    match op {
        Op::Remove => {
            // Entra's member removal: `remove members` with the members to drop as `value`.
            if let (Some(Value::Array(items)), false) = (obj.get_mut(key), value.is_null()) {
                let drop = as_list(&value);
                items.retain(|item| !drop.iter().any(|d| same_item(item, d)));
                if items.is_empty() {
                    obj.remove(key);
                }
            } else {
                obj.remove(key);
            }
        }
        Op::Add if multi => {
            let items = obj
                .entry(key.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !items.is_array() {
                *items = Value::Array(as_list(items));
            }
            if let Value::Array(items) = items {
                for new in as_list(&value) {
                    if !items.iter().any(|old| same_item(old, &new)) {
                        items.push(new);
                    }
                }
            }
        }
        Op::Replace if multi => {
            obj.insert(key.to_owned(), Value::Array(as_list(&value)));
        }
        Op::Add | Op::Replace => match (obj.get_mut(key), value) {
            // A complex attribute's sub-attributes are merged (RFC 7644 §3.5.2.1, §3.5.2.3).
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (k, v) in new {
                    let k = existing_key(old, &k);
                    old.insert(k, v);
                }
            }
            (_, value) => {
                obj.insert(key.to_owned(), value);
            }
        },
    }
}

fn sub_attribute(
    obj: &mut Map<String, Value>,
    key: &str,
    op: Op,
    sub: &str,
    value: Option<&Value>,
) {
    let parent = obj
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let apply = |item: &mut Value| {
        if let Value::Object(map) = item {
            let k = existing_key(map, sub);
            match op {
                Op::Remove => {
                    map.remove(&k);
                }
                Op::Add | Op::Replace => {
                    map.insert(k, value.cloned().unwrap_or(Value::Null));
                }
            }
        }
    };
    match parent {
        Value::Array(items) => items.iter_mut().for_each(apply),
        Value::Object(_) => apply(parent),
        other => {
            *other = Value::Object(Map::new());
            apply(other);
        }
    }
}

fn filtered(
    obj: &mut Map<String, Value>,
    key: &str,
    op: Op,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let items = obj
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !items.is_array() {
        *items = Value::Array(as_list(items));
    }
    let Value::Array(items) = items else {
        return Ok(());
    };
    match (op, sub) {
        (Op::Remove, None) => items.retain(|item| !matches(filter, item)),
        (Op::Remove, Some(sub)) => {
            for item in items.iter_mut().filter(|i| matches(filter, i)) {
                if let Value::Object(map) = item {
                    let k = existing_key(map, sub);
                    map.remove(&k);
                }
            }
        }
        (Op::Add | Op::Replace, _) => {
            let value = value.cloned().unwrap_or(Value::Null);
            let mut hit = false;
            for item in items.iter_mut().filter(|i| matches(filter, i)) {
                hit = true;
                set_in(item, sub, &value);
            }
            if !hit {
                let mut item = Value::Object(implied_by(filter).ok_or_else(|| {
                    ScimError::bad_request(
                        ScimType::NoTarget,
                        format!("no value of '{key}' matches the path's filter '{filter}'"),
                    )
                })?);
                set_in(&mut item, sub, &value);
                items.push(item);
            }
        }
    }
    if items.is_empty() {
        obj.remove(key);
    }
    Ok(())
}

fn set_in(item: &mut Value, sub: Option<&str>, value: &Value) {
    match (item, sub, value) {
        (Value::Object(map), Some(sub), v) => {
            let k = existing_key(map, sub);
            map.insert(k, v.clone());
        }
        (Value::Object(map), None, Value::Object(new)) => {
            for (k, v) in new {
                let k = existing_key(map, k);
                map.insert(k, v.clone());
            }
        }
        (item, None, v) => *item = v.clone(),
        _ => {}
    }
}

/// The element a filter of `eq` comparisons joined by `and` describes (`type eq "work"` gives
/// `{"type": "work"}`); `None` for any other filter.
fn implied_by(filter: &Filter) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare {
            path:
                Path {
                    attr:
                        AttrPath {
                            urn: None,
                            name,
                            sub: None,
                        },
                    filter: None,
                    sub: None,
                },
            op: CompareOp::Eq,
            value,
        } => {
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            Some(Map::from_iter([(name.clone(), v)]))
        }
        Filter::And(a, b) => {
            let mut m = implied_by(a)?;
            m.extend(implied_by(b)?);
            Some(m)
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
