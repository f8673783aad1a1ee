//! Kafka from `e2e/env/up`: an 8-partition topic, a transactional producer, and a
//! read_committed consumer that sees committed records and none of an aborted batch.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use riskpipe_e2e::env::keys;
use tokio::time::Instant;

const PARTITIONS: i32 = 8;
const PER_PARTITION: i32 = 5;

fn send_batch(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, tag: &str) {
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let payload = format!("{tag}-{p}-{i}");
            producer
                .send(
                    BaseRecord::to(topic)
                        .partition(p)
                        .key(&payload)
                        .payload(&payload),
                )
                .unwrap_or_else(|(e, _)| panic!("enqueue {payload}: {e}"));
        }
    }
}

#[tokio::test]
async fn transactions_are_read_committed_on_eight_partitions() {
    let env = common::env();
    let bootstrap = env.get(keys::KAFKA_BOOTSTRAP).unwrap().to_owned();
    let topic = common::unique("e2e-smoke");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap_or_else(|e| panic!("create topic on {bootstrap}: {e}"));
    for result in created {
        result.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", format!("{topic}-tx"))
        .set("enable.idempotence", "true")
        .create()
        .expect("transactional producer");
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .expect("init_transactions");
    producer.begin_transaction().unwrap();
    send_batch(&producer, &topic, "committed");
    producer.commit_transaction(timeout).expect("commit");
    producer.begin_transaction().unwrap();
    send_batch(&producer, &topic, "aborted");
    producer.abort_transaction(timeout).expect("abort");
    // A last committed batch after the aborted one: once the consumer has read it on
    // every partition, everything before it has been decided.
    producer.begin_transaction().unwrap();
    for p in 0..PARTITIONS {
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(p)
                    .key("end")
                    .payload("end"),
            )
            .unwrap_or_else(|(e, _)| panic!("enqueue end marker: {e}"));
    }
    producer
        .commit_transaction(timeout)
        .expect("commit end markers");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut ended: BTreeSet<i32> = BTreeSet::new();
    while ended.len() < PARTITIONS as usize {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("timed out reading {topic}: end markers from {ended:?} only; seen {seen:?}")
            })
            .expect("consume");
        let payload = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
        if payload == "end" {
            ended.insert(msg.partition());
        } else {
            seen.entry(msg.partition()).or_default().push(payload);
        }
    }
    assert_eq!(
        seen.len(),
        PARTITIONS as usize,
        "records on every partition: {seen:?}"
    );
    for (p, payloads) in &seen {
        let expected: Vec<String> = (0..PER_PARTITION)
            .map(|i| format!("committed-{p}-{i}"))
            .collect();
        assert_eq!(
            payloads, &expected,
            "partition {p}: committed records in order, none aborted"
        );
    }
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
