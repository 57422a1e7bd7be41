//! A filter that names no column kept above an aggregate that gives a row
//! from no rows.
//!
//! DataFusion 55's `push_down_filter` moves below an aggregate each part
//! of a filter whose columns are all grouping columns, and a part that
//! names no column at all passes that test. A part becomes such once a
//! projection's literal is put in place of its column: in
//!
//! ```sql
//! WITH seg AS (SELECT 'all' AS segment, count(*) AS n FROM events
//!              UNION ALL SELECT 'buyers', count(*) FROM purchases)
//! SELECT * FROM seg WHERE segment = 'buyers'
//! ```
//!
//! the first branch's filter is `'all' = 'buyers'`. Below an aggregate
//! with no GROUP BY, or with an empty grouping set (ROLLUP, CUBE), it
//! removes the input rows, and the aggregate still gives its one row (a
//! count of 0): the query answered `all, 0` beside `buyers, N`, where SQL
//! gives only the second. (Spark and Presto had the same fault: SPARK-17712,
//! prestodb#11297.) [`Rule`] is DataFusion's rule with such parts kept
//! above the aggregate, where they filter its rows.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::Transformed;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{Aggregate, Expr, Filter, GroupingSet, LogicalPlan};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// DataFusion's `push_down_filter`, keeping above an aggregate that gives a
/// row from no rows each part of a filter that names no column.
#[derive(Debug)]
pub struct Rule {
    pub inner: Arc<dyn OptimizerRule + Send + Sync>,
}

/// Whether `agg` gives a row when its input has none: no GROUP BY, or a
/// grouping set that is empty (`()`, which ROLLUP and CUBE hold).
fn row_from_no_rows(agg: &Aggregate) -> bool {
    match agg.group_expr.as_slice() {
        [] => true,
        [Expr::GroupingSet(GroupingSet::Rollup(_) | GroupingSet::Cube(_))] => true,
        [Expr::GroupingSet(GroupingSet::GroupingSets(sets))] => sets.iter().any(Vec::is_empty),
        _ => false,
    }
}

impl OptimizerRule for Rule {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.inner.apply_order()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return self.inner.rewrite(plan, config);
        };
        let LogicalPlan::Aggregate(agg) = filter.input.as_ref() else {
            return self.inner.rewrite(plan, config);
        };
        if !row_from_no_rows(agg) {
            return self.inner.rewrite(plan, config);
        }
        let (kept, rest): (Vec<Expr>, Vec<Expr>) =
            split_conjunction_owned(filter.predicate.clone())
                .into_iter()
                .partition(|part| part.column_refs().is_empty());
        let Some(kept) = conjunction(kept) else {
            return self.inner.rewrite(plan, config);
        };
        let below = match conjunction(rest) {
            None => return Ok(Transformed::no(plan)),
            Some(rest) => {
                self.inner
                    .rewrite(
                        LogicalPlan::Filter(Filter::try_new(rest, Arc::clone(&filter.input))?),
                        config,
                    )?
                    .data
            }
        };
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
            kept,
            Arc::new(below),
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineOptions};
    use datafusion::prelude::SessionContext;

    /// [`crate::null_rows::tests::csv`]'s rows, sorted.
    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let mut rows = crate::null_rows::tests::csv(ctx, sql).await;
        rows.sort();
        rows
    }

    /// A filter that, put through a projection's literal, names no column
    /// filters an aggregate's rows, as SQL (DuckDB, by hand) does, above
    /// an aggregate with no GROUP BY or with ROLLUP; filters on grouping
    /// columns still go below.
    #[tokio::test]
    async fn a_filter_naming_no_column_is_kept_above_an_aggregate_of_one_row() {
        let ours = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let theirs = SessionContext::new();
        for ctx in [&ours, &theirs] {
            ctx.sql("CREATE VIEW t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (2, 'c')) v(x, s)")
                .await
                .unwrap();
        }
        let segments = "WITH seg AS (SELECT 'all' AS segment, count(*) AS n FROM t UNION ALL \
                        SELECT 'twos', count(*) FROM t WHERE x = 2) SELECT * FROM seg WHERE \
                        segment = 'twos'";
        let rolled = "SELECT * FROM (SELECT *, 'r' AS tag FROM (SELECT x, count(*) AS n FROM t \
                      GROUP BY ROLLUP (x)) q) w WHERE tag <> 'r'";
        let global = "SELECT * FROM (SELECT 1 AS one, max(s) AS m FROM t) q WHERE one = 2";
        for (sql, sql_rows) in [
            (segments, vec!["| twos | 2 |"]),
            (rolled, vec![]),
            (global, vec![]),
        ] {
            assert_eq!(rows(&ours, sql).await, sql_rows, "{sql}");
            // DataFusion 55 alone gives the aggregate's row of no rows too
            // (when this fails, the rule can go).
            assert_ne!(rows(&theirs, sql).await, sql_rows, "{sql}");
        }
        // Filters that do name columns are as they were: on grouping
        // columns below, on aggregates above, and a mix split so.
        for sql in [
            "SELECT * FROM (SELECT x, count(*) AS n FROM t GROUP BY x) q WHERE x = 2 AND n > 1",
            "SELECT * FROM (SELECT 1 AS one, count(*) AS n FROM t) q WHERE one = 1 AND n > 1",
            "SELECT * FROM (SELECT x, count(*) AS n FROM t GROUP BY ROLLUP (x)) q WHERE x IS NULL",
        ] {
            assert_eq!(rows(&ours, sql).await, rows(&theirs, sql).await, "{sql}");
        }
    }
}
