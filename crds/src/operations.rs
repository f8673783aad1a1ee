//! `spec.autoscaler` and `spec.restartPolicy`: how the operator reacts to load and errors.

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules},
    duration::Duration,
};

/// Autoscaling on lag measured in time and busy ratio, in the spirit of the Flink
/// autoscaler. It writes `spec.parallelism` through the scale subresource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = AutoscalerSpec::cel)]
pub struct AutoscalerSpec {
    /// Let the operator change the parallelism.
    pub enabled: bool,
    /// Fewest workers; not more than `maxReplicas`.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most workers (more than the input topic's partitions would idle).
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Busy ratio (0–1] the workers are sized for.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub target_utilization: f64,
    /// A scaling decision must hold this long before it is applied, and no other
    /// follows within it (no flapping).
    pub stabilization_window: Duration,
    /// After a scale-up, the backlog should be worked off within this time.
    pub catch_up_duration: Duration,
    /// Expected cost of a rescale (workers stop, move state, resume), added to the
    /// backlog a scale-up must work off.
    pub restart_time: Duration,
}

impl Default for AutoscalerSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: 1,
            max_replicas: 8,
            target_utilization: 0.7,
            stabilization_window: Duration::from_millis(5 * 60_000),
            catch_up_duration: Duration::from_millis(5 * 60_000),
            restart_time: Duration::from_millis(60_000),
        }
    }
}

impl AutoscalerSpec {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must not be greater than maxReplicas",
            )
            .at(".minReplicas"),
            CelRule::new(
                "self.targetUtilization > 0.0",
                "targetUtilization must be greater than 0",
            )
            .at(".targetUtilization"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Restarts on a high error rate, bounded: after `maxRestarts` within `window` the
/// pipeline is marked Degraded instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RestartPolicySpec {
    /// Error rate (errors ÷ records, 0–1) over `window` above which workers restart.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate_threshold: f64,
    /// Window the error rate and the restart count are measured over.
    pub window: Duration,
    /// Least wait after a restart before the next one.
    pub backoff: Duration,
    /// Most restarts within `window`; 0 never restarts.
    #[schemars(range(min = 0))]
    pub max_restarts: i32,
}

impl Default for RestartPolicySpec {
    fn default() -> Self {
        Self {
            error_rate_threshold: 0.05,
            window: Duration::from_millis(5 * 60_000),
            backoff: Duration::from_millis(30_000),
            max_restarts: 3,
        }
    }
}
