//! Who a pipeline is towards Kafka and checkpoint storage: its transactional
//! ids, its consumer group and its checkpoint folder. Each holds the pipeline's
//! namespace, so two pipelines of one name in two namespaces (staging and prod
//! on one cluster and topic) never fence or overwrite each other.
//!
//! Pipelines started before the namespace was part of these names used
//! `riskpipe-<name>-<topic>-<p>`, the group `<name>` and `STORAGE/checkpoints`.
//! On start a namespaced pipeline also fences its legacy producers (aborting a
//! transaction an old worker left open), reads the legacy group's offsets for
//! partitions the new group has none for, and restores from legacy checkpoints
//! when it has none of its own: an upgrade moves on without a gap or a repeat.
//! Checkpoints now always go to `STORAGE/checkpoints/<namespace>.<name>/`.

use anyhow::{Context, Result};
use rdkafka::producer::{BaseProducer, Producer};
use riskpipe_crds::{KafkaSource, RiskPipeline};

use super::clients::{self, KafkaSecurity, TXN_TIMEOUT};

/// The names a pipeline goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`; absent in local manifests.
    pub namespace: Option<String>,
}

impl Identity {
    /// The identity of a manifest.
    pub fn of(pipeline: &RiskPipeline) -> Self {
        Identity {
            name: pipeline.metadata.name.clone().unwrap_or_default(),
            namespace: pipeline
                .metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty()),
        }
    }

    /// `<namespace>.<name>` (a dot never appears in either), or the name alone.
    pub fn qualified(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The transactional id of the producer of input partition `partition`.
    pub fn transactional_id(&self, topic: &str, partition: i32) -> String {
        format!("riskpipe-{}-{topic}-{partition}", self.qualified())
    }

    /// The id the same producer had before namespaces were part of it, when it differs.
    pub fn legacy_transactional_id(&self, topic: &str, partition: i32) -> Option<String> {
        self.namespace
            .as_ref()
            .map(|_| format!("riskpipe-{}-{topic}-{partition}", self.name))
    }

    /// The consumer group: `spec.source.kafka.groupId`, else the qualified name.
    pub fn group_id(&self, source: &KafkaSource) -> String {
        source.group_id.clone().unwrap_or_else(|| self.qualified())
    }

    /// The group of a pipeline started before namespaces, when it differs.
    pub fn legacy_group_id(&self, source: &KafkaSource) -> Option<String> {
        match (&source.group_id, &self.namespace) {
            (None, Some(_)) => Some(self.name.clone()),
            _ => None,
        }
    }

    /// The folder of this pipeline's checkpoints inside `STORAGE/checkpoints`:
    /// its qualified name, so pipelines sharing a storage (a bucket, a machine's
    /// default folder) never restore each other's state.
    pub fn checkpoint_folder(&self) -> String {
        self.qualified()
    }

    /// Folders inside `STORAGE/checkpoints` that may hold this pipeline's older
    /// checkpoints (`""` is `STORAGE/checkpoints` itself), newest layout first:
    /// for a namespaced pipeline, the folder of its name alone (before the
    /// namespace was part of it) and the root (before checkpoints had folders;
    /// the operator gave each pipeline a volume of its own). A pipeline without
    /// a namespace may share the root with others, so it reads no older folder.
    pub fn legacy_checkpoint_folders(&self) -> Vec<String> {
        match self.namespace {
            Some(_) => vec![self.name.clone(), String::new()],
            None => Vec::new(),
        }
    }

    /// Creates the transactional producer of `partition` and fences every older
    /// one: its predecessors under this id and, for a namespaced pipeline, under
    /// the legacy id (aborting whatever transaction they left open).
    pub fn fence(
        &self,
        source: &KafkaSource,
        partition: i32,
        security: &KafkaSecurity,
    ) -> Result<BaseProducer> {
        if let Some(legacy) = self.legacy_transactional_id(&source.topic, partition) {
            let old: BaseProducer = clients::producer_config(source, &legacy, security)
                .create()
                .context("creating the legacy transactional producer")?;
            clients::retry("fencing the legacy transactional id", || {
                old.init_transactions(TXN_TIMEOUT)
            })?;
        }
        let producer: BaseProducer = clients::producer_config(
            source,
            &self.transactional_id(&source.topic, partition),
            security,
        )
        .create()
        .context("creating the transactional producer")?;
        clients::retry("initialising transactions", || {
            producer.init_transactions(TXN_TIMEOUT)
        })?;
        Ok(producer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(group: Option<&str>) -> KafkaSource {
        let mut s: KafkaSource = serde_json::from_value(
            serde_json::json!({"bootstrapServers": "b:9092", "topic": "tx"}),
        )
        .expect("a Kafka source");
        s.group_id = group.map(str::to_owned);
        s
    }

    #[test]
    fn namespaces_separate_every_identity() {
        let prod = Identity {
            name: "payments".into(),
            namespace: Some("prod".into()),
        };
        let staging = Identity {
            name: "payments".into(),
            namespace: Some("staging".into()),
        };
        let src = source(None);
        assert_ne!(
            prod.transactional_id("tx", 3),
            staging.transactional_id("tx", 3)
        );
        assert_ne!(prod.group_id(&src), staging.group_id(&src));
        assert_ne!(prod.checkpoint_folder(), staging.checkpoint_folder());
        assert_eq!(prod.legacy_checkpoint_folders(), ["payments", ""]);
        assert_eq!(
            prod.transactional_id("tx", 3),
            "riskpipe-prod.payments-tx-3"
        );
        assert_eq!(prod.group_id(&src), "prod.payments");
        assert_eq!(
            prod.legacy_transactional_id("tx", 3).as_deref(),
            Some("riskpipe-payments-tx-3")
        );
        assert_eq!(prod.legacy_group_id(&src).as_deref(), Some("payments"));
        // An explicit group is the user's: no legacy group to migrate from.
        assert_eq!(prod.group_id(&source(Some("g"))), "g");
        assert_eq!(prod.legacy_group_id(&source(Some("g"))), None);
    }

    #[test]
    fn local_manifests_keep_the_names_they_had() {
        let local = Identity {
            name: "payments".into(),
            namespace: None,
        };
        assert_eq!(local.transactional_id("tx", 0), "riskpipe-payments-tx-0");
        assert_eq!(local.group_id(&source(None)), "payments");
        assert_eq!(local.legacy_transactional_id("tx", 0), None);
        assert_eq!(local.checkpoint_folder(), "payments");
        assert!(local.legacy_checkpoint_folders().is_empty());
    }
}
