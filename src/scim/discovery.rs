//! The discovery endpoints (RFC 7644 §4) and the features we answer `501` for.

use axum::Extension;
use axum::extract::Path;
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::error::ScimError;
use super::schema::{self, list_response};
use super::{base_url, require, respond};
use crate::http::auth::Principal;

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
    by_id(schema::resource_types(&base_url(&headers)), &id, "resource type")
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

/// `POST /.search` across resource types: not offered (search `/Users/.search` or
/// `/Groups/.search`).
pub async fn search_all(Extension(principal): Extension<Principal>) -> Result<Response, ScimError> {
    require(&principal)?;
    Err(ScimError::not_implemented(
        "searching all resource types at once is not supported; use /Users/.search or \
         /Groups/.search",
    ))
}

/// `POST /Bulk`: not offered (`bulk.supported` is false).
pub async fn bulk(Extension(principal): Extension<Principal>) -> Result<Response, ScimError> {
    require(&principal)?;
    Err(ScimError::not_implemented("bulk operations are not supported"))
}
