//! `/api/v1/services/{id}/endpoints/{endpoint}/dependencies`: what an inbound endpoint led
//! to and what led to it, from a closed minute's file and the open minute together.

use crate::mesh::*;
use crate::support::*;

const FRONTEND_ROOT: &str = "/api/v1/services/shop%2Ffrontend/endpoints/GET%20%2F/dependencies";

#[tokio::test]
async fn an_endpoint_lists_what_it_called_and_what_called_it() {
    let api = Api::new().await;
    let answer = api.ok(FRONTEND_ROOT).await;
    assert_eq!(answer["service"], json!("shop/frontend"));
    assert_eq!(answer["endpoint"], json!("GET /"));
    assert_eq!(answer["start"], json!(WINDOW_START));
    assert_eq!(answer["end"], json!(WINDOW_END));
    // 40 calls the minute before and 10 in the open one; 5 to payments, 1 failed.
    assert_json_matches(
        &answer["dependencies"],
        &json!([
            {"service": "shop/backend", "endpoint": "GET /items/{id}", "calls": 50, "errors": 4,
             "p50_ms": 20.0, "p95_ms": 20.0, "p99_ms": 20.0},
            {"service": "payments", "endpoint": "POST /charge", "calls": 5, "errors": 1,
             "p50_ms": 80.0, "p95_ms": 80.0, "p99_ms": 80.0},
        ]),
        "dependencies",
    );
    assert_json_matches(
        &answer["callers"],
        &json!([
            {"service": "shop/ingress", "endpoint": "GET /", "calls": 60, "errors": 0,
             "p50_ms": 40.0, "p95_ms": 40.0, "p99_ms": 40.0},
        ]),
        "callers",
    );
    // The closed minute alone.
    let before = api
        .ok(&format!(
            "{FRONTEND_ROOT}?start={PREVIOUS_MINUTE}&end={NOW_MINUTE}"
        ))
        .await;
    assert_eq!(before["dependencies"][0]["calls"], json!(40));
    assert_eq!(before["dependencies"].as_array().unwrap().len(), 1);
    assert_eq!(before["callers"], json!([]));
}

#[tokio::test]
async fn an_endpoint_with_none_known_answers_empty_lists_and_an_unknown_service_404() {
    let api = Api::new().await;
    let backend = api
        .ok("/api/v1/services/shop%2Fbackend/endpoints/GET%20%2Fitems%2F%7Bid%7D/dependencies")
        .await;
    assert_eq!(backend["dependencies"], json!([]));
    // The name's slashes may be left unencoded, as may the service id's.
    let raw = api
        .ok("/api/v1/services/shop/backend/endpoints/GET%20/items/%7Bid%7D/dependencies")
        .await;
    assert_eq!(raw, backend);
    assert_eq!(backend["callers"][0]["service"], json!("shop/frontend"));
    assert_eq!(backend["callers"][0]["calls"], json!(50));
    let unknown = api
        .ok("/api/v1/services/shop%2Ffrontend/endpoints/POST%20%2Fnothing/dependencies")
        .await;
    assert_eq!(unknown["dependencies"], json!([]));
    assert_eq!(unknown["callers"], json!([]));
    let (status, body) = api
        .get("/api/v1/services/shop%2Fnobody/endpoints/GET%20%2F/dependencies")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api
        .get("/api/v1/services/shop%2Ffrontend/endpoints/%zz/dependencies")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("endpoint"),
        "{body}"
    );
}
