//! The operator with real workers: `helm install` of the chart, the operator binary
//! run locally, and `riskpipe-worker` Pods run by the pod runner of `e2e/env/up`
//! against the real Kafka. Transactions (SPEC §1) flow in all the time; the
//! decisions topic is read with `read_committed`.
//!
//! What is proven: decisions flow; a savepoint by nonce shows in the status; a
//! threshold change rolls the workers in savepoint mode while transactions flow; a
//! worker killed with SIGKILL comes back and catches up; an operator killed in the
//! middle of an upgrade is replaced and the new one finishes it; suspend takes a
//! savepoint and stops every worker, resume restores the state from the savepoint
//! (the workers' local state is wiped while suspended). In the end every
//! transaction_id is on the decisions topic exactly once, and every user's
//! `txn_count_1h` counts all of that user's transactions (state kept throughout).
//!
//! The pod runner runs `$CARGO_TARGET_DIR/debug/riskpipe-worker`: each test builds
//! it first (a no-op after `cargo test --workspace`); set
//! `RISKPIPE_E2E_SKIP_WORKER_BUILD=1` to use the binary that is there.
//!
//! Storage paths: the pod runner maps a mounted claim to a folder on this machine but
//! cannot rewrite paths inside the pipeline's ConfigMap or in `POST /savepoints`, so
//! the tests use the claim's own folder as the checkpoint and savepoint path; the
//! mapping is then the identity and workers, restores and operator agree.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::Api;
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    message::Message,
    producer::{FutureProducer, FutureRecord},
};
use riskpipe_crds::{PipelineState, RiskPipeline, SavepointPhase, SavepointTrigger};
use riskpipe_e2e::{
    env::{TestEnv, keys},
    podrunner::{Sig, request_kill},
    wait::wait_for,
};

/// Longest wait for a step that stops or starts workers.
const SLOW: Duration = Duration::from_secs(240);
/// Users of the generated traffic (few, so each has many transactions).
const USERS: i64 = 40;
/// Event-time step between two transactions: the whole test stays inside one hour,
/// so `txn_count_1h` of a user's k-th transaction is k.
const EVENT_STEP_MS: i64 = 20;

/// Each test runs an operator, two workers and a producer: on a two-core machine
/// they run one at a time, or their deadlines measure the machine's load.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn progress(what: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// Topics of one pipeline.
struct Topics {
    input: String,
    decisions: String,
    dead: String,
}

async fn topics(env: &TestEnv, partitions: i32) -> Topics {
    let t = Topics {
        input: unique("tx"),
        decisions: unique("decisions"),
        dead: unique("dead"),
    };
    for name in [&t.input, &t.decisions, &t.dead] {
        create_topic(env, name, partitions).await;
    }
    t
}

/// A savepoint-mode pipeline of 2 workers on real Kafka topics; checkpoints and
/// savepoints in the folder the pod runner gives the snapshot claim; at most
/// `max_count` savepoints kept.
fn worker_manifest(env: &TestEnv, ns: &str, name: &str, t: &Topics, max_count: u32) -> String {
    worker_manifest_with(env, ns, name, t, max_count, "")
}

/// [`worker_manifest`] with `extra` lines appended to the spec.
fn worker_manifest_with(
    env: &TestEnv,
    ns: &str,
    name: &str,
    t: &Topics,
    max_count: u32,
    extra: &str,
) -> String {
    let snapshots = PathBuf::from(env.get(keys::PODS_DIR).unwrap())
        .join("claims")
        .join(ns)
        .join(format!("{name}-snapshots"));
    format!(
        "apiVersion: riskpipe.io/v1alpha1
kind: RiskPipeline
metadata:
  name: {name}
spec:
  parallelism: 2
  image: riskpipe-worker:e2e
  job:
    upgradeMode: savepoint
  source:
    kafka:
      bootstrapServers: \"{bootstrap}\"
      topic: {input}
      startupMode: earliest
      maxBatchSize: 500
      maxBatchDelay: 20ms
  sinks:
    decisions:
      kafka:
        topic: {decisions}
    deadLetters:
      kafka:
        topic: {dead}
  checkpoints:
    interval: 2s
    minPause: 1s
    storage:
      path: {snap}/checkpoints
  savepoints:
    maxCount: {max_count}
    storage:
      path: {snap}/savepoints
{extra}",
        bootstrap = env.get(keys::KAFKA_BOOTSTRAP).unwrap(),
        input = t.input,
        decisions = t.decisions,
        dead = t.dead,
        snap = snapshots.display(),
    )
}

/// Transactions produced all the time (ids 1, 2, …) until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    /// Set by the task while it is paused (nothing in flight).
    idle: Arc<AtomicBool>,
    sent: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// About `per_second` transactions a second to `topic`, each acknowledged by the
    /// broker (idempotent producer: no duplicates from retries).
    fn start(env: &TestEnv, topic: &str, per_second: u64) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", env.get(keys::KAFKA_BOOTSTRAP).unwrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicI64::new(0));
        let topic = topic.to_owned();
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 3_600_000;
        let (s, p, n, i) = (stop.clone(), paused.clone(), sent.clone(), idle.clone());
        let task = tokio::spawn(async move {
            let gap = Duration::from_micros(1_000_000 / per_second.max(1));
            let mut next = tokio::time::Instant::now();
            while !s.load(Ordering::SeqCst) {
                if p.load(Ordering::SeqCst) {
                    i.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    next = tokio::time::Instant::now();
                    continue;
                }
                i.store(false, Ordering::SeqCst);
                let id = n.load(Ordering::SeqCst) + 1;
                let user = id % USERS;
                let body = serde_json::json!({
                    "transaction_id": id,
                    "user_id": user,
                    "amount": format!("{}.{:02}", 20 + id % 300, id % 100),
                    "merchant_id": id % 17,
                    "transaction_type": "purchase",
                    "transaction_time": base_ms + id * EVENT_STEP_MS,
                    "ip_address": format!("10.0.{}.{}", user % 250, id % 250),
                    "device_id": format!("dev-{user}"),
                    "location": "Taipei",
                })
                .to_string();
                let key = user.to_string();
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&body),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("producing transaction {id}: {e}"));
                n.store(id, Ordering::SeqCst);
                next += gap;
                tokio::time::sleep_until(next).await;
            }
        });
        Self {
            stop,
            paused,
            idle,
            sent,
            task,
        }
    }

    /// Ids 1..=this are acknowledged.
    fn sent(&self) -> i64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Pauses (returns once nothing is in flight, so `sent` is final) or resumes.
    async fn pause(&self, yes: bool) {
        self.paused.store(yes, Ordering::SeqCst);
        if yes {
            wait_for("the producer to pause", DEADLINE, POLL, || async {
                Ok(self.idle.load(Ordering::SeqCst).then_some(()))
            })
            .await
            .unwrap();
        }
    }

    async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.sent.load(Ordering::SeqCst)
    }
}

/// What the `read_committed` reader of the decisions topic has seen.
#[derive(Default)]
struct Seen {
    /// transaction_id → how many decisions.
    count: HashMap<i64, u32>,
    /// user → (transaction_id, txn_count_1h) in the order read.
    by_user: HashMap<i64, Vec<(i64, i64)>>,
    /// partition → the reader's position (next offset to read).
    positions: BTreeMap<i32, i64>,
    /// Records that were not a decision.
    garbage: Vec<String>,
}

/// Reads the decisions topic from the start on its own thread until dropped.
struct Decisions {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    topic: String,
    bootstrap: String,
}

impl Decisions {
    fn read(env: &TestEnv, topic: &str) -> Self {
        let bootstrap = env.get(keys::KAFKA_BOOTSTRAP).unwrap().to_owned();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique("e2e-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                // The consumer's position moves past aborted records and transaction
                // markers too, which the reader never gets as messages.
                if let Ok(list) = consumer.position() {
                    let mut seen = s.lock().unwrap();
                    for e in list.elements() {
                        if let rdkafka::Offset::Offset(o) = e.offset() {
                            seen.positions.insert(e.partition(), o);
                        }
                    }
                }
                let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                // Right after the topic is made the broker may not know it yet.
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        progress(&format!("decisions reader: {e} (retrying)"));
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                };
                let mut seen = s.lock().unwrap();
                let value: Option<serde_json::Value> =
                    msg.payload().and_then(|p| serde_json::from_slice(p).ok());
                let parsed = value.as_ref().and_then(|v| {
                    Some((
                        v["transaction_id"].as_i64()?,
                        v["user_id"].as_i64()?,
                        v["txn_count_1h"].as_i64()?,
                    ))
                });
                match parsed {
                    Some((id, user, count)) => {
                        *seen.count.entry(id).or_default() += 1;
                        seen.by_user.entry(user).or_default().push((id, count));
                    }
                    None => seen.garbage.push(
                        String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned(),
                    ),
                }
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
            topic: topic.to_owned(),
            bootstrap,
        }
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().count.len()
    }

    /// How many of the ids 1..=`upto` have no decision yet.
    fn missing(&self, upto: i64) -> usize {
        let seen = self.seen.lock().unwrap();
        (1..=upto).filter(|id| !seen.count.contains_key(id)).count()
    }

    /// Waits until every id in 1..=`upto` has a decision.
    async fn wait_all(&self, upto: i64, what: &str, deadline: Duration) {
        wait_for(what, deadline, POLL, || async {
            Ok((self.missing(upto) == 0).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {} of {upto} without a decision", self.missing(upto)));
    }

    /// Waits until the reader has read up to the topic's end (so a late duplicate
    /// would have been seen).
    async fn wait_end(&self) {
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let md = probe
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))
            .unwrap();
        let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let mut ends = BTreeMap::new();
        for p in partitions {
            let (_, high) = probe
                .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                .unwrap();
            ends.insert(p, high);
        }
        wait_for(
            "the reader at the end of the decisions topic",
            DEADLINE,
            POLL,
            || {
                let seen = self.seen.clone();
                let ends = ends.clone();
                async move {
                    let seen = seen.lock().unwrap();
                    let done = ends.iter().all(|(p, high)| {
                        *high == 0 || seen.positions.get(p).is_some_and(|pos| *pos >= *high)
                    });
                    Ok(done.then_some(()))
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: ends {ends:?}"));
    }
}

impl Drop for Decisions {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every id in 1..=`sent` exactly once, and each user's k-th transaction counted
/// k in `txn_count_1h` (the state was never lost nor applied twice).
fn assert_exactly_once_with_state(d: &Decisions, sent: i64) {
    assert_exactly_once_with_state_since(d, sent, 0);
}

/// As [`assert_exactly_once_with_state`], with the windows counted from the
/// transactions after `since` only (state wiped then).
fn assert_exactly_once_with_state_since(d: &Decisions, sent: i64, since: i64) {
    let seen = d.seen.lock().unwrap();
    assert!(
        seen.garbage.is_empty(),
        "not decisions: {:?}",
        &seen.garbage[..seen.garbage.len().min(3)]
    );
    let missing: Vec<i64> = (1..=sent)
        .filter(|id| !seen.count.contains_key(id))
        .collect();
    let twice: Vec<(i64, u32)> = seen
        .count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    let unknown: Vec<i64> = seen.count.keys().copied().filter(|id| *id > sent).collect();
    assert!(
        missing.is_empty() && twice.is_empty() && unknown.is_empty(),
        "{} sent; lost {} (first {:?}); duplicated {} (first {:?}); unknown {:?}",
        sent,
        missing.len(),
        &missing[..missing.len().min(10)],
        twice.len(),
        &twice[..twice.len().min(10)],
        &unknown[..unknown.len().min(10)]
    );
    for (user, decisions) in &seen.by_user {
        let mut sorted: Vec<(i64, i64)> = decisions
            .iter()
            .copied()
            .filter(|(id, _)| *id > since)
            .collect();
        sorted.sort();
        for (k, (id, count)) in sorted.iter().enumerate() {
            assert_eq!(
                *count,
                k as i64 + 1,
                "user {user}: transaction {id} is the user's #{} but txn_count_1h is {count}",
                k + 1
            );
        }
    }
    progress(&format!(
        "{sent} transactions, each decided exactly once, {} users' windows intact",
        seen.by_user.len()
    ));
}

async fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    tool(env, keys::KUBECTL, args, None).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

async fn patch(env: &TestEnv, ns: &str, name: &str, json: &str) {
    kubectl(
        env,
        &[
            "patch",
            "riskpipeline",
            name,
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            json,
        ],
    )
    .await;
    progress(&format!("patched {json}"));
}

/// Waits with `deadline` until `ok` holds; panics with the operator's log.
async fn wait_rp(
    api: &Api<RiskPipeline>,
    name: &str,
    what: &str,
    op: &Operator,
    deadline: Duration,
    ok: impl Fn(&RiskPipeline) -> bool,
) -> RiskPipeline {
    progress(&format!("waiting: {what}"));
    let rp = wait_for(what, deadline, POLL, || async {
        let rp = api.get(name).await?;
        Ok(ok(&rp).then_some(rp))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail()));
    progress(&format!("done: {what}"));
    rp
}

/// Every worker runs the current generation: no rollout, Ready, all replicas ready.
fn settled(rp: &RiskPipeline, replicas: i32) -> bool {
    let Some(s) = rp.status.as_ref() else {
        return false;
    };
    s.observed_generation == rp.metadata.generation
        && s.rollout.is_none()
        && s.ready_replicas == replicas
        && s.state == Some(PipelineState::Running)
        && condition(rp, "Ready").is_some_and(|c| c.0 == "True")
}

fn completed(rp: &RiskPipeline, trigger: SavepointTrigger) -> usize {
    rp.status.as_ref().map_or(0, |s| {
        s.savepoints
            .iter()
            .filter(|p| p.trigger == trigger && p.phase == SavepointPhase::Completed)
            .count()
    })
}

fn rollout_phase(rp: &RiskPipeline) -> Option<String> {
    rp.status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .map(|r| format!("{:?}", r.phase))
}

async fn restart_count(pods: &Api<Pod>, name: &str) -> i32 {
    pods.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|p| p.status)
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().map(|c| c.restart_count))
        .unwrap_or(0)
}

/// Deletes the namespace; the pipelines' finalizers go first, as no operator runs
/// any more to remove them.
fn cleanup(env: &TestEnv, ns: &str) {
    let names = tool(
        env,
        keys::KUBECTL,
        &["get", "riskpipelines", "-n", ns, "-o", "name"],
        None,
    )
    .unwrap_or_default();
    for rp in names.lines() {
        let _ = tool(
            env,
            keys::KUBECTL,
            &[
                "patch",
                rp,
                "-n",
                ns,
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
            None,
        );
    }
    let _ = tool(
        env,
        keys::KUBECTL,
        &["delete", "namespace", ns, "--wait=false"],
        None,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_upgrades_kills_and_an_operator_restart_lose_and_duplicate_nothing() {
    let _serial = SERIAL.lock().await;
    let env = env();
    worker_binary(&env);
    let ns = install(&env, "wk-upgrade");
    let name = "payments";
    let t = topics(&env, 4).await;
    let mut op = Operator::start_as_chart(&env, &ns, "op-a");
    let c = client(&env).await;
    let api: Api<RiskPipeline> = Api::namespaced(c.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), &ns);
    let reader = Decisions::read(&env, &t.decisions);
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&worker_manifest(&env, &ns, name, &t, 10)),
    )
    .unwrap();
    let traffic = Traffic::start(&env, &t.input, 100);

    // Decisions flow.
    wait_rp(&api, name, "2 ready workers", &op, SLOW, |rp| {
        settled(rp, 2)
    })
    .await;
    let upto = traffic.sent();
    reader
        .wait_all(upto, "decisions for the first transactions", SLOW)
        .await;
    progress(&format!("{} decisions so far", reader.total()));

    // A savepoint by nonce shows in the status.
    patch(&env, &ns, name, r#"{"spec":{"savepointTriggerNonce":1}}"#).await;
    let rp = wait_rp(
        &api,
        name,
        "the nonce savepoint completed",
        &op,
        SLOW,
        |rp| {
            rp.status
                .as_ref()
                .and_then(|s| s.last_savepoint_trigger_nonce)
                == Some(1)
                && completed(rp, SavepointTrigger::Nonce) == 1
        },
    )
    .await;
    let nonce_sp = rp.status.unwrap().savepoints;
    progress(&format!(
        "savepoints: {:?}",
        nonce_sp.iter().map(|s| &s.path).collect::<Vec<_>>()
    ));

    // A threshold change rolls the workers in savepoint mode while traffic flows.
    patch(
        &env,
        &ns,
        name,
        r#"{"spec":{"rules":{"decision":{"reviewScore":65}}}}"#,
    )
    .await;
    wait_rp(&api, name, "the upgrade started", &op, DEADLINE, |rp| {
        rollout_phase(rp).is_some() || completed(rp, SavepointTrigger::Upgrade) > 0
    })
    .await;
    let rp = wait_rp(&api, name, "the upgrade finished", &op, SLOW, |rp| {
        settled(rp, 2) && completed(rp, SavepointTrigger::Upgrade) == 1
    })
    .await;
    let first_upgrade = rp.metadata.generation;
    let upto = traffic.sent();
    reader
        .wait_all(
            upto,
            "decisions of everything sent before the upgrade ended",
            SLOW,
        )
        .await;

    // A worker killed with SIGKILL comes back and catches up.
    let before = restart_count(&pods, &format!("{name}-0")).await;
    request_kill(&c, &ns, &format!("{name}-0"), Sig::Kill)
        .await
        .unwrap();
    progress("SIGKILL to payments-0");
    wait_for("payments-0 restarted", SLOW, POLL, || async {
        Ok((restart_count(&pods, &format!("{name}-0")).await > before).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_rp(
        &api,
        name,
        "2 ready workers after the kill",
        &op,
        SLOW,
        |rp| settled(rp, 2),
    )
    .await;
    let upto = traffic.sent();
    reader
        .wait_all(upto, "the killed worker caught up", SLOW)
        .await;

    // The operator dies in the middle of an upgrade; its successor finishes it.
    patch(
        &env,
        &ns,
        name,
        r#"{"spec":{"rules":{"decision":{"reviewScore":66}}}}"#,
    )
    .await;
    let rp = wait_rp(
        &api,
        name,
        "the second upgrade under way",
        &op,
        SLOW,
        |rp| rollout_phase(rp).is_some_and(|p| p != "Savepointing"),
    )
    .await;
    progress(&format!(
        "killing the operator in phase {:?}",
        rollout_phase(&rp)
    ));
    op.child.kill().unwrap();
    op.child.wait().unwrap();
    op = Operator::start_as_chart(&env, &ns, "op-b");
    let rp = wait_rp(
        &api,
        name,
        "the new operator finished the upgrade",
        &op,
        SLOW,
        |rp| settled(rp, 2) && completed(rp, SavepointTrigger::Upgrade) == 2,
    )
    .await;
    assert!(rp.metadata.generation > first_upgrade);
    let template = sts.get(name).await.unwrap().spec.template;
    let args = template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        !args.iter().any(|a| a == "--restore-from"),
        "finalized: the workers resume from local state on a crash: {args:?}"
    );

    // Everything sent is decided exactly once.
    let sent = traffic.stop().await;
    reader
        .wait_all(sent, "every transaction decided", SLOW)
        .await;
    reader.wait_end().await;
    assert_exactly_once_with_state(&reader, sent);
    let events = kubectl(
        &env,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    )
    .await;
    for reason in [
        "RolloutStarted",
        "UpgradeSavepointCompleted",
        "RolloutCompleted",
    ] {
        assert!(events.contains(reason), "no {reason} Event: {events}");
    }
    drop(op);
    cleanup(&env, &ns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_keeps_the_state_and_resume_restores_it() {
    let _serial = SERIAL.lock().await;
    let env = env();
    worker_binary(&env);
    let ns = install(&env, "wk-suspend");
    let name = "cards";
    let t = topics(&env, 4).await;
    let op = Operator::start_as_chart(&env, &ns, "op-a");
    let c = client(&env).await;
    let api: Api<RiskPipeline> = Api::namespaced(c.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let reader = Decisions::read(&env, &t.decisions);
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&worker_manifest(&env, &ns, name, &t, 1)),
    )
    .unwrap();
    let traffic = Traffic::start(&env, &t.input, 100);
    wait_rp(&api, name, "2 ready workers", &op, SLOW, |rp| {
        settled(rp, 2)
    })
    .await;
    reader
        .wait_all(traffic.sent(), "decisions flow", SLOW)
        .await;

    // Savepoint disposal: with maxCount 1 a second savepoint deletes the first one
    // from storage through the workers that wrote it.
    let mut first = None;
    for nonce in [1, 2] {
        patch(
            &env,
            &ns,
            name,
            &format!(r#"{{"spec":{{"savepointTriggerNonce":{nonce}}}}}"#),
        )
        .await;
        let rp = wait_rp(
            &api,
            name,
            "the nonce savepoint completed",
            &op,
            SLOW,
            |rp| {
                let s = rp.status.as_ref();
                s.and_then(|s| s.last_savepoint_trigger_nonce) == Some(nonce)
                    && s.is_some_and(|s| {
                        s.savepoints.len() == 1
                            && s.savepoints[0].trigger_nonce == Some(nonce)
                            && s.savepoints[0].phase == SavepointPhase::Completed
                    })
            },
        )
        .await;
        first.get_or_insert(rp.status.unwrap().savepoints[0].path.clone());
    }
    let first = PathBuf::from(first.unwrap());
    wait_for(
        "the first savepoint deleted from storage",
        DEADLINE,
        POLL,
        || {
            let first = first.clone();
            async move { Ok((!first.join("_complete").exists()).then_some(())) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", first.display()));
    let events = kubectl(
        &env,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].note}",
        ],
    )
    .await;
    assert!(
        events.contains(&format!(
            "savepoint {} deleted from storage",
            first.display()
        )),
        "{events}"
    );

    // Suspend: a savepoint, then no worker; transactions keep arriving meanwhile.
    patch(&env, &ns, name, r#"{"spec":{"job":{"state":"suspended"}}}"#).await;
    let rp = wait_rp(&api, name, "Suspended", &op, SLOW, |rp| {
        rp.status.as_ref().and_then(|s| s.state) == Some(PipelineState::Suspended)
    })
    .await;
    assert_eq!(
        completed(&rp, SavepointTrigger::Upgrade),
        1,
        "suspend takes a savepoint"
    );
    wait_for("no worker Pod left", SLOW, POLL, || async {
        let list = pods.list(&Default::default()).await?;
        Ok(list.items.is_empty().then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let at_suspend = reader.total();
    let sent_at_suspend = traffic.sent();
    wait_for(
        "transactions produced while suspended",
        DEADLINE,
        POLL,
        || async { Ok((traffic.sent() > sent_at_suspend + 300).then_some(())) },
    )
    .await
    .unwrap();
    traffic.pause(true).await;
    let sent_while_suspended = traffic.sent();
    // Without local state the workers can only get it back from the savepoint.
    let claims = PathBuf::from(env.get(keys::PODS_DIR).unwrap())
        .join("claims")
        .join(&ns);
    for ordinal in 0..2 {
        let dir = claims.join(format!("state-{name}-{ordinal}"));
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    progress("wiped both workers' local state");
    let decided = reader.total();
    assert!(
        decided <= sent_at_suspend as usize,
        "decisions while suspended: {decided} > {sent_at_suspend} (at suspend {at_suspend})"
    );

    // Resume: the workers restore the savepoint and decide the backlog with the
    // state they had (checked by txn_count_1h below).
    patch(&env, &ns, name, r#"{"spec":{"job":{"state":"running"}}}"#).await;
    let rp = wait_rp(&api, name, "resumed", &op, SLOW, |rp| settled(rp, 2)).await;
    progress(&format!(
        "restored from {:?}",
        rp.status
            .and_then(|s| s.savepoints.last().map(|s| s.path.clone()))
    ));
    reader
        .wait_all(
            sent_while_suspended,
            "the backlog decided after resume",
            SLOW,
        )
        .await;
    traffic.pause(false).await;
    let sent = traffic.stop().await;
    reader
        .wait_all(sent, "every transaction decided", SLOW)
        .await;
    reader.wait_end().await;
    assert_exactly_once_with_state(&reader, sent);
    drop(op);
    cleanup(&env, &ns);
}

/// Records that are not transactions (dead letters), about `per_second` a second
/// until the returned flag is set.
fn produce_garbage(env: &TestEnv, topic: &str, per_second: u64) -> Arc<AtomicBool> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env.get(keys::KAFKA_BOOTSTRAP).unwrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let gap = Duration::from_micros(1_000_000 / per_second.max(1));
        let mut i = 0u64;
        while !s.load(Ordering::SeqCst) {
            let key = (i % 7).to_string();
            let body = format!("not a transaction #{i}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&body),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("producing garbage: {e}"));
            i += 1;
            tokio::time::sleep(gap).await;
        }
    });
    progress(&format!(
        "producing records that are not transactions, {per_second}/s"
    ));
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_upgrades_wipe_state_and_a_high_error_rate_restarts_within_bounds() {
    let _serial = SERIAL.lock().await;
    let env = env();
    worker_binary(&env);
    let ns = install(&env, "wk-stateless");
    let name = "fraud";
    let t = topics(&env, 4).await;
    let op = Operator::start_as_chart(&env, &ns, "op-a");
    let c = client(&env).await;
    let api: Api<RiskPipeline> = Api::namespaced(c.clone(), &ns);
    let sts: Api<StatefulSet> = Api::namespaced(c.clone(), &ns);
    let reader = Decisions::read(&env, &t.decisions);
    let extra = "  restartPolicy:
    errorRateThreshold: 0.3
    window: 60s
    backoff: 5s
    maxRestarts: 1
";
    let manifest = worker_manifest_with(&env, &ns, name, &t, 10, extra)
        .replace("upgradeMode: savepoint", "upgradeMode: stateless");
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest),
    )
    .unwrap();
    let traffic = Traffic::start(&env, &t.input, 100);
    wait_rp(&api, name, "2 ready workers", &op, SLOW, |rp| {
        settled(rp, 2)
    })
    .await;
    reader
        .wait_all(traffic.sent(), "decisions flow", SLOW)
        .await;

    // A stateless upgrade: the new workers start with empty windows and read on
    // from the committed offsets (nothing decided twice).
    traffic.pause(true).await;
    let before = traffic.sent();
    reader
        .wait_all(before, "everything before the upgrade decided", SLOW)
        .await;
    patch(
        &env,
        &ns,
        name,
        r#"{"spec":{"rules":{"decision":{"reviewScore":64}}}}"#,
    )
    .await;
    wait_rp(&api, name, "the stateless upgrade done", &op, SLOW, |rp| {
        settled(rp, 2) && rp.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    let args = sts
        .get(name)
        .await
        .unwrap()
        .spec
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(
        args.contains("--state-dir /var/lib/riskpipe/state/stateless-"),
        "{args}"
    );
    traffic.pause(false).await;
    reader
        .wait_all(traffic.sent(), "decisions after the upgrade", SLOW)
        .await;

    // Dead letters push the error rate over 0.3 for the window: one restart; high
    // again within the window: Degraded instead of a second one.
    // (The worker's error rate counts since its start, so the garbage keeps coming.)
    let garbage = produce_garbage(&env, &t.input, 100);
    let rp = wait_rp(
        &api,
        name,
        "a restart for the error rate",
        &op,
        SLOW,
        |rp| {
            rp.status
                .as_ref()
                .and_then(|s| s.restarts.as_ref())
                .is_some_and(|r| r.count == 1)
        },
    )
    .await;
    let reason = rp
        .status
        .unwrap()
        .restarts
        .unwrap()
        .last_reason
        .unwrap_or_default();
    assert!(reason.contains("error rate"), "{reason}");
    let template = sts.get(name).await.unwrap().spec.template;
    assert!(
        template
            .metadata
            .unwrap()
            .annotations
            .unwrap()
            .contains_key("riskpipe.io/restarted-at"),
        "the restart rolls the workers"
    );
    let rp = wait_rp(
        &api,
        name,
        "Degraded: restart limit reached",
        &op,
        SLOW,
        |rp| {
            condition(rp, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == "RestartLimitReached")
        },
    )
    .await;
    garbage.store(true, Ordering::SeqCst);
    assert_eq!(rp.status.unwrap().restarts.unwrap().count, 1, "bounded");
    let events = kubectl(
        &env,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].reason}",
        ],
    )
    .await;
    for reason in ["Restarted", "RestartLimitReached"] {
        assert!(events.contains(reason), "no {reason} Event: {events}");
    }

    let sent = traffic.stop().await;
    reader
        .wait_all(sent, "every transaction decided", SLOW)
        .await;
    reader.wait_end().await;
    assert_exactly_once_with_state_since(&reader, sent, before);
    drop(op);
    cleanup(&env, &ns);
}
