//! The discovery endpoints (RFC 7644 §4) and the search across resource types. There is no
//! `/Bulk` endpoint: `ServiceProviderConfig` says `bulk.supported: false`, so clients never
//! call it (a call gets the SCIM 404 of any unknown path).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::error::ScimError;
use super::query::ListParams;
use super::schema::{self, list_response};
use super::{base_url, groups, json_body, require, respond, users};
use crate::http::auth::Principal;
use crate::state::AppState;

pub async fn config(
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    require(&principal)?;
    Ok(respond(
        StatusCode::OK,
        &schema::service_provider_config(&base_url(&headers)),
    ))
}

pub async fn resource_types(
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let all = schema::resource_types(&base_url(&headers));
    Ok(respond(StatusCode::OK, &list_response(all.len(), 1, all)))
}

pub async fn resource_type(
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    require(&principal)?;
    by_id(
        schema::resource_types(&base_url(&headers)),
        &id,
        "resource type",
    )
}

pub async fn schemas(
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let all = schema::schemas(&base_url(&headers));
    Ok(respond(StatusCode::OK, &list_response(all.len(), 1, all)))
}

pub async fn schema(
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    require(&principal)?;
    by_id(schema::schemas(&base_url(&headers)), &id, "schema")
}

fn by_id(all: Vec<serde_json::Value>, id: &str, what: &str) -> Result<Response, ScimError> {
    all.into_iter()
        .find(|r| r["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
        .map(|r| respond(StatusCode::OK, &r))
        .ok_or_else(|| {
            ScimError::not_found(format!("no {what} '{}'", crate::domain::text::echo(id)))
        })
}

/// `POST /.search` across resource types: users, then groups.
pub async fn search_all(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    require(&principal)?;
    let params = ListParams::from_search(&json_body(&body)?)?;
    let base = base_url(&headers);
    let models = state.models().load();
    let org = models.state.org(&principal.org_id);
    let mut found = users::matching(org, params.filter.as_ref(), &base);
    found.extend(groups::matching(org, params.filter.as_ref(), &base));
    Ok(respond(StatusCode::OK, &params.page(found)))
}
