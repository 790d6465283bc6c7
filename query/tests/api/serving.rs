//! Beside the API: `/healthz`, `/metrics` and the web UI's files.

use crate::support::*;

#[tokio::test]
async fn health_and_metrics() {
    let api = Api::new().await;
    assert_eq!(api.ok("/healthz").await, json!({"status": "ok"}));
    let (status, content_type, body) = api.get_raw("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(body, "# TYPE meshscope_test counter\nmeshscope_test 1\n");
}

#[tokio::test]
async fn the_web_ui_is_served_beside_the_api() {
    let api = Api::new().await;
    let page = Request::get("/").body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(page).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    let (_, content_type, body) = api.get_raw("/").await;
    assert_eq!(content_type, "text/html; charset=utf-8");
    let html = String::from_utf8(body.to_vec()).unwrap();
    // The page names its hashed bundle; that bundle is served as script, cached for good.
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("index.html loads a script");
    assert!(script.starts_with("/assets/"), "{script}");
    let request = Request::get(script).body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript");
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );

    // Routes of the app itself get the page; a missing bundle file and API paths do not.
    let (status, content_type, _) = api.get_raw("/services/shop/backend").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    let (status, _, _) = api.get_raw("/assets/missing-0000.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, json) = api.get("/api/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json["error"], "no such API route");
}
