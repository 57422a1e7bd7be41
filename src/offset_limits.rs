//! A sort above a LIMIT with an OFFSET whose rows are in its order
//! already, dropped before DataFusion's own rules see it.
//!
//! DataFusion 55's `EnsureRequirements` drops such a sort as satisfied
//! too, but as it pushes the sort's order down it hands the limit's row
//! count (its `fetch`, without the rows it skips) to the sort below as
//! that sort's own: `SELECT * FROM (SELECT session_id, count(*) OVER
//! (ORDER BY event_count) AS r FROM sessions ORDER BY session_id LIMIT 3
//! OFFSET 20) ORDER BY session_id` kept 3 sorted rows, skipped 20 of them
//! and gave none, with no error (`LIMIT 30 OFFSET 20` gave 10). It
//! happens when the sort below cannot pass the order on (a window under
//! it sorts otherwise). [`Rule`] drops the sort first, so no order comes
//! down through the limit.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

/// The physical optimizer rule; it must run before `EnsureRequirements`.
#[derive(Debug)]
pub struct Rule;

impl PhysicalOptimizerRule for Rule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let input = sort.input();
            if !skips_rows(input)
                || input.output_partitioning().partition_count() != 1
                || !input
                    .equivalence_properties()
                    .ordering_satisfy(sort.expr().clone())?
            {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(match sort.fetch() {
                None => Arc::clone(input),
                Some(n) => Arc::new(GlobalLimitExec::new(Arc::clone(input), 0, Some(n))),
            }))
        })
        .data()
    }

    fn name(&self) -> &str {
        "evlake_sorted_offset_limits"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `plan` is a limit with an OFFSET, or a projection of one.
fn skips_rows(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(limit) = plan.downcast_ref::<GlobalLimitExec>() {
        return limit.skip() > 0;
    }
    if plan.downcast_ref::<ProjectionExec>().is_some() {
        return plan.children().first().is_some_and(|c| skips_rows(c));
    }
    false
}
