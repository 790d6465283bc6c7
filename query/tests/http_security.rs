//! The HTTP API's tokens, security headers and cross-origin rules, through the router
//! itself: what each path needs, and what every answer carries.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meshscope_query::auth::{AccessRules, ApiTokens};
use meshscope_query::{AppState, HttpSecurity, headers, router, secured_router};
use meshscope_storage::{Store, StoreConfig};
use tower::ServiceExt;

async fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::in_dir(dir.path())).await.unwrap();
    (dir, Arc::new(store))
}

fn secured(store: Arc<Store>, metrics_open: bool, cors: &[&str]) -> axum::Router {
    let state = AppState::new(store).with_metrics_renderer(|| "up 1\n".to_owned());
    let origins: Vec<String> = cors.iter().map(|o| o.to_string()).collect();
    secured_router(
        state,
        HttpSecurity {
            access: AccessRules {
                tokens: Some(ApiTokens::parse("all-1234\nreader-5678 read\n").unwrap()),
                metrics_open,
            },
            cors: headers::cors_layer(&origins).unwrap(),
        },
    )
}

async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let body = if method == "POST" {
        Body::from(r#"{"sql": "SELECT 1 AS one"}"#)
    } else {
        Body::empty()
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn each_path_needs_the_scope_of_what_it_shows() {
    let (_dir, store) = store().await;
    let app = secured(store.clone(), false, &[]);
    let cases: [(&str, &str, Option<&str>, StatusCode); 14] = [
        ("GET", "/healthz", None, StatusCode::OK),
        (
            "GET",
            "/api/v1/topology?window=5m",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/api/v1/topology?window=5m",
            Some("all-123"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/api/v1/topology?window=5m",
            Some("all-12345"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            "/api/v1/topology?window=5m",
            Some("reader-5678"),
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/services?window=5m",
            Some("all-1234"),
            StatusCode::OK,
        ),
        (
            "GET",
            "/api/v1/nothing-here",
            Some("reader-5678"),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/api/v1/nothing-here",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/api/v1/sql",
            Some("reader-5678"),
            StatusCode::FORBIDDEN,
        ),
        (
            "GET",
            "/api/v1/tables",
            Some("reader-5678"),
            StatusCode::FORBIDDEN,
        ),
        ("POST", "/api/v1/sql", Some("all-1234"), StatusCode::OK),
        ("POST", "/api/v1/sql", None, StatusCode::UNAUTHORIZED),
        ("GET", "/metrics", None, StatusCode::UNAUTHORIZED),
        ("GET", "/metrics", Some("reader-5678"), StatusCode::OK),
    ];
    for (method, path, token, want) in cases {
        let (status, headers, body) = send(&app, method, path, token, &[]).await;
        assert_eq!(status, want, "{method} {path} {token:?}: {body}");
        if status.is_client_error() {
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(error["error"].is_string(), "{body}");
        }
        assert_security_headers(&headers, path);
    }
    // The dashboard's own files need no token: it asks for one when the API says 401.
    let (status, _, _) = send(&app, "GET", "/", None, &[]).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED);

    let open_metrics = secured(store, true, &[]);
    let (status, _, body) = send(&open_metrics, "GET", "/metrics", None, &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "up 1\n"));
    let (status, _, _) = send(&open_metrics, "GET", "/api/v1/topology", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn assert_security_headers(headers: &axum::http::HeaderMap, path: &str) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("content-security-policy", headers::CONTENT_SECURITY_POLICY),
    ] {
        assert_eq!(headers[name], value, "{path}: {name}");
    }
}

#[tokio::test]
async fn the_default_router_is_open_same_origin_and_sends_the_headers() {
    let (_dir, store) = store().await;
    let app = router(AppState::new(store));
    for path in [
        "/api/v1/topology?window=5m",
        "/healthz",
        "/api/v1/nothing-here",
    ] {
        let (status, headers, body) = send(
            &app,
            "GET",
            path,
            None,
            &[("origin", "https://elsewhere.example")],
        )
        .await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_security_headers(&headers, path);
        assert!(
            headers.get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn listed_origins_may_read_from_a_browser_and_no_others() {
    let (_dir, store) = store().await;
    let app = secured(store, false, &["https://grafana.example"]);
    let preflight = [
        ("origin", "https://grafana.example"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization"),
    ];
    let (status, headers, _) = send(&app, "OPTIONS", "/api/v1/topology", None, &preflight).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://grafana.example"
    );
    let (_, headers, _) = send(
        &app,
        "GET",
        "/api/v1/topology?window=5m",
        Some("reader-5678"),
        &[("origin", "https://other.example")],
    )
    .await;
    assert!(headers.get("access-control-allow-origin").is_none());
}
