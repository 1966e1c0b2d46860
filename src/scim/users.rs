//! `/scim/v2/Users`: create, read, list and search, replace, patch and delete people.
//!
//! `active: false` deactivates the user (`user.deactivated`: their devices stop authenticating
//! but stay), `true` reactivates them; DELETE removes them with every device they own, in one
//! append. A PATCH is applied inside the decision, on the user as the organization's directory
//! lock sees them, so two concurrent PATCHes cannot lose each other's change.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use events::event::UserProfile;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use projections::OrgView;
use projections::directory::User;
use serde_json::{Value, json};

use super::error::ScimError;
use super::eval::matches;
use super::filter::{CompValue, CompareOp, Filter};
use super::model::ScimUser;
use super::patch::patch_user;
use super::query::{ListParams, Projection};
use super::schema::USER_SCHEMA;
use super::{base_url, command, json_body, require, respond, timestamp, write};
use crate::domain::Rejection;
use crate::domain::directory::{self, NewUser, Role};
use crate::http::auth::Principal;
use crate::http::request_id::RequestId;
use crate::mint;
use crate::state::AppState;

/// Why SCIM removes a user (`user.removed`'s reason).
pub const SCIM_DELETED: &str = "scim_deleted";

/// A user's SCIM attributes.
pub fn scim_user(u: &User) -> ScimUser {
    let p = &u.profile;
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    ScimUser {
        user_name: p.user_name.clone(),
        display_name: some(&p.display_name),
        given_name: p.given_name.clone(),
        family_name: p.family_name.clone(),
        email: some(&p.email),
        external_id: p.external_id.clone(),
        active: u.active,
    }
}

/// The profile the directory stores for SCIM attributes.
pub fn profile(s: &ScimUser) -> UserProfile {
    UserProfile {
        user_name: s.user_name.clone(),
        email: s.email.clone().unwrap_or_default(),
        display_name: s.display_name.clone().unwrap_or_default(),
        given_name: s.given_name.clone(),
        family_name: s.family_name.clone(),
        external_id: s.external_id.clone(),
    }
}

/// The full SCIM representation of a user.
pub fn render(org: OrgView<'_>, u: &User, base: &str) -> Value {
    let mut doc = scim_user(u).to_json();
    doc["schemas"] = json!([USER_SCHEMA]);
    doc["id"] = u.id.clone().into();
    let groups: Vec<Value> = org
        .groups_of(&u.id)
        .map(|g| {
            json!({
                "value": g.id,
                "$ref": format!("{base}/Groups/{}", g.id),
                "display": g.display_name,
            })
        })
        .collect();
    if !groups.is_empty() {
        doc["groups"] = groups.into();
    }
    doc["meta"] = json!({
        "resourceType": "User",
        "created": timestamp(u.created_at),
        "lastModified": timestamp(u.updated_at),
        "location": format!("{base}/Users/{}", u.id),
    });
    doc
}

fn no_user(id: &str) -> ScimError {
    ScimError::not_found(format!("no user '{}'", crate::domain::text::echo(id)))
}

/// The users a filter can match: one index lookup when it is (or starts with an `and` of) an
/// `eq` on `userName`, `externalId` or the work email — how identity providers match — and
/// everyone otherwise.
fn candidates<'a>(org: OrgView<'a>, filter: Option<&Filter>) -> Vec<&'a User> {
    fn indexed<'a>(org: OrgView<'a>, f: &Filter) -> Option<Option<&'a User>> {
        match f {
            Filter::And(a, _) => indexed(org, a),
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::Str(v),
            } if path.filter.is_none()
                && path.sub.is_none()
                && path
                    .attr
                    .urn
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(USER_SCHEMA)) =>
            {
                if path.attr.is("userName") {
                    Some(org.user_by_name(v))
                } else if path.attr.is("externalId") {
                    Some(org.user_by_external_id(v))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
    match filter.and_then(|f| indexed(org, f)) {
        Some(found) => found.into_iter().collect(),
        None => org.users().collect(),
    }
}

/// The rendered resources `filter` matches, in the directory's stable order.
pub fn matching(org: OrgView<'_>, filter: Option<&Filter>, base: &str) -> Vec<Value> {
    candidates(org, filter)
        .into_iter()
        .map(|u| render(org, u, base))
        .filter(|doc| filter.is_none_or(|f| matches(f, doc)))
        .collect()
}

async fn list_with(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    params: ListParams,
) -> Result<Response, ScimError> {
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let base = base_url(headers);
    let page = match &params.filter {
        Some(filter) => params.page(matching(org, Some(filter), &base)),
        None => params.page_of(org.users().collect(), |x| render(org, x, &base)),
    };
    Ok(respond(StatusCode::OK, &page))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let params = ListParams::from_query(query.as_deref())?;
    list_with(&state, &principal, &headers, params).await
}

pub async fn search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let params = ListParams::from_search(&json_body(&body)?)?;
    list_with(&state, &principal, &headers, params).await
}

/// Answers with the user as stored now.
fn answer(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    id: &str,
    status: StatusCode,
    projection: &Projection,
) -> Result<Response, ScimError> {
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let user = org.user(id).ok_or_else(|| no_user(id))?;
    let mut doc = render(org, user, &base_url(headers));
    projection.apply(&mut doc);
    let mut response = respond(status, &doc);
    if status == StatusCode::CREATED
        && let Some(location) = doc["meta"]["location"].as_str()
        && let Ok(value) = HeaderValue::from_str(location)
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let projection = Projection::from_query(query.as_deref())?;
    let user = ScimUser::from_json(&json_body(&body)?)?;
    let new = NewUser {
        id: mint::id("usr"),
        profile: profile(&user),
        role: Role::Member,
        active: user.active,
        source: "scim",
    };
    let id = new.id.clone();
    write(&state, command(&principal, &request_id), |org| {
        directory::provision_user(org, new.clone())
    })
    .await?;
    answer(
        &state,
        &principal,
        &headers,
        &id,
        StatusCode::CREATED,
        &projection,
    )
}

pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let projection = Projection::from_query(query.as_deref())?;
    answer(
        &state,
        &principal,
        &headers,
        &id,
        StatusCode::OK,
        &projection,
    )
}

pub async fn replace(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request_id: RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let projection = Projection::from_query(query.as_deref())?;
    let user = ScimUser::from_json(&json_body(&body)?)?;
    let new = profile(&user);
    write(&state, command(&principal, &request_id), |org| {
        directory::replace_user(org, &id, new.clone(), Some(user.active))
    })
    .await?;
    answer(
        &state,
        &principal,
        &headers,
        &id,
        StatusCode::OK,
        &projection,
    )
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request_id: RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let projection = Projection::from_query(query.as_deref())?;
    let body = json_body(&body)?;
    super::patch::parse(&body)?;
    let mut refused: Option<ScimError> = None;
    let written = write(&state, command(&principal, &request_id), |org| {
        let user = org.user(&id).ok_or_else(|| {
            refused = Some(no_user(&id));
            Rejection::NotFound(String::new())
        })?;
        let patched = patch_user(&scim_user(user), &body).map_err(|e| {
            refused = Some(e);
            Rejection::Invalid(String::new())
        })?;
        directory::replace_user(org, &id, profile(&patched), Some(patched.active))
    })
    .await;
    if let Some(e) = refused {
        return Err(e);
    }
    written?;
    answer(
        &state,
        &principal,
        &headers,
        &id,
        StatusCode::OK,
        &projection,
    )
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    require(&principal)?;
    write(&state, command(&principal, &request_id), |org| {
        directory::remove_user(org, &id, SCIM_DELETED)
    })
    .await
    .map_err(|e| match e.status {
        StatusCode::NOT_FOUND => no_user(&id),
        _ => e,
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
