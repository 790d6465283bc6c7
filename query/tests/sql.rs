//! `POST /api/v1/sql` and `GET /api/v1/tables` over a real store: rows as JSON and CSV, and
//! each kind of refused statement with its own error.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use meshscope_query::{AppState, router};
use meshscope_storage::{MetricRow, Metrics, RowKey, ServiceRef, Side, Store, StoreConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2026-11-25T02:30:00Z.
const MINUTE: i64 = 1_795_573_800_000;

async fn api() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir.path())
    })
    .await
    .unwrap();
    let row = |name: &str, calls: u64| MetricRow {
        minute: MINUTE,
        key: RowKey::Service {
            service: ServiceRef::service("shop", name),
        },
        side: Side::Server,
        metrics: Metrics {
            calls,
            errors: 1,
            ..Metrics::default()
        },
    };
    store
        .append_closed(vec![row("cart", 10), row("web", 7)])
        .await
        .unwrap();
    (router(AppState::new(Arc::new(store))), dir)
}

async fn post(router: &axum::Router, sql: &str, accept: &str) -> (StatusCode, String, String) {
    let request = Request::post("/api/v1/sql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .body(Body::from(json!({ "sql": sql }).to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

const QUERY: &str = "SELECT service_name, calls FROM service_minute ORDER BY service_name";

#[tokio::test]
async fn sql_answers_rows_as_json() {
    let (router, _dir) = api().await;
    let (status, _, body) = post(&router, QUERY, "application/json").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        json!({
            "columns": [
                {"name": "service_name", "type": json["columns"][0]["type"]},
                {"name": "calls", "type": "UInt64"},
            ],
            "rows": [
                {"service_name": "cart", "calls": 10},
                {"service_name": "web", "calls": 7},
            ],
            "row_count": 2,
        })
    );
}

#[tokio::test]
async fn sql_answers_csv_when_asked() {
    let (router, _dir) = api().await;
    let (status, content_type, body) = post(&router, QUERY, "text/csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "text/csv");
    assert_eq!(body, "service_name,calls\ncart,10\nweb,7\n");
}

#[tokio::test]
async fn sql_refuses_statements_that_are_not_queries() {
    let (router, _dir) = api().await;
    let cases = [
        (
            "INSERT INTO service_minute SELECT * FROM service_minute",
            "refused: INSERT statements are not allowed",
        ),
        (
            "CREATE TABLE t AS SELECT 1",
            "refused: CREATE TABLE statements are not allowed",
        ),
        (
            "COPY service_minute TO 'x.parquet'",
            "refused: COPY is not allowed",
        ),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION 'x.csv'",
            "refused: CREATE EXTERNAL TABLE is not allowed",
        ),
        (
            "DROP TABLE service_minute",
            "refused: DROP TABLE statements are not allowed",
        ),
    ];
    for (sql, message) in cases {
        let (status, _, body) = post(&router, sql, "application/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(message), "{sql}: {error}");
    }
}

#[tokio::test]
async fn tables_lists_every_table_with_its_columns() {
    let (router, _dir) = api().await;
    let request = Request::get("/api/v1/tables").body(Body::empty()).unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    let tables = json["tables"].as_array().unwrap();
    let service_minute = tables
        .iter()
        .find(|t| t["name"] == "service_minute")
        .unwrap();
    let calls = service_minute["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "calls")
        .unwrap();
    assert_eq!(
        calls,
        &json!({"name": "calls", "type": "UInt64", "nullable": false})
    );
    assert!(tables.iter().any(|t| t["name"] == "access_log"));
}
