//! The one place a DataFusion `SessionContext` is built (DESIGN.md §7).
//!
//! Every table is registered under its logical name (`bronze_events`,
//! `bronze_late`, ...), so SQL never sees a path. Tables are Hive-partitioned
//! listings of the lake's directories with `event_date` typed as `Date32`
//! and bronze's sort order declared. Writers remove orphan files under the
//! lock before they read, so what a writer lists is exactly the committed
//! state; read-only commands can see a crashed run's orphans until the next
//! writer runs (the same window outside readers have).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::logical_expr::SortExpr;
use datafusion::prelude::{SessionConfig, SessionContext, col};

use crate::bronze;
use crate::lake::Lake;

/// A session over `lake` with every existing table registered.
pub async fn context(lake: &Lake) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .with_information_schema(true);
    let mut ctx = SessionContext::new_with_config(config);
    datafusion_functions_json::register_all(&mut ctx)?;
    for (table, dir) in [
        (bronze::TABLE, bronze::DIR),
        (bronze::LATE_TABLE, bronze::LATE_DIR),
    ] {
        register_bronze_like(&ctx, lake, table, dir).await?;
    }
    for (table, dir, column) in [
        (
            crate::silver::EVENTS_TABLE,
            crate::silver::EVENTS_DIR,
            "event_date",
        ),
        (
            crate::silver::SESSIONS_TABLE,
            crate::silver::SESSIONS_DIR,
            "session_date",
        ),
    ] {
        register_derived(&ctx, lake, table, dir, column).await?;
    }
    for (table, dir, _) in crate::silver::TYPED {
        register_derived(&ctx, lake, table, dir, "event_date").await?;
    }
    Ok(ctx)
}

/// A derived table partitioned by a date column, schema read from its files.
async fn register_derived(
    ctx: &SessionContext,
    lake: &Lake,
    table: &str,
    dir: &str,
    column: &str,
) -> Result<()> {
    register_partitioned(ctx, table, &lake.path(dir), column, None, Vec::new()).await
}

async fn register_bronze_like(
    ctx: &SessionContext,
    lake: &Lake,
    table: &str,
    dir: &str,
) -> Result<()> {
    let sort = vec![
        col("user_id").sort(true, false),
        col("event_timestamp").sort(true, false),
        col("event_id").sort(true, false),
    ];
    register_partitioned(
        ctx,
        table,
        &lake.path(dir),
        bronze::PARTITION_COLUMN,
        Some(bronze::schema()),
        sort,
    )
    .await
}

/// Register the Parquet files under `dir` as `table`, Hive-partitioned by
/// the `Date32` column `column`. Without a `schema` it is read from the
/// files, so a directory without files is not registered. `sort` declares
/// the order each file is written in.
pub async fn register_partitioned(
    ctx: &SessionContext,
    table: &str,
    dir: &Path,
    column: &str,
    schema: Option<SchemaRef>,
    sort: Vec<SortExpr>,
) -> Result<()> {
    if crate::lake::list_files(dir, dir)?.is_empty() && (schema.is_none() || !dir.is_dir()) {
        return Ok(());
    }
    let path = std::fs::canonicalize(dir)
        .with_context(|| format!("failed to resolve `{}`", dir.display()))?;
    let url = format!("{}/", path.display());
    let mut options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(column.to_string(), DataType::Date32)]);
    if !sort.is_empty() {
        options = options.with_file_sort_order(vec![sort]);
    }
    ctx.register_listing_table(table, &url, options, schema, None)
        .await
        .with_context(|| format!("failed to register table `{table}` at `{url}`"))?;
    Ok(())
}

/// Is this DataFusion error the user's fault (bad SQL, unknown table or
/// column) rather than a runtime failure?
pub fn is_usage_error(err: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    match err {
        E::SQL(..) | E::Plan(..) | E::SchemaError(..) | E::NotImplemented(..) => true,
        E::Context(_, inner) => is_usage_error(inner),
        E::Diagnostic(_, inner) => is_usage_error(inner),
        _ => false,
    }
}
