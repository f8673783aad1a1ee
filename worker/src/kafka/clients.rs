//! Kafka client settings: the input consumer (manual assignment, read_committed,
//! no auto-commit) and one transactional producer per owned partition, whose
//! transactional id fences any other worker that still writes for it.

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use riskpipe_crds::{KafkaSource, StartupMode};

/// Settings shared by every client of the pipeline.
pub fn base_config(source: &KafkaSource) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &source.bootstrap_servers)
        .set("client.id", "riskpipe-worker")
        .set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// The input consumer.
pub fn consumer_config(source: &KafkaSource, group_id: &str) -> ClientConfig {
    let mut c = base_config(source);
    let reset = match source.startup_mode {
        StartupMode::Earliest => "earliest",
        _ => "latest",
    };
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", reset)
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "5")
        .set("queued.min.messages", "20000");
    c
}

/// The transactional producer of one input partition.
pub fn producer_config(source: &KafkaSource, transactional_id: &str) -> ClientConfig {
    let mut c = base_config(source);
    c.set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .set("transaction.timeout.ms", "60000")
        .set("queue.buffering.max.messages", "200000");
    c
}

/// The transactional id of a partition's producer: stable across restarts and
/// replica counts, so the partition's next owner fences its previous one.
pub fn transactional_id(pipeline: &str, topic: &str, partition: i32) -> String {
    format!("riskpipe-{pipeline}-{topic}-{partition}")
}
