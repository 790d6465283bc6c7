//! Read-only SQL for SREs over every table. Statements are parsed first and anything but a
//! query is refused with its own error; a query then runs in a session of its own with a
//! bounded memory pool, a time limit and a row limit.

use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::TryStreamExt;

use super::Store;
use crate::config::SqlLimits;
use crate::error::{Error, Result};

/// A table SQL can read, with its columns.
#[derive(Clone, Debug)]
pub struct TableInfo {
    pub name: String,
    pub schema: SchemaRef,
}

impl Store {
    /// Every table SQL can read, by name.
    pub fn tables(&self) -> Vec<TableInfo> {
        let mut tables: Vec<TableInfo> = self
            .inner
            .tables
            .values()
            .chain(self.inner.proxy_tables.values())
            .chain(std::iter::once(&self.inner.access_log))
            .map(|t| TableInfo {
                name: t.name.clone(),
                schema: t.schema.clone(),
            })
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables
    }

    /// Runs one read-only query within `limits`.
    ///
    /// The query runs on a thread and runtime of its own: an operator that never yields
    /// (a big cross join, say) would otherwise hold the caller's worker, and the timer
    /// that enforces the time limit with it. The caller gets its answer at the deadline
    /// whatever the query does; the query itself is dropped at its next yield.
    ///
    /// A file gone since the last listing is listed again once (`missing_files`).
    pub async fn sql(&self, query: &str, limits: &SqlLimits) -> Result<Vec<RecordBatch>> {
        self.read_relisting_once(|| self.sql_as_listed(query, limits))
            .await
    }

    async fn sql_as_listed(&self, query: &str, limits: &SqlLimits) -> Result<Vec<RecordBatch>> {
        check_read_only(query)?;
        let ctx = self.sql_session(limits)?;
        let timeout = Duration::from_millis(limits.timeout_ms);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let query = query.to_owned();
        let max_rows = limits.max_rows;
        let workers = ctx.state().config().target_partitions().max(1);
        std::thread::Builder::new()
            .name("meshscope-sql".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("meshscope-sql-worker")
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = answer.send(Err(Error::Io(error)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut answer = answer;
                    tokio::select! {
                        result = run_query(&ctx, &query, max_rows) => {
                            let _ = answer.send(result);
                        }
                        // The caller gave up (its deadline passed, or it went away).
                        () = answer.closed() => {}
                    }
                });
                // Dropping the runtime here cancels every task the query spawned.
            })?;
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(result)) => result.map_err(out_of_memory_is_a_limit),
            Ok(Err(_)) => Err(Error::InvalidQuery(
                "the query failed without an answer (its thread panicked)".into(),
            )),
            Err(_) => Err(Error::LimitExceeded(format!(
                "took longer than {} ms",
                limits.timeout_ms
            ))),
        }
    }

    /// A session over the same tables with a memory pool of its own, so that one query
    /// cannot take the memory the API and the collector need.
    fn sql_session(&self, limits: &SqlLimits) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new())
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        self.register_tables(&ctx)?;
        Ok(ctx)
    }
}

/// Plans and runs `query`, stopping as soon as it has more than `max_rows` rows.
async fn run_query(ctx: &SessionContext, query: &str, max_rows: usize) -> Result<Vec<RecordBatch>> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx.sql_with_options(query, options).await?;
    let mut stream = frame.execute_stream().await?;
    let mut batches = Vec::new();
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows();
        if rows > max_rows {
            return Err(Error::LimitExceeded(format!(
                "more than {max_rows} rows; add a LIMIT or narrow the query"
            )));
        }
        batches.push(batch);
    }
    Ok(batches)
}

fn out_of_memory_is_a_limit(error: Error) -> Error {
    if let Error::DataFusion(inner) = &error
        && let DataFusionError::ResourcesExhausted(reason) = inner.find_root()
    {
        return Error::LimitExceeded(format!("memory limit reached: {reason}"));
    }
    error
}

/// Refuses anything but a single query, naming what was refused.
fn check_read_only(query: &str) -> Result<()> {
    let statements = DFParser::parse_sql(query).map_err(|e| Error::InvalidQuery(e.to_string()))?;
    if statements.len() != 1 {
        return Err(Error::Refused(format!(
            "one statement per request, got {}",
            statements.len()
        )));
    }
    match &statements[0] {
        Statement::Statement(statement) => match statement.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            other => Err(Error::Refused(format!(
                "{} statements are not allowed",
                statement_kind(other)
            ))),
        },
        Statement::CreateExternalTable(_) => Err(Error::Refused(
            "CREATE EXTERNAL TABLE is not allowed: SQL reads meshscope's tables only".into(),
        )),
        Statement::CopyTo(_) => Err(Error::Refused(
            "COPY is not allowed: SQL cannot write files".into(),
        )),
        Statement::Explain(_) => Err(Error::Refused("EXPLAIN is not allowed".into())),
        Statement::Reset(_) => Err(Error::Refused("RESET is not allowed".into())),
    }
}

/// The leading keywords of a statement, e.g. `INSERT` or `CREATE TABLE`.
fn statement_kind(statement: &SqlStatement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace().map(str::to_uppercase);
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "SHOW" => {
            let second = words.next().unwrap_or_default();
            format!("{first} {second}")
        }
        _ => first,
    }
}
