//! What we tell SCIM clients we support: `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`.
//!
//! The schemas advertise only the attributes the directory really stores, because clients take
//! them at their word: `scim2 test` writes and reads back every mutable attribute a schema lists,
//! and refuses a response carrying one it does not list. So `emails` has `value` and `type` (we
//! keep one address, always of type `work`, the type Entra matches on) but no `primary`, and
//! group `members` have `value` and `$ref` but no `display` (a client-chosen display would not
//! come back). `active` is marked required: we always hold it, so "removing" it has no meaning.
//! The same tables give the canonical spelling of attribute names, which clients may send in
//! any case.

use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Most resources one list page returns (`count` above it is lowered to it).
pub const MAX_RESULTS: usize = 1000;

/// The SCIM type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Complex,
    Reference,
}

/// One attribute of a schema, as `/Schemas` describes it.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    /// `readWrite`, `readOnly` or `immutable`.
    pub mutability: &'static str,
    /// `none` or `server`.
    pub uniqueness: &'static str,
    pub description: &'static str,
    pub sub: &'static [Attr],
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
}

const fn attr(name: &'static str, kind: Kind, description: &'static str) -> Attr {
    Attr {
        name,
        kind,
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: "readWrite",
        uniqueness: "none",
        description,
        sub: &[],
        canonical_values: &[],
        reference_types: &[],
    }
}

/// The attributes of a User.
pub static USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        uniqueness: "server",
        ..attr(
            "userName",
            Kind::String,
            "Unique identifier for the user, typically the sign-in name (UPN)",
        )
    },
    Attr {
        sub: &[
            attr("givenName", Kind::String, "Given name"),
            attr("familyName", Kind::String, "Family name"),
        ],
        ..attr("name", Kind::Complex, "The components of the user's name")
    },
    attr("displayName", Kind::String, "The name shown for the user"),
    Attr {
        multi_valued: true,
        sub: &[
            attr("value", Kind::String, "The email address"),
            Attr {
                canonical_values: &["work"],
                ..attr("type", Kind::String, "Always 'work': one address is kept")
            },
        ],
        ..attr(
            "emails",
            Kind::Complex,
            "The user's email address (one is kept)",
        )
    },
    Attr {
        required: true,
        ..attr(
            "active",
            Kind::Boolean,
            "false blocks the user's devices; true restores them",
        )
    },
    Attr {
        multi_valued: true,
        mutability: "readOnly",
        sub: &[
            Attr {
                mutability: "readOnly",
                ..attr("value", Kind::String, "The group's id")
            },
            Attr {
                mutability: "readOnly",
                reference_types: &["Group"],
                ..attr("$ref", Kind::Reference, "The group's URI")
            },
            Attr {
                mutability: "readOnly",
                ..attr("display", Kind::String, "The group's displayName")
            },
        ],
        ..attr(
            "groups",
            Kind::Complex,
            "The groups the user belongs to (managed through Groups)",
        )
    },
];

/// The attributes of a Group.
pub static GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        uniqueness: "server",
        ..attr("displayName", Kind::String, "The group's name")
    },
    Attr {
        multi_valued: true,
        sub: &[
            Attr {
                mutability: "immutable",
                ..attr("value", Kind::String, "The member user's id")
            },
            Attr {
                mutability: "immutable",
                reference_types: &["User"],
                ..attr("$ref", Kind::Reference, "The member user's URI")
            },
        ],
        ..attr("members", Kind::Complex, "The group's member users")
    },
];

/// The canonical spelling of `name` among `attrs`, matched case-insensitively.
pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex",
        Kind::Reference => "reference",
    }
}

fn describe(a: &Attr) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": kind_name(a.kind),
        "multiValued": a.multi_valued,
        "description": a.description,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": a.mutability,
        "returned": "default",
        "uniqueness": a.uniqueness,
    });
    if !a.sub.is_empty() {
        v["subAttributes"] = a.sub.iter().map(describe).collect();
    }
    if !a.canonical_values.is_empty() {
        v["canonicalValues"] = json!(a.canonical_values);
    }
    if !a.reference_types.is_empty() {
        v["referenceTypes"] = json!(a.reference_types);
    }
    v
}

/// `/ServiceProviderConfig`; `base` is the absolute URL of `/scim/v2`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/quickztna/quickztna#scim-provisioning",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "An API token with the scope 'scim', sent as 'Authorization: Bearer <token>'",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

/// The resource types, by id.
pub fn resource_types(base: &str) -> Vec<Value> {
    [
        (
            "User",
            "/Users",
            USER_SCHEMA,
            "People provisioned by the identity provider",
        ),
        ("Group", "/Groups", GROUP_SCHEMA, "Groups of users"),
    ]
    .into_iter()
    .map(|(id, endpoint, schema, description)| {
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": id,
            "name": id,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{id}"),
            },
        })
    })
    .collect()
}

/// The schemas, by id.
pub fn schemas(base: &str) -> Vec<Value> {
    [
        (USER_SCHEMA, "User", "User Account", USER_ATTRS),
        (GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS),
    ]
    .into_iter()
    .map(|(id, name, description, attrs)| {
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attrs.iter().map(describe).collect::<Vec<_>>(),
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{id}"),
            },
        })
    })
    .collect()
}

/// A ListResponse page.
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_describe_only_what_is_stored() {
        let user = &schemas("http://x/scim/v2")[0];
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "userName",
                "name",
                "displayName",
                "emails",
                "active",
                "groups"
            ]
        );
        assert_eq!(
            user["attributes"][3]["subAttributes"][1]["canonicalValues"],
            json!(["work"])
        );
        assert!(find(USER_ATTRS, "USERNAME").is_some_and(|a| a.name == "userName"));
        let spc = service_provider_config("http://x/scim/v2");
        assert_eq!(spc["patch"]["supported"], true);
        assert_eq!(spc["etag"]["supported"], false);
    }
}
