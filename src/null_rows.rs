//! Rows SQL fills with NULLs, ordered as SQL orders them: the total rows
//! of GROUPING SETS, ROLLUP and CUBE, and the unmatched rows of an outer
//! join; and the rows of a LIMIT with an OFFSET, sorted above it.
//!
//! DataFusion 55 carries what it knows of an operator's input through to
//! its output, and a column that is one value in the input (a literal,
//! `'buyer' AS segment`, or one a filter fixes, `WHERE event_type =
//! 'purchase'`) is taken to be that one value in the output too. Under
//! grouping sets it is not: the total rows have it NULL; nor on the
//! side of an outer join that has no match, which is all NULL. So `ORDER
//! BY event_type NULLS LAST` (or `ORDER BY segment`) was dropped as
//! already satisfied, leaving the grand total, or the unmatched rows,
//! among the others, and a window over such a column (`sum(n) OVER
//! (ORDER BY event_type ...)`, `row_number()`) ran over unsorted rows,
//! giving other numbers. [`Rule`] puts an [`Exec`] above each aggregate
//! with grouping sets and above each side of an outer join that may be
//! NULL: it passes the rows on as they are and says nothing of their
//! order or values, so the plan sorts them.
//!
//! It puts one above each LIMIT with an OFFSET too. DataFusion 55's
//! `EnsureRequirements`, pushing an order down through such a limit,
//! hands the limit's row count (its `fetch`, without the rows it skips)
//! to the sort it keeps or places below as that sort's own. So `SELECT *
//! FROM (SELECT session_id, count(*) OVER (ORDER BY event_count) AS r
//! FROM sessions ORDER BY session_id LIMIT 3 OFFSET 20) ORDER BY
//! session_id` kept 3 sorted rows, skipped 20 of them and gave none, with
//! no error (`LIMIT 30 OFFSET 20` gave 10), and so did `SELECT * FROM
//! (SELECT session_id FROM sessions LIMIT 3 OFFSET 20) ORDER BY
//! session_id`, whose sort it moved below the limit. Above an [`Exec`],
//! the sort stays where it is and sorts the limit's rows.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties, ReplaceChildrenOptions,
};

/// The physical optimizer rule; it must run before any rule that reads
/// orderings (DataFusion's first is `OutputRequirements`).
#[derive(Debug)]
pub struct Rule;

impl PhysicalOptimizerRule for Rule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let grouping_sets = node
                .downcast_ref::<AggregateExec>()
                .is_some_and(|a| a.group_expr().has_grouping_set());
            if grouping_sets {
                return Ok(Transformed::yes(
                    Arc::new(Exec::new(node, Kind::NullPadded)) as _,
                ));
            }
            let skips = node
                .downcast_ref::<GlobalLimitExec>()
                .is_some_and(|limit| limit.skip() > 0);
            if skips {
                return Ok(Transformed::yes(
                    Arc::new(Exec::new(node, Kind::AfterOffset)) as _,
                ));
            }
            let Some((left, right)) = padded_sides(&node) else {
                return Ok(Transformed::no(node));
            };
            let children = node
                .children()
                .into_iter()
                .zip([left, right])
                .map(
                    |(child, padded)| match padded && child.downcast_ref::<Exec>().is_none() {
                        true => Arc::new(Exec::new(Arc::clone(child), Kind::NullPadded))
                            as Arc<dyn ExecutionPlan>,
                        false => Arc::clone(child),
                    },
                )
                .collect();
            node.replace_children(
                children,
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )
            .map(Transformed::yes)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "null_padded_rows_unordered"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Which sides of `node`, if it is an outer join, have their columns NULL
/// in the rows the other side has alone: (left, right).
fn padded_sides(node: &Arc<dyn ExecutionPlan>) -> Option<(bool, bool)> {
    use datafusion::common::JoinType;
    use datafusion::physical_plan::joins::{
        HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
    };
    let join_type = if let Some(j) = node.downcast_ref::<HashJoinExec>() {
        *j.join_type()
    } else if let Some(j) = node.downcast_ref::<NestedLoopJoinExec>() {
        *j.join_type()
    } else if let Some(j) = node.downcast_ref::<SortMergeJoinExec>() {
        j.join_type()
    } else if let Some(j) = node.downcast_ref::<SymmetricHashJoinExec>() {
        *j.join_type()
    } else {
        return None;
    };
    match join_type {
        JoinType::Left => Some((false, true)),
        JoinType::Right => Some((true, false)),
        JoinType::Full => Some((true, true)),
        _ => None,
    }
}

/// An aggregate's rows, or a join side's, passed on as they are, with no ordering,
/// constant or equal columns known of them; or a limit's with an offset.
#[derive(Debug)]
pub struct Exec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    kind: Kind,
}

/// Whose rows an [`Exec`] passes on, as its name in a plan says.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Grouping sets' or an outer join side's, with NULLs filled in.
    NullPadded,
    /// A limit's with an offset.
    AfterOffset,
}

impl Exec {
    pub fn new(input: Arc<dyn ExecutionPlan>, kind: Kind) -> Exec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Exec {
            input,
            properties: Arc::new(properties),
            kind,
        }
    }
}

impl DisplayAs for Exec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: order and values unknown", self.name())
    }
}

impl ExecutionPlan for Exec {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::NullPadded => "NullPaddedRows",
            Kind::AfterOffset => "RowsAfterOffset",
        }
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Exec::new(children.swap_remove(0), self.kind)))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    /// Filters pass through, as DataFusion's own dynamic filters of a
    /// join, which prune the files the other side reads.
    fn gather_filters_for_pushdown(
        &self,
        _phase: datafusion::physical_plan::filter_pushdown::FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<datafusion::physical_plan::filter_pushdown::FilterDescription> {
        datafusion::physical_plan::filter_pushdown::FilterDescription::from_children(
            parent_filters,
            &self.children(),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::engine::{Engine, EngineOptions};
    use datafusion::prelude::SessionContext;

    /// The data rows `sql` gives, as a table's lines with their cells'
    /// padding taken out: `| a | | 1 |`.
    pub(crate) async fn csv(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        text.lines()
            .filter(|l| l.starts_with('|'))
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// A column that is one value in the input (a literal, or fixed by a
    /// filter) is ordered with the NULLs of grouping sets' total rows and
    /// of an outer join's unmatched rows, by ORDER BY and by a window, as
    /// SQL (DuckDB, by hand) orders them.
    #[tokio::test]
    async fn null_padded_rows_are_sorted_when_a_column_is_one_value_in_the_input() {
        let ours = Engine::new(&EngineOptions::default())
            .unwrap()
            .bare()
            .unwrap();
        let theirs = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(2),
        );
        let sorted = "SELECT s, t, count(*) AS c FROM (SELECT s, 1 AS t FROM (VALUES ('b'), \
                      ('a')) v(s)) q GROUP BY GROUPING SETS ((s), (t), ()) ORDER BY t NULLS \
                      FIRST, s";
        let running = "SELECT s, t, sum(c) OVER (ORDER BY t NULLS FIRST, s NULLS FIRST ROWS \
                       UNBOUNDED PRECEDING) AS run FROM (SELECT s, t, count(*) AS c FROM \
                       (SELECT s, 1 AS t FROM (VALUES ('b'), ('a')) v(s)) q GROUP BY GROUPING \
                       SETS ((s), (t), ())) x";
        let filtered = "SELECT country, device, count(*) AS n FROM (VALUES ('DE', 'ios'), \
                        ('DE', 'web'), ('FR', 'ios')) v(country, device) WHERE country = 'DE' \
                        GROUP BY ROLLUP (country, device) ORDER BY country DESC NULLS LAST, \
                        device";
        let left = "SELECT a.k, r.c, row_number() OVER (ORDER BY r.c NULLS FIRST, a.k) AS rn \
                    FROM (VALUES (1), (2), (3)) a(k) LEFT JOIN (SELECT k, 'x' AS c FROM (VALUES \
                    (2)) b(k)) r ON a.k = r.k ORDER BY r.c NULLS FIRST, a.k";
        let right = "SELECT r.k, l.s FROM (SELECT * FROM (VALUES (2, 'a'), (3, 'b')) b(k, s) \
                     WHERE s = 'a') l RIGHT JOIN (VALUES (1), (2), (3)) r(k) ON l.k = r.k ORDER \
                     BY l.s NULLS FIRST, r.k";
        let full = "SELECT a.k, r.c FROM (VALUES (1), (2), (3)) a(k) FULL JOIN (SELECT k, 'x' \
                    AS c FROM (VALUES (2), (5)) b(k)) r ON a.k = r.k ORDER BY r.c DESC NULLS \
                    LAST, a.k NULLS FIRST";
        // (DataFusion 55 alone gets the RIGHT JOIN right.)
        for (sql, sql_rows) in [
            (left, vec!["| 1 | | 1 |", "| 3 | | 2 |", "| 2 | x | 3 |"]),
            (right, vec!["| 1 | |", "| 3 | |", "| 2 | a |"]),
            (full, vec!["| | x |", "| 2 | x |", "| 1 | |", "| 3 | |"]),
            (
                sorted,
                vec!["| a | | 1 |", "| b | | 1 |", "| | | 2 |", "| | 1 | 2 |"],
            ),
            (
                running,
                vec!["| | | 2 |", "| a | | 3 |", "| b | | 4 |", "| | 1 | 6 |"],
            ),
            (
                filtered,
                vec![
                    "| DE | ios | 1 |",
                    "| DE | web | 1 |",
                    "| DE | | 2 |",
                    "| | | 2 |",
                ],
            ),
        ] {
            assert_eq!(csv(&ours, sql).await, sql_rows, "{sql}");
            // DataFusion 55 alone orders them otherwise (when this fails,
            // the rule can go).
            if sql != right {
                assert_ne!(csv(&theirs, sql).await, sql_rows, "{sql}");
            }
        }
    }
}
