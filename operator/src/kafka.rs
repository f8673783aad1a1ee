//! The input topic's partition count, asked of the brokers (for the checks that need
//! it and for `status.partitions`).

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
};
use riskpipe_crds::RiskPipelineSpec;

use crate::checks::TopicInfo;

/// Longest wait for the brokers' metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the brokers say of the spec's Kafka topic; `Unknown` for other sources, for a
/// topic behind TLS/SASL settings the operator does not read, or when the brokers do
/// not answer (logged, never blocking).
pub async fn topic_info(spec: &RiskPipelineSpec) -> TopicInfo {
    let Some(kafka) = spec.source.kafka.clone() else {
        return TopicInfo::Unknown;
    };
    if kafka.security_secret_ref.is_some() {
        return TopicInfo::Unknown;
    }
    let servers = kafka.bootstrap_servers.clone();
    let topic = kafka.topic.clone();
    let result = tokio::task::spawn_blocking(move || fetch(&servers, &topic)).await;
    match result {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => {
            tracing::warn!(topic = %kafka.topic, error = %e, "cannot read the topic's metadata; partition checks skipped");
            TopicInfo::Unknown
        }
        Err(e) => {
            tracing::warn!(error = %e, "metadata task failed");
            TopicInfo::Unknown
        }
    }
}

fn fetch(servers: &str, topic: &str) -> Result<TopicInfo, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("allow.auto.create.topics", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(TopicInfo::Missing);
    };
    match t.error() {
        Some(code) if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(TopicInfo::Missing)
        }
        Some(code) => Err(KafkaError::MetadataFetch(RDKafkaErrorCode::from(code))),
        None => Ok(TopicInfo::Partitions(
            i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
        )),
    }
}
