//! `GET /api/v1/openapi.json`: the document describes exactly the routes the router serves
//! (the route table both are built from), each documented operation is answered by its
//! route with a status and content type the document names, and the whole document is
//! pinned as a snapshot (`tests/snapshots/openapi__document.snap`, reviewed when it
//! changes).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use meshscope_query::{AppState, openapi, router, routes};
use meshscope_storage::{Store, StoreConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(path, method)` of every operation in the document.
fn documented_operations(document: &Value) -> Vec<(String, String)> {
    let mut operations: Vec<(String, String)> = document["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    operations.sort();
    operations
}

#[test]
fn the_document_lists_every_served_operation_and_nothing_else() {
    let document = openapi::document_json();
    assert_eq!(document["openapi"], "3.1.0");
    let served = routes::served_operations();
    assert!(served.len() >= 11, "{served:?}");
    assert_eq!(documented_operations(&document), served);
}

#[test]
fn every_route_is_described_by_the_paths_it_serves() {
    for (route_path, operations) in routes::route_table() {
        assert!(
            route_path.starts_with("/api/v1/"),
            "{route_path} is outside the API"
        );
        assert!(
            !operations.is_empty(),
            "{route_path} is served without a description"
        );
        for (path, _) in &operations {
            match route_path.split_once("{*") {
                // A wildcard route serves the documented paths under its prefix.
                Some((prefix, _)) => assert!(path.starts_with(prefix), "{route_path}: {path}"),
                None => assert_eq!(path, route_path),
            }
        }
    }
}

#[test]
fn every_operation_describes_its_answers_with_schemas() {
    let document = openapi::document_json();
    for (path, method) in documented_operations(&document) {
        let operation = &document["paths"][&path][&method];
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path}: no success answer"
        );
        assert!(responses.contains_key("401"), "{method} {path}: no 401");
        for (status, response) in responses {
            let content = response["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} {status}: no content"));
            assert!(
                content.contains_key("application/json"),
                "{method} {path} {status}: no JSON"
            );
            for (media_type, media) in content {
                assert!(
                    media.get("schema").is_some(),
                    "{method} {path} {status} {media_type}: no schema"
                );
            }
        }
        let has_parameters = operation["parameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
            || operation.get("requestBody").is_some();
        if has_parameters {
            assert!(
                responses.contains_key("400"),
                "{method} {path}: takes input but describes no 400"
            );
        }
    }
}

/// Every `$ref` string under `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => found.push(reference.clone()),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[test]
fn every_reference_has_its_schema() {
    let document = openapi::document_json();
    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{reference} points outside the schemas"));
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{reference} has no schema"
        );
    }
}

#[test]
fn the_document_is_pinned() {
    insta::assert_json_snapshot!("document", openapi::document_json());
}

/// The documented path with each `{param}` filled with a sample value.
fn sample_uri(path: &str) -> String {
    path.replace("{id}", "shop%2Ffrontend")
}

#[tokio::test]
async fn each_documented_operation_is_answered_by_its_route() {
    let data_dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::in_dir(data_dir.path()))
        .await
        .unwrap();
    let app = router(AppState::new(Arc::new(store)));
    let document = openapi::document_json();
    let mut seen = BTreeSet::new();
    for (path, method) in documented_operations(&document) {
        let uri = sample_uri(&path);
        let request = match method.as_str() {
            "get" => Request::get(&uri).body(Body::empty()).unwrap(),
            "post" => Request::post(&uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({"sql": "SELECT 1 AS one"}).to_string()))
                .unwrap(),
            other => panic!("{other} {path}: no sample request for this method"),
        };
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16().to_string();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("no such API route"),
            "{method} {uri}: not routed"
        );
        let described = &document["paths"][&path][&method]["responses"][&status];
        assert!(
            described.is_object(),
            "{method} {uri}: answered {status}, which the document does not name: {text}"
        );
        assert!(
            described["content"]
                .as_object()
                .unwrap()
                .keys()
                .any(|media| content_type.starts_with(media.as_str())),
            "{method} {uri}: {content_type} is not a documented content type"
        );
        seen.insert((path, status));
    }
    // An empty store still answers most of them with data: the lists are empty, not absent.
    assert!(seen.contains(&("/api/v1/topology".to_owned(), "200".to_owned())));
    assert!(seen.contains(&("/api/v1/sql".to_owned(), "200".to_owned())));
    assert!(seen.contains(&("/api/v1/openapi.json".to_owned(), "200".to_owned())));
    assert!(seen.contains(&("/api/v1/services/{id}".to_owned(), "404".to_owned())));
}

#[tokio::test]
async fn the_document_is_served_as_json() {
    let data_dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::in_dir(data_dir.path()))
        .await
        .unwrap();
    let app = router(AppState::new(Arc::new(store)));
    let request = Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, openapi::document_json());
}
