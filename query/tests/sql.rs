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
            "INSERT statements are not allowed",
        ),
        (
            "CREATE TABLE t AS SELECT 1",
            "CREATE TABLE statements are not allowed",
        ),
        (
            "COPY service_minute TO 'x.parquet'",
            "COPY is not allowed: SQL cannot write files",
        ),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION 'x.csv'",
            "CREATE EXTERNAL TABLE is not allowed: SQL reads meshscope's tables only",
        ),
        (
            "DROP TABLE service_minute",
            "DROP TABLE statements are not allowed",
        ),
        ("SELECT 1; SELECT 2", "one statement per request, got 2"),
    ];
    for (sql, reason) in cases {
        let (status, _, body) = post(&router, sql, "application/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json,
            json!({
                "error": format!("query refused: only one read-only SELECT query is allowed: {reason}")
            }),
            "{sql}"
        );
    }
}

#[tokio::test]
async fn sql_past_its_limits_is_stopped_with_422_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(dir.path())
    };
    config.sql.timeout_ms = 300;
    config.sql.max_rows = 1_000;
    let router = router(AppState::new(Arc::new(Store::open(config).await.unwrap())));

    let (status, _, body) = post(&router, "SELECT * FROM generate_series(1, 5000)", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": "query stopped: more than 1000 rows; add a LIMIT or narrow the query"})
    );

    let heavy =
        "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";
    let started = std::time::Instant::now();
    let (status, _, body) = post(&router, heavy, "").await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": "query stopped: took longer than 300 ms"})
    );
    assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn sql_naming_an_unknown_table_is_the_callers_error() {
    let (router, _dir) = api().await;
    let (status, _, body) = post(&router, "SELECT * FROM nope", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error": "query engine: Error during planning: table 'datafusion.public.nope' not found"})
    );
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
