//! `/scim/v2/Groups`: the identity provider's groups and their members.
//!
//! Membership changes are computed inside the decision, on the group as the organization's
//! directory lock sees it, and become `group.member_added`/`group.member_removed` events for
//! what actually changes, so concurrent PATCHes (Entra sends one per membership batch) never
//! lose members and a resent membership is a no-op. A rename and a membership change in one
//! request are one append.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use projections::OrgView;
use projections::directory::Group;
use serde_json::{Value, json};

use super::error::ScimError;
use super::eval::matches;
use super::filter::{CompValue, CompareOp, Filter};
use super::model::ScimGroup;
use super::patch::patch_group;
use super::query::{ListParams, Projection};
use super::schema::GROUP_SCHEMA;
use super::{base_url, command, json_body, merge, require, respond, timestamp, write};
use crate::domain::directory::{self, NewGroup};
use crate::domain::{Decision, Rejection};
use crate::http::auth::Principal;
use crate::http::request_id::RequestId;
use crate::mint;
use crate::state::AppState;

/// A group's SCIM attributes.
pub fn scim_group(g: &Group) -> ScimGroup {
    ScimGroup {
        display_name: g.display_name.clone(),
        external_id: g.external_id.clone(),
        members: g.members.iter().cloned().collect(),
    }
}

/// The full SCIM representation of a group.
pub fn render(g: &Group, base: &str) -> Value {
    let mut doc = scim_group(g).to_json();
    if let Some(Value::Array(members)) = doc.get_mut("members") {
        for m in members {
            let id = m["value"].as_str().unwrap_or_default().to_owned();
            m["$ref"] = format!("{base}/Users/{id}").into();
        }
    }
    doc["schemas"] = json!([GROUP_SCHEMA]);
    doc["id"] = g.id.clone().into();
    doc["meta"] = json!({
        "resourceType": "Group",
        "created": timestamp(g.created_at),
        "lastModified": timestamp(g.updated_at),
        "location": format!("{base}/Groups/{}", g.id),
    });
    doc
}

fn no_group(id: &str) -> ScimError {
    ScimError::not_found(format!("no group '{}'", crate::domain::text::echo(id)))
}

/// One index lookup for an `eq` on `displayName` or `externalId` (how Entra matches groups),
/// every group otherwise.
fn candidates<'a>(org: OrgView<'a>, filter: Option<&Filter>) -> Vec<&'a Group> {
    fn indexed<'a>(org: OrgView<'a>, f: &Filter) -> Option<Option<&'a Group>> {
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
                    .is_none_or(|u| u.eq_ignore_ascii_case(GROUP_SCHEMA)) =>
            {
                if path.attr.is("displayName") {
                    Some(org.group_by_name(v))
                } else if path.attr.is("externalId") {
                    Some(org.group_by_external_id(v))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
    match filter.and_then(|f| indexed(org, f)) {
        Some(found) => found.into_iter().collect(),
        None => org.groups().collect(),
    }
}

/// The rendered resources `filter` matches, in the directory's stable order.
pub fn matching(org: OrgView<'_>, filter: Option<&Filter>, base: &str) -> Vec<Value> {
    candidates(org, filter)
        .into_iter()
        .map(|g| render(g, base))
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
        None => params.page_of(org.groups().collect(), |x| render(x, &base)),
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
    let group = org.group(id).ok_or_else(|| no_group(id))?;
    let mut doc = render(group, &base_url(headers));
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

/// A membership refers to users of the organization only: another organization's user id is
/// as unknown as a made-up one.
fn check_members(org: OrgView<'_>, members: &[String]) -> Result<(), ScimError> {
    match members.iter().find(|m| org.user(m).is_none()) {
        Some(m) => Err(ScimError::invalid_value(format!(
            "member '{}' is not a user of this organization",
            crate::domain::text::echo(m)
        ))),
        None => Ok(()),
    }
}

/// Entra may make a group a member of another; memberships here are of people only, so a
/// nested group is left out rather than failing the whole request (with the people in it).
fn without_nested_groups(org: OrgView<'_>, group: &mut ScimGroup) {
    group.members.retain(|m| {
        let nested = org.group(m).is_some();
        if nested {
            tracing::info!(member = %m, "SCIM: a group as a group member is left out");
        }
        !nested
    });
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
    let mut group = ScimGroup::from_json(&json_body(&body)?)?;
    {
        let models = state.models().load();
        without_nested_groups(models.state.org(&principal.org_id), &mut group);
    }
    let new = NewGroup {
        id: mint::id("grp"),
        display_name: group.display_name,
        external_id: group.external_id,
        source: "scim",
        members: group.members,
    };
    let id = new.id.clone();
    write(&state, command(&principal, &request_id), |org| {
        directory::create_group(org, new.clone())
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

/// The decision that makes group `id` into `new`: a rename and the membership difference, in
/// one append.
fn decide_change(org: OrgView<'_>, id: &str, new: &ScimGroup) -> Result<Decision, Rejection> {
    let rename = directory::update_group(org, id, &new.display_name, new.external_id.as_deref())?;
    let members = directory::replace_members(org, id, &new.members)?;
    Ok(merge(rename, members))
}

/// Runs a change computed from the group as the decision sees it; `change` may refuse with a
/// SCIM error of its own.
async fn change(
    state: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    id: &str,
    mut change: impl FnMut(&Group) -> Result<ScimGroup, ScimError>,
) -> Result<(), ScimError> {
    let mut refused: Option<ScimError> = None;
    let written = write(state, command(principal, request_id), |org| {
        let refuse = |e: ScimError, slot: &mut Option<ScimError>| {
            *slot = Some(e);
            Rejection::Invalid(String::new())
        };
        let Some(group) = org.group(id) else {
            return Err(refuse(no_group(id), &mut refused));
        };
        let mut new = change(group).map_err(|e| refuse(e, &mut refused))?;
        without_nested_groups(org, &mut new);
        check_members(org, &new.members).map_err(|e| refuse(e, &mut refused))?;
        decide_change(org, id, &new)
    })
    .await;
    match refused {
        Some(e) => Err(e),
        None => written,
    }
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
    let group = ScimGroup::from_json(&json_body(&body)?)?;
    change(&state, &principal, &request_id, &id, |_| Ok(group.clone())).await?;
    answer(
        &state,
        &principal,
        &headers,
        &id,
        StatusCode::OK,
        &projection,
    )
}

/// PATCH answers `204`, as Entra expects of groups (a group's body can be large).
pub async fn patch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request_id: RequestId,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let body = json_body(&body)?;
    super::patch::parse(&body)?;
    change(&state, &principal, &request_id, &id, |g| {
        patch_group(&scim_group(g), &body)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    require(&principal)?;
    write(&state, command(&principal, &request_id), |org| {
        directory::remove_group(org, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
