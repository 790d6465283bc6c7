//! `meshscope sql`: the same query prints the same rows whether it reads a data directory
//! or asks a running server, and refusals and limits are plain errors with a failing exit.

mod support;

use std::path::Path;

use meshscope_storage::{
    MINUTE_MS, MetricRow, Metrics, RowKey, ServiceRef, Side, Store, StoreConfig,
};
use support::{Meshscope, files_under, meshscope_sql};

const QUERY: &str = "SELECT service_name, calls FROM service_minute ORDER BY service_name";

const TABLE: &str = "\
+--------------+-------+
| service_name | calls |
+--------------+-------+
| cart         | 10    |
| web          | 7     |
+--------------+-------+
";

const REFUSED: &str = "error: query refused: only one read-only SELECT query is allowed: \
                       DROP TABLE statements are not allowed\n";

/// Two closed minutes' rows written the way the collector's store writes them.
async fn write_rows(data: &Path) {
    // Recent, so that the server's retention has no reason to touch them.
    let minute = chrono::Utc::now().timestamp_millis() / MINUTE_MS * MINUTE_MS - 10 * MINUTE_MS;
    let row = |name: &str, calls: u64| MetricRow {
        minute,
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
    let store = Store::open(StoreConfig {
        maintenance_interval_secs: 0,
        ..StoreConfig::in_dir(data)
    })
    .await
    .unwrap();
    store
        .append_closed(vec![row("cart", 10), row("web", 7)])
        .await
        .unwrap();
}

fn config_file(dir: &Path, max_rows: usize) -> String {
    let path = dir.join("meshscope.toml");
    std::fs::write(&path, format!("[storage.sql]\nmax_rows = {max_rows}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn sql_reads_a_data_directory_and_leaves_it_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_rows(&data).await;
    // A write a server has under way: a reader must leave it alone.
    let partition = std::fs::read_dir(data.join("service_minute"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let hour = std::fs::read_dir(&partition)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(hour.join(".1-000009.parquet.tmp"), b"half").unwrap();
    let before = files_under(&data);
    let data_dir = data.display().to_string();
    let config = config_file(dir.path(), 2);

    let (code, out, err) = meshscope_sql(&["--data-dir", &data_dir, QUERY]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, TABLE, ""));

    let (code, out, _) = meshscope_sql(&["--data-dir", &data_dir, "--format", "csv", QUERY]);
    assert_eq!(
        (code, out.as_str()),
        (0, "service_name,calls\ncart,10\nweb,7\n")
    );

    let (code, out, _) = meshscope_sql(&["--data-dir", &data_dir, "--format", "json", QUERY]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "[{\"service_name\":\"cart\",\"calls\":10},{\"service_name\":\"web\",\"calls\":7}]\n"
        )
    );

    let (code, out, err) = meshscope_sql(&["--data-dir", &data_dir, "DROP TABLE service_minute"]);
    assert_eq!((code, out.as_str(), err.as_str()), (1, "", REFUSED));

    // The config file's limits apply to a data directory too.
    let three = "SELECT * FROM generate_series(1, 3)";
    let (code, out, err) = meshscope_sql(&["--data-dir", &data_dir, "--config", &config, three]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "",
            "error: query stopped: more than 2 rows; add a LIMIT or narrow the query\n"
        )
    );

    let missing = dir.path().join("nowhere").display().to_string();
    let (code, _, err) = meshscope_sql(&["--data-dir", &missing, QUERY]);
    assert_eq!(
        (code, err),
        (1, format!("error: no data directory at {missing}\n"))
    );
    assert!(!dir.path().join("nowhere").exists());

    assert_eq!(files_under(&data), before, "sql changed the data directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_asks_a_running_server_and_prints_the_same() {
    let dir = tempfile::tempdir().unwrap();
    write_rows(&dir.path().join("data")).await;
    let config = config_file(dir.path(), 2);
    let server = Meshscope::start(dir.path(), &["--config", &config]).await;
    let url = format!("http://{}", server.http);

    let (code, out, err) = meshscope_sql(&["--server", &url, QUERY]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, TABLE, ""));

    let (code, out, _) = meshscope_sql(&["--server", &url, "--format", "csv", QUERY]);
    assert_eq!(
        (code, out.as_str()),
        (0, "service_name,calls\ncart,10\nweb,7\n")
    );

    // Without a scheme, the address is plain HTTP.
    let (code, out, _) = meshscope_sql(&["--server", &server.http.to_string(), QUERY]);
    assert_eq!((code, out.as_str()), (0, TABLE));

    let (code, out, err) = meshscope_sql(&["--server", &url, "DROP TABLE service_minute"]);
    assert_eq!((code, out.as_str(), err.as_str()), (1, "", REFUSED));

    let three = "SELECT * FROM generate_series(1, 3)";
    let (code, out, err) = meshscope_sql(&["--server", &url, three]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "",
            "error: query stopped: more than 2 rows; add a LIMIT or narrow the query\n"
        )
    );
}
