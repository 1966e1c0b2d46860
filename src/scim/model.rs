//! Users and groups as SCIM JSON, and back.
//!
//! [`ScimUser`] and [`ScimGroup`] hold exactly what the directory stores. `from_json` reads a
//! POST/PUT body or a patched document: attribute names in any case, unknown attributes
//! dropped (Entra's default mappings send more than we keep; so does Okta's `password`),
//! wrong types refused with `invalidValue` naming the attribute, `"True"`/`"False"` accepted
//! for booleans. `to_json` renders only attributes `/Schemas` advertises.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::eval::member;

/// A user's SCIM attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The one address we keep: the primary one, else the `work` one, else the first.
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
}

/// A group's SCIM attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    pub display_name: String,
    pub external_id: Option<String>,
    /// Member user ids, in the order first sent, without duplicates.
    pub members: Vec<String>,
}

/// Longest string attribute we accept, in characters.
pub const MAX_STRING: usize = 256;

fn string(doc: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match member(doc, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_STRING => Err(ScimError::invalid_value(
            format!("'{name}' is longer than {MAX_STRING} characters"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ScimError::invalid_value(
            format!("'{name}' contains control characters"),
        )),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!(
            "'{name}' must be a string"
        ))),
    }
}

/// A boolean, or Entra's `"True"`/`"False"`.
fn boolean(doc: &Value, name: &str) -> Result<Option<bool>, ScimError> {
    match member(doc, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ScimError::invalid_value(format!(
            "'{name}' must be a boolean"
        ))),
    }
}

fn object<'a>(doc: &'a Value, name: &str) -> Result<Option<&'a Value>, ScimError> {
    match member(doc, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(ScimError::invalid_value(format!(
            "'{name}' must be an object"
        ))),
    }
}

/// A multi-valued attribute's values (a lone object counts as one).
fn items<'a>(doc: &'a Value, name: &str) -> Result<Vec<&'a Value>, ScimError> {
    match member(doc, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if let Some(bad) = items.iter().position(|i| !i.is_object()) {
                return Err(ScimError::invalid_value(format!(
                    "'{name}[{bad}]' must be an object"
                )));
            }
            Ok(items.iter().collect())
        }
        Some(v @ Value::Object(_)) => Ok(vec![v]),
        Some(_) => Err(ScimError::invalid_value(format!(
            "'{name}' must be an array"
        ))),
    }
}

fn required(value: Option<String>, name: &str) -> Result<String, ScimError> {
    value.ok_or_else(|| ScimError::invalid_value(format!("'{name}' is required")))
}

impl ScimUser {
    pub fn from_json(doc: &Value) -> Result<ScimUser, ScimError> {
        if !doc.is_object() {
            return Err(ScimError::invalid_syntax("a User must be a JSON object"));
        }
        let user_name = required(string(doc, "userName")?, "userName")?;
        let (given_name, family_name) = match object(doc, "name")? {
            Some(name) => (string(name, "givenName")?, string(name, "familyName")?),
            None => (None, None),
        };
        let emails = items(doc, "emails")?;
        let mut addresses = Vec::with_capacity(emails.len());
        for (n, e) in emails.iter().enumerate() {
            let value = string(e, "value").map_err(|e| nested(e, "emails", n))?;
            let primary = boolean(e, "primary").map_err(|e| nested(e, "emails", n))?;
            let kind = string(e, "type").map_err(|e| nested(e, "emails", n))?;
            if let Some(value) = value {
                addresses.push((value, primary == Some(true), kind));
            }
        }
        let email = addresses
            .iter()
            .find(|(_, primary, _)| *primary)
            .or_else(|| {
                addresses.iter().find(|(_, _, kind)| {
                    kind.as_deref()
                        .is_some_and(|k| k.eq_ignore_ascii_case("work"))
                })
            })
            .or(addresses.first())
            .map(|(value, _, _)| value.clone());
        Ok(ScimUser {
            user_name,
            display_name: string(doc, "displayName")?,
            given_name,
            family_name,
            email,
            external_id: string(doc, "externalId")?,
            active: boolean(doc, "active")?.unwrap_or(true),
        })
    }

    /// The core attributes, without `id`, `meta`, `schemas` and `groups` (the caller adds them).
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("userName".into(), self.user_name.clone().into());
        let mut name = Map::new();
        if let Some(g) = &self.given_name {
            name.insert("givenName".into(), g.clone().into());
        }
        if let Some(f) = &self.family_name {
            name.insert("familyName".into(), f.clone().into());
        }
        if !name.is_empty() {
            doc.insert("name".into(), name.into());
        }
        if let Some(d) = &self.display_name {
            doc.insert("displayName".into(), d.clone().into());
        }
        if let Some(e) = &self.email {
            doc.insert("emails".into(), json!([{"value": e, "type": "work"}]));
        }
        doc.insert("active".into(), self.active.into());
        if let Some(x) = &self.external_id {
            doc.insert("externalId".into(), x.clone().into());
        }
        Value::Object(doc)
    }
}

fn nested(mut e: ScimError, name: &str, n: usize) -> ScimError {
    e.detail = format!("{name}[{n}]: {}", e.detail);
    e
}

impl ScimGroup {
    pub fn from_json(doc: &Value) -> Result<ScimGroup, ScimError> {
        if !doc.is_object() {
            return Err(ScimError::invalid_syntax("a Group must be a JSON object"));
        }
        let mut members: Vec<String> = Vec::new();
        for (n, m) in items(doc, "members")?.into_iter().enumerate() {
            let id = string(m, "value")
                .and_then(|v| required(v, "value"))
                .map_err(|e| nested(e, "members", n))?;
            if !members.contains(&id) {
                members.push(id);
            }
        }
        Ok(ScimGroup {
            display_name: required(string(doc, "displayName")?, "displayName")?,
            external_id: string(doc, "externalId")?,
            members,
        })
    }

    /// The core attributes, with members as bare `value`s (the caller adds `$ref`s).
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("displayName".into(), self.display_name.clone().into());
        if !self.members.is_empty() {
            let members: Vec<Value> = self.members.iter().map(|m| json!({"value": m})).collect();
            doc.insert("members".into(), members.into());
        }
        if let Some(x) = &self.external_id {
            doc.insert("externalId".into(), x.clone().into());
        }
        Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_entra_create_body() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
            "roles": [],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "1"}
        });
        let user = ScimUser::from_json(&body).unwrap();
        assert_eq!(user.given_name.as_deref(), Some("givenName"));
        assert_eq!(
            user.email.as_deref(),
            Some("Test_User_fd0ea19b@testuser.com")
        );
        assert!(user.active);
        let back = ScimUser::from_json(&user.to_json()).unwrap();
        assert_eq!(back, user);
    }

    #[test]
    fn refuses_wrong_types_naming_the_attribute() {
        for (body, detail) in [
            (json!({"userName": 5}), "'userName' must be a string"),
            (json!({"displayName": "x"}), "'userName' is required"),
            (
                json!({"userName": "a", "active": "yes"}),
                "'active' must be a boolean",
            ),
            (
                json!({"userName": "a", "emails": [{"value": 1}]}),
                "emails[0]: 'value'",
            ),
            (
                json!({"userName": "a", "name": "x"}),
                "'name' must be an object",
            ),
            (json!([]), "must be a JSON object"),
        ] {
            let err = ScimUser::from_json(&body).unwrap_err();
            assert!(err.detail.contains(detail), "{body}: {}", err.detail);
        }
        let err = ScimGroup::from_json(&json!({"displayName": "g", "members": [{"display": "x"}]}))
            .unwrap_err();
        assert!(
            err.detail.contains("members[0]: 'value' is required"),
            "{}",
            err.detail
        );
    }

    #[test]
    fn okta_strings_and_extra_attributes() {
        let user = ScimUser::from_json(&json!({
            "UserName": "a@b.c", "Active": "False", "password": "secret",
            "emails": [{"value": "home@b.c", "type": "home"}, {"value": "a@b.c", "type": "work"}],
            "groups": []
        }))
        .unwrap();
        assert!(!user.active);
        assert_eq!(user.email.as_deref(), Some("a@b.c"));
    }
}
