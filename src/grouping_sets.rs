//! The rows of GROUPING SETS, ROLLUP and CUBE, ordered as SQL orders them.
//!
//! DataFusion 55 carries what it knows of an aggregate's input through to
//! its output, and a grouping column that is one value in the input (a
//! literal, `'all' AS segment`, or one a filter fixes, `WHERE event_date =
//! DATE '2024-03-15'`) is taken to be that one value in the output too.
//! Under grouping sets it is not: the subtotal rows have it NULL. So
//! `ORDER BY event_date NULLS FIRST` was dropped as already satisfied,
//! leaving the grand total among the other rows, and a window over such a
//! column (`sum(n) OVER (ORDER BY event_date ...)`, `rank()`) ran over
//! unsorted rows, giving other numbers. [`Rule`] puts an [`Exec`] above
//! each aggregate with grouping sets: it passes the rows on as they are
//! and says nothing of their order or values, so the plan sorts them.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    ReplaceChildrenOptions,
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
            Ok(match grouping_sets {
                true => Transformed::yes(Arc::new(Exec::new(node)) as Arc<dyn ExecutionPlan>),
                false => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "grouping_set_rows_unordered"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// An aggregate's rows, passed on as they are, with no ordering,
/// constant or equal columns known of them.
#[derive(Debug)]
pub struct Exec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl Exec {
    fn new(input: Arc<dyn ExecutionPlan>) -> Exec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Exec {
            input,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for Exec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GroupingSetRows: order and values unknown")
    }
}

impl ExecutionPlan for Exec {
    fn name(&self) -> &'static str {
        "GroupingSetRows"
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
        Ok(Arc::new(Exec::new(children.swap_remove(0))))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
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
mod tests {
    use crate::engine::{Engine, EngineOptions};
    use datafusion::prelude::SessionContext;

    async fn csv(ctx: &SessionContext, sql: &str) -> Vec<String> {
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

    /// A grouping column that is one value in the input (a literal, or
    /// fixed by a filter) is ordered with its subtotal rows' NULLs, by
    /// ORDER BY and by a window, as SQL (DuckDB, by hand) orders them.
    #[tokio::test]
    async fn grouping_set_rows_are_sorted_when_a_column_is_one_value_in_the_input() {
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
        for (sql, sql_rows) in [
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
            assert_ne!(csv(&theirs, sql).await, sql_rows, "{sql}");
        }
    }
}
