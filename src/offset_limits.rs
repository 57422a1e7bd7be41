//! What comes above a LIMIT with an OFFSET knows nothing of its rows'
//! order, so DataFusion's rules push no order down through it.
//!
//! DataFusion 55's `EnsureRequirements`, pushing an order down through a
//! limit, hands the limit's row count (its `fetch`, without the rows it
//! skips) to the sort it places or keeps below as that sort's own. So
//! `SELECT * FROM (SELECT session_id, count(*) OVER (ORDER BY
//! event_count) AS r FROM sessions ORDER BY session_id LIMIT 3 OFFSET 20)
//! ORDER BY session_id` kept 3 sorted rows, skipped 20 of them and gave
//! none, with no error (`LIMIT 30 OFFSET 20` gave 10), and so did
//! `SELECT * FROM (SELECT session_id FROM sessions LIMIT 3 OFFSET 20)
//! ORDER BY session_id`, whose sort it moved below the limit. [`Rule`] puts a
//! [`crate::null_rows::Exec`] above each limit with an offset: the sort
//! above it stays there and sorts the limit's rows.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::limit::GlobalLimitExec;

use crate::null_rows::{Exec, Kind};

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
            let skips = node
                .downcast_ref::<GlobalLimitExec>()
                .is_some_and(|limit| limit.skip() > 0);
            Ok(match skips {
                true => Transformed::yes(Arc::new(Exec::new(node, Kind::AfterOffset)) as _),
                false => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "evlake_offset_limits"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
