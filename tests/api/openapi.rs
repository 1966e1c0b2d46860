//! The OpenAPI document covers the router: every route documented with its methods, the bearer
//! scheme on exactly the protected operations, problem responses and rate-limit headers
//! everywhere.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, header, json, spawn_app};

const METHODS: [&str; 6] = ["get", "put", "post", "delete", "patch", "head"];

async fn document(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    json(resp).await
}

/// A concrete URL for a documented path template (`{id}` → a plausible value).
fn concrete(template: &str) -> String {
    let mut out = String::from("/api/v1");
    for segment in template.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if segment.starts_with('{') {
            out.push_str("probe_0000000000000000000000000");
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// Every (path, method, operation) in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((path.clone(), method.to_owned(), op.clone()));
            }
        }
    }
    assert!(!out.is_empty());
    out
}

/// Whether the operation requires credentials of some scheme.
fn has_security(op: &Value) -> bool {
    op["security"].as_array().is_some_and(|reqs| {
        reqs.iter()
            .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
    })
}

/// Whether the operation accepts credentials of the scheme `name`.
fn declares(op: &Value, name: &str) -> bool {
    op["security"]
        .as_array()
        .is_some_and(|reqs| reqs.iter().any(|r| r.get(name).is_some()))
}

#[tokio::test]
async fn every_documented_path_is_routed_with_exactly_the_documented_methods() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    for (template, item) in paths {
        let url = concrete(template);
        let mut documented: Vec<String> = METHODS
            .iter()
            .filter(|m| **m != "head" && item.get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        // TRACE is never routed, so the router answers 405 listing what it does route...
        let resp = app.request(Method::TRACE, &url).send().await.unwrap();
        match resp.status().as_u16() {
            405 => {
                let allow = header(&resp, "allow").unwrap_or_default();
                let mut routed: Vec<String> = allow
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty() && m != "HEAD")
                    .collect();
                routed.sort();
                assert_eq!(routed, documented, "{template}: Allow {allow}");
            }
            // ...unless an authentication layer for other credentials (the device agent's node
            // credential) refuses the API token first; such paths must say so.
            401 => {
                for method in &documented {
                    let op = &item[method.to_lowercase()];
                    assert!(
                        has_security(op) && !declares(op, "bearer"),
                        "{method} {template} refuses an API token but documents no other scheme"
                    );
                }
            }
            other => panic!("TRACE {template}: {other}"),
        }
        // Every documented method reaches a handler (not the router's 404 or 405).
        for method in &documented {
            let resp = app
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {template}: {text}");
            assert!(
                !text.contains("no route for this path"),
                "{method} {template} is routed: {text}"
            );
        }
    }
}

#[tokio::test]
async fn every_route_in_the_source_is_documented() {
    // axum cannot list a router's routes, so read them where they are declared: `routes!(…)`
    // registrations are documented by construction (each handler needs `#[utoipa::path]`);
    // plain `.route("…")` calls are not, and each must be a documented path or a known alias.
    let app = spawn_app().await;
    let doc = document(&app).await;
    let documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| format!("/api/v1{p}"))
        .collect();
    let aliases = ["/api/openapi.json"];
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).unwrap();
        // Only the code before the unit tests declares the server's routes.
        let source = source.split("#[cfg(test)]").next().unwrap();
        for (i, _) in source.match_indices(".route(\"") {
            let rest = &source[i + ".route(\"".len()..];
            let route = &rest[..rest.find('"').unwrap()];
            checked += 1;
            assert!(
                aliases.contains(&route) || documented.iter().any(|d| d == route),
                "{} routes {route} without documenting it",
                path.display()
            );
        }
    }
    assert!(checked >= 1, "the alias route was found");
}

#[tokio::test]
async fn exactly_the_operations_that_need_a_token_declare_a_security_scheme() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["bearer"]["scheme"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some("bearer")
    );
    let mut bearer_operations = 0;
    for (template, method, op) in operations(&doc) {
        let url = concrete(&template);
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement.as_object().unwrap().keys() {
                assert!(
                    schemes[name].is_object(),
                    "{method} {template}: scheme {name}"
                );
            }
        }
        // No Authorization header at all: 401 exactly when the document asks for credentials.
        let resp = app
            .client
            .request(method.clone(), app.url(&url))
            .send()
            .await
            .unwrap();
        let needs_credentials = resp.status() == 401;
        assert_eq!(
            has_security(&op),
            needs_credentials,
            "{method} {template}: documented security vs. a {} without credentials",
            resp.status()
        );
        if !needs_credentials {
            continue;
        }
        for status in ["401", "403"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{method} {template} documents {status}"
            );
        }
        // With an API token: accepted exactly when the operation declares the bearer scheme.
        let resp = app.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(
            declares(&op, "bearer"),
            resp.status() != 401,
            "{method} {template}: the bearer scheme vs. a {} with an API token",
            resp.status()
        );
        if declares(&op, "bearer") {
            bearer_operations += 1;
        }
    }
    assert!(bearer_operations >= 4, "at least the /tokens operations");
}

#[tokio::test]
async fn every_operation_documents_problem_responses_and_the_common_headers() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["components"]["schemas"]["ProblemBody"]["properties"]["request_id"].is_object());
    for (template, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        for status in ["400", "429", "500", "503"] {
            let problem = &responses
                .get(status)
                .unwrap_or_else(|| panic!("{method} {template} documents {status}"))["content"]["application/problem+json"]
                ["schema"]["$ref"];
            assert_eq!(
                problem, "#/components/schemas/ProblemBody",
                "{method} {template} {status}"
            );
        }
        if op.get("requestBody").is_some() {
            for status in ["413", "415"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {template} {status}"
                );
            }
        }
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {template} documents its success"
        );
        for (status, response) in responses {
            for name in [
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ] {
                assert!(
                    response["headers"].get(name).is_some(),
                    "{method} {template} {status} documents {name}"
                );
            }
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]
                        .get("application/problem+json")
                        .is_some(),
                    "{method} {template} {status} is a problem"
                );
            }
        }
        if responses.contains_key("429") {
            assert!(
                responses["429"]["headers"].get("Retry-After").is_some(),
                "{method} {template} 429 documents Retry-After"
            );
        }
    }
}

#[tokio::test]
async fn list_operations_document_the_pagination_parameters() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let list = &doc["paths"]["/tokens"]["get"];
    let names: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["limit", "cursor", "filter", "sort"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let create = &doc["paths"]["/tokens"]["post"];
    assert!(create["responses"]["201"].is_object());
    assert!(create["requestBody"]["content"]["application/json"].is_object());
}

#[tokio::test]
async fn the_event_shape_is_documented_once_with_an_example_of_every_event_type() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schema = &doc["components"]["schemas"]["EventView"];
    for field in [
        "id",
        "event_id",
        "type",
        "time",
        "org_id",
        "actor",
        "subject",
        "request_id",
        "data",
    ] {
        assert!(
            schema["properties"].get(field).is_some(),
            "EventView documents {field}: {schema}"
        );
    }
    let examples = schema["examples"].as_array().expect("examples");
    let mut types: Vec<&str> = examples
        .iter()
        .map(|e| e["type"].as_str().expect("a type"))
        .collect();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), examples.len(), "one example per type");
    for t in [
        "org.created",
        "token.created",
        "key.created",
        "device.registered",
        "device.removed",
    ] {
        assert!(types.contains(&t), "an example of {t}");
    }
    // Device history is served in the same shape.
    let detail = &doc["components"]["schemas"]["DeviceDetail"];
    assert!(
        detail.to_string().contains("EventView"),
        "device history uses the one event view: {detail}"
    );
}
