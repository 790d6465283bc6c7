//! `meshscope sql "SELECT ..."`: one read-only query, against a data directory or a running
//! server, printed as a table, CSV or JSON. Both ways print the same: the server is asked
//! for an Arrow IPC stream, so the rows arrive with their types.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use datafusion::arrow::csv;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshscope_storage::Store;

use crate::config::FileConfig;

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Debug, clap::Args)]
pub(crate) struct SqlArgs {
    /// One read-only query, e.g. "SELECT * FROM edge_minute LIMIT 10"; see GET /api/v1/tables
    query: String,
    /// Ask this running server (e.g. http://localhost:12800) instead of reading files
    #[arg(long, conflicts_with = "data_dir")]
    server: Option<String>,
    /// Data directory to read; it sees what the server has written, not the minutes it
    /// still holds open [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the files of this store (s3://bucket/prefix, gs://..., az://..., file:///...)
    /// instead of the data directory's; see `serve --store`
    #[arg(long, env = "MESHSCOPE_STORE", conflicts_with = "server")]
    store: Option<String>,
    /// TOML config file: its [storage] data_dir and [storage.sql] limits apply to files
    #[arg(long, env = "MESHSCOPE_CONFIG")]
    config: Option<PathBuf>,
    /// How to print the rows
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

pub(crate) async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let batches = match &args.server {
        Some(server) => ask_server(server, &args.query).await?,
        None => {
            let file = FileConfig::load(args.config.as_deref())?;
            let data_dir = args
                .data_dir
                .or(file.storage.data_dir)
                .unwrap_or_else(|| PathBuf::from("data"));
            let store = match args.store.or(file.storage.store) {
                Some(url) => {
                    Store::open_reader(meshscope_storage::StoreConfig {
                        store: Some(url),
                        ..meshscope_storage::StoreConfig::in_dir(data_dir)
                    })
                    .await?
                }
                None => Store::open_read_only(&data_dir).await?,
            };
            // The store's own words: the same message the server would answer with.
            store.sql(&args.query, &file.storage.sql).await?
        }
    };
    let text = render(&batches, args.format)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&text)?;
    stdout.flush()?;
    Ok(())
}

async fn ask_server(server: &str, query: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let base = if server.contains("://") {
        server.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", server.trim_end_matches('/'))
    };
    let url = format!("{base}/api/v1/sql");
    let body = serde_json::json!({ "sql": query }).to_string();
    let request = hyper::Request::post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, ARROW_STREAM)
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("invalid server address {server:?}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client
        .request(request)
        .await
        .with_context(|| format!("asking {url}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of {url}"))?
        .to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{message}");
    }
    let reader = StreamReader::try_new(std::io::Cursor::new(body), None)
        .context("the server's answer is not an Arrow stream")?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

fn render(batches: &[RecordBatch], format: Format) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            writeln!(out, "{}", pretty_format_batches(batches)?)?;
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            {
                // Explicit nulls, so that every row object has every column.
                let mut writer = WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, JsonArray>(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
    }
    Ok(out)
}
