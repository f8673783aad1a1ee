//! Names, labels and annotations of the objects a pipeline owns: one place, so the
//! builders, the status and the tests agree.

use std::collections::BTreeMap;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "riskpipe-operator";
/// Finalizer that lets the operator take a final savepoint before deletion.
pub const FINALIZER: &str = "riskpipe.io/finalizer";
/// Pod template annotation: hash of the worker configuration; a change rolls the workers.
pub const CONFIG_HASH_ANNOTATION: &str = "riskpipe.io/config-hash";
/// Pod template annotation: the parallelism the workers were started with.
pub const PARALLELISM_ANNOTATION: &str = "riskpipe.io/parallelism";
/// Pipeline annotation: `"true"` takes a final savepoint before the pipeline is deleted.
pub const SAVEPOINT_ON_DELETE_ANNOTATION: &str = "riskpipe.io/savepoint-on-delete";
/// Pod template annotation: the savepoint the workers restore from, when any.
pub const RESTORE_FROM_ANNOTATION: &str = "riskpipe.io/restore-from";
/// Pod template annotation: the restart policy's last restart; a new one restarts
/// the workers (a rolling restart from their local state).
pub const RESTARTED_AT_ANNOTATION: &str = "riskpipe.io/restarted-at";
pub use riskpipe_contract::mounts::{CONFIG_DIR, CONFIG_KEY};
/// Port of the worker's HTTP endpoint (the worker contract's), as Kubernetes types
/// a port.
pub const HTTP_PORT: i32 = riskpipe_contract::api::HTTP_PORT as i32;
/// Name of that port.
pub const HTTP_PORT_NAME: &str = "http";
/// Name of the worker container.
pub const CONTAINER: &str = "worker";
/// Label that every owned object carries with the pipeline's name.
pub const PIPELINE_LABEL: &str = "riskpipe.io/pipeline";
/// Standard component label.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Names of the objects owned by the pipeline `pipeline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pipeline: String,
}

impl Names {
    /// Names for the pipeline called `pipeline`.
    pub fn new(pipeline: &str) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
        }
    }

    /// The pipeline's name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The StatefulSet (its Pods are `<pipeline>-<ordinal>`).
    pub fn statefulset(&self) -> String {
        self.pipeline.clone()
    }

    /// The ConfigMap with the rendered manifest.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.pipeline)
    }

    /// The headless Service of the workers.
    pub fn service(&self) -> String {
        format!("{}-workers", self.pipeline)
    }

    /// The PodDisruptionBudget.
    pub fn pdb(&self) -> String {
        self.pipeline.clone()
    }

    /// The workers' ServiceAccount.
    pub fn service_account(&self) -> String {
        format!("{}-worker", self.pipeline)
    }

    /// The shared claim where checkpoints and savepoints on a path are written.
    pub fn snapshots_claim(&self) -> String {
        format!("{}-snapshots", self.pipeline)
    }

    /// Pod name of the worker with `ordinal`.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.pipeline)
    }

    /// Labels that select the workers' Pods (immutable in a StatefulSet).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (COMPONENT_LABEL.to_owned(), "worker".to_owned()),
            (PIPELINE_LABEL.to_owned(), self.pipeline.clone()),
        ])
    }

    /// The selector as a string, for the scale subresource (`status.selector`).
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Labels of every owned object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/name".into(), "riskpipe".into());
        labels.insert("app.kubernetes.io/instance".into(), self.pipeline.clone());
        labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        labels
    }
}

/// The ordinal of a StatefulSet Pod from its name's `-N` suffix.
pub fn ordinal_of(pod_name: &str) -> Option<i32> {
    pod_name.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_string_is_sorted_and_matches_the_labels() {
        let n = Names::new("payments");
        assert_eq!(
            n.selector_string(),
            "app.kubernetes.io/component=worker,riskpipe.io/pipeline=payments"
        );
        for (k, v) in n.selector_labels() {
            assert_eq!(n.labels().get(&k), Some(&v));
        }
    }

    #[test]
    fn ordinal_from_pod_name() {
        assert_eq!(ordinal_of("pay-ments-12"), Some(12));
        assert_eq!(ordinal_of("payments"), None);
        assert_eq!(ordinal_of(&Names::new("a-b").pod(3)), Some(3));
    }
}
