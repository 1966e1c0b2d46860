//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//!
//! [`finish`] adds what every operation shares so no handler has to repeat it: the problem
//! responses (with the RFC 7807 schema) and the `X-Request-ID` and `X-RateLimit-*` headers on
//! every response.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Doc, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::event_view::{self, EventView};
use super::problem::{PROBLEM_JSON, ProblemBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "QuickZTNA API",
        description = "Programmatic surface of the QuickZTNA control plane: devices, users, policy, \
                       pre-auth keys, audit log. Errors are RFC 7807 problems; lists are cursor-paginated.",
        license(name = "Apache-2.0")
    ),
    servers((url = "/api/v1", description = "This server, API version 1")),
    components(schemas(ProblemBody, EventView)),
    modifiers(&BearerScheme, &EventExamples),
    tags(
        (name = "tokens", description = "API tokens (Settings → API tokens)"),
        (name = "keys", description = "Pre-auth keys, with which devices join"),
        (name = "devices", description = "The organization's devices"),
        (name = "audit", description = "The audit log: every change, as events, with the tamper-evident chain auditors verify"),
        (name = "events", description = "The same events as the audit log, pushed as they happen (Server-Sent Events)"),
        (name = "machine", description = "The device agent's API (`quickztna up`): register with a pre-auth key or its owner's sign-in, then heartbeat, fetch the netmap and rotate the node credential with it"),
        (name = "webhooks", description = "Signed POSTs of the organization's events (Settings → Webhooks); business and workforce plans"),
        (name = "sso", description = "Single sign-on: the organization's OpenID provider and SSO-domain rules"),
        (name = "meta", description = "Health, version and this document; unauthenticated"),
    )
)]
struct ApiDoc;

struct BearerScheme;

/// The event schema, documented once, with one example per event type.
struct EventExamples;

impl Modify for EventExamples {
    fn modify(&self, openapi: &mut Doc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        if let Some(RefOr::T(utoipa::openapi::Schema::Object(schema))) =
            components.schemas.get_mut("EventView")
        {
            schema.examples = event_view::examples();
        }
    }
}

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Doc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token: `Authorization: Bearer qz_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "node",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device's node credential from `POST /machine/register`: \
                         `Authorization: Bearer qzn_…` (valid only on /machine endpoints)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "poll",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The `poll_secret` a device sent to `POST /machine/login`: \
                         `Authorization: Bearer <poll_secret>` (valid only for that login)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document's fixed parts; routers add their paths to it.
pub fn base() -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// Adds the shared responses and headers to every operation.
pub fn finish(mut doc: Doc) -> Doc {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
        ]
        .into_iter()
        .flatten()
        {
            decorate(op);
        }
    }
    doc
}

fn decorate(op: &mut Operation) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mutating_body = op.request_body.is_some();
    let mut problems: Vec<(&str, &str)> = vec![
        ("400", "Malformed request or invalid field values"),
        ("429", "Rate limit hit; honour Retry-After"),
        ("500", "Server-side bug; quote the request_id"),
        ("503", "Transient unavailability; retry with backoff"),
    ];
    if authenticated {
        problems.push(("401", "Missing, invalid, expired or revoked token"));
        problems.push(("403", "The token lacks the scope this endpoint needs"));
        problems.push(("404", "No such resource in this organization"));
    }
    if mutating_body {
        problems.push((
            "408",
            "The body did not arrive within the body read timeout",
        ));
        problems.push(("409", "Conflicts with the resource's current state"));
        problems.push(("413", "Request body too large"));
        problems.push(("415", "Content-Type must be application/json"));
    }
    for (status, description) in problems {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(description)));
    }
    for (status, resp) in op.responses.responses.iter_mut() {
        if let RefOr::T(resp) = resp {
            add_common_headers(&mut resp.headers);
            // The seed page tells clients to honour Retry-After on 429 (and 503 sets it too).
            if status == "429" || status == "503" {
                resp.headers
                    .entry("Retry-After".to_owned())
                    .or_insert_with(|| {
                        HeaderBuilder::new()
                            .schema(
                                utoipa::openapi::schema::ObjectBuilder::new()
                                    .schema_type(utoipa::openapi::schema::Type::Integer)
                                    .build(),
                            )
                            .description(Some("Seconds to wait before retrying"))
                            .build()
                    });
            }
        }
    }
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ProblemBody")))),
        )
        .build()
}

fn add_common_headers(headers: &mut std::collections::BTreeMap<String, utoipa::openapi::Header>) {
    let int = || {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .build()
    };
    let string = || {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .build()
    };
    let entries = [
        (
            "X-Request-ID",
            string(),
            "Correlation id: yours if you sent one, else generated",
        ),
        (
            "X-RateLimit-Limit",
            int(),
            "Requests per minute allowed for this class (read or write)",
        ),
        (
            "X-RateLimit-Remaining",
            int(),
            "Requests you can make right now",
        ),
        (
            "X-RateLimit-Reset",
            int(),
            "Unix time (seconds) when the allowance is full again",
        ),
    ];
    for (name, schema, description) in entries {
        headers.entry(name.to_owned()).or_insert_with(|| {
            HeaderBuilder::new()
                .schema(schema)
                .description(Some(description))
                .build()
        });
    }
}
