//! The reconcile against a mock API server: every request the operator makes is
//! checked in order (method, path, field manager, body), as kube-rs/controller-rs
//! does with its `ApiServerVerifier`.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Client,
    api::ObjectMeta,
    client::Body,
    runtime::events::{Recorder, Reporter},
};
use riskpipe_crds::{RiskPipeline, RiskPipelineSpec, SourceSpec};
use serde_json::{Value, json};

use super::*;
use crate::{
    checks::TopicInfo,
    names::FINALIZER,
    worker_api::{Disposal, SavepointInfo, SavepointState, WorkerError, WorkerStatus},
};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Checks a request's JSON body and gives the answer (`None`: 404).
type Answer = Box<dyn FnOnce(&Value) -> Option<Value> + Send>;

/// One request the operator must make next, and the answer it gets.
struct Expect {
    method: Method,
    path: &'static str,
    /// Checks the JSON body; returns what to answer (`None`: 404).
    answer: Answer,
}

fn echo(method: Method, path: &'static str) -> Expect {
    Expect {
        method,
        path,
        answer: Box::new(|b| Some(b.clone())),
    }
}

fn not_found(path: &'static str) -> Expect {
    Expect {
        method: Method::GET,
        path,
        answer: Box::new(|_| None),
    }
}

fn check(method: Method, path: &'static str, f: impl FnOnce(&Value) + Send + 'static) -> Expect {
    Expect {
        method,
        path,
        answer: Box::new(move |b| {
            f(b);
            Some(b.clone())
        }),
    }
}

/// Serves `expects` in order; panics on any other request.
async fn verify(mut handle: Handle, expects: Vec<Expect>) {
    for (i, e) in expects.into_iter().enumerate() {
        let (req, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("request {i} ({} {}) never came", e.method, e.path));
        let uri = req.uri().clone();
        assert_eq!(
            (req.method(), uri.path()),
            (&e.method, e.path),
            "request {i}: {uri}"
        );
        let is_apply = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/apply-patch+yaml");
        if e.method == Method::PATCH && is_apply {
            let query = uri.query().unwrap_or_default();
            assert!(
                query.contains("fieldManager=riskpipe-operator") && query.contains("force=true"),
                "request {i} must be a forced apply: {uri}"
            );
        }
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let response = match (e.answer)(&body) {
            Some(v) => Response::builder().body(Body::from(serde_json::to_vec(&v).unwrap())),
            None => Response::builder().status(StatusCode::NOT_FOUND).body(Body::from(
                serde_json::to_vec(&json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"})).unwrap(),
            )),
        };
        send.send_response(response.unwrap());
    }
}

struct NoWorkers;

impl WorkerApi for NoWorkers {
    fn status(
        &self,
        addr: std::net::SocketAddr,
    ) -> BoxFuture<'_, Result<WorkerStatus, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "test".into(),
            })
        })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "test".into(),
            })
        })
    }
    fn savepoint<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "test".into(),
            })
        })
    }
    fn delete_savepoint<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Disposal, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "test".into(),
            })
        })
    }
}

struct FixedTopic(TopicInfo);

impl Topics for FixedTopic {
    fn lookup<'a>(&'a self, _: &'a RiskPipelineSpec) -> BoxFuture<'a, TopicInfo> {
        Box::pin(async move { self.0.clone() })
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

fn context(topic: TopicInfo) -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context {
        client: client.clone(),
        applier: crate::apply::Applier::new(client.clone()),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "riskpipe-operator".into(),
                instance: None,
            },
        ),
        workers: Arc::new(NoWorkers),
        topics: Arc::new(FixedTopic(topic)),
        metrics: crate::metrics::Metrics::default(),
        now,
        default_worker_image: riskpipe_crds::DEFAULT_IMAGE.into(),
    };
    (Arc::new(ctx), handle)
}

fn pipeline() -> RiskPipeline {
    let mut rp = RiskPipeline::new(
        "payments",
        RiskPipelineSpec::with_source(SourceSpec::kafka()),
    );
    rp.metadata = ObjectMeta {
        name: Some("payments".into()),
        namespace: Some("risk".into()),
        uid: Some("uid-1".into()),
        generation: Some(2),
        finalizers: Some(vec![FINALIZER.into()]),
        ..ObjectMeta::default()
    };
    rp.spec.parallelism = 2;
    rp
}

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/risk/events";
const STATUS: &str = "/apis/riskpipe.io/v1alpha1/namespaces/risk/riskpipelines/payments/status";

const PIPELINE: &str = "/apis/riskpipe.io/v1alpha1/namespaces/risk/riskpipelines/payments";

/// Runs one reconcile of `rp`; the first request, reading the stored pipeline, is
/// answered with `rp` itself.
async fn run(
    rp: RiskPipeline,
    topic: TopicInfo,
    mut expects: Vec<Expect>,
) -> Result<Action, Error> {
    let (ctx, handle) = context(topic);
    let stored = serde_json::to_value(&rp).unwrap();
    expects.insert(
        0,
        Expect {
            method: Method::GET,
            path: PIPELINE,
            answer: Box::new(move |_| Some(stored)),
        },
    );
    let server = tokio::spawn(verify(handle, expects));
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reconcile(Arc::new(rp), ctx),
    )
    .await
    .expect("reconcile finished");
    server.await.expect("every expected request was made");
    result
}

/// A status apply, answered with a whole pipeline as the apiserver would.
fn status_check(f: impl FnOnce(&Value) + Send + 'static) -> Expect {
    Expect {
        method: Method::PATCH,
        path: STATUS,
        answer: Box::new(move |b| {
            f(b);
            let mut whole = serde_json::to_value(pipeline()).unwrap();
            whole["status"] = b["status"].clone();
            Some(whole)
        }),
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_waits_for_a_change() {
    let mut rp = pipeline();
    rp.spec.autoscaler.min_replicas = 9;
    rp.spec.autoscaler.max_replicas = 2;
    let action = run(
        rp,
        TopicInfo::Unknown,
        vec![
            check(Method::POST, EVENTS, |e| {
                assert_eq!(e["reason"], "InvalidSpec");
                assert_eq!(e["type"], "Warning");
                assert!(e["note"].as_str().unwrap().contains("minReplicas"), "{e}");
            }),
            status_check(|s| {
                let ready = condition(s, "Ready");
                assert_eq!(
                    (ready["status"].as_str(), ready["reason"].as_str()),
                    (Some("False"), Some("InvalidSpec"))
                );
                assert!(
                    ready["message"]
                        .as_str()
                        .unwrap()
                        .contains("spec.autoscaler.minReplicas"),
                    "{ready}"
                );
                assert_eq!(s["status"]["observedGeneration"], 2);
                assert_eq!(s["status"]["state"], "Failed");
            }),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        action,
        Action::await_change(),
        "no retry loop on an invalid spec"
    );
}

#[tokio::test]
async fn too_few_partitions_is_invalid_with_both_numbers() {
    run(
        pipeline(),
        TopicInfo::Partitions(1),
        vec![
            echo(Method::POST, EVENTS),
            status_check(|s| {
                let msg = condition(s, "Ready")["message"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    msg.contains("spec.parallelism: is 2") && msg.contains("1 partition(s)"),
                    "{msg}"
                );
            }),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_new_pipeline_gets_its_objects_applied_then_its_status() {
    let action = run(
        pipeline(),
        TopicInfo::Partitions(4),
        vec![
            not_found("/apis/apps/v1/namespaces/risk/statefulsets/payments"),
            not_found("/api/v1/namespaces/risk/configmaps/payments-config"),
            Expect {
                method: Method::GET,
                path: "/api/v1/namespaces/risk/pods",
                answer: Box::new(|_| {
                    Some(json!({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}))
                }),
            },
            check(
                Method::PATCH,
                "/api/v1/namespaces/risk/serviceaccounts/payments-worker",
                |b| {
                    assert_eq!(b["automountServiceAccountToken"], false);
                },
            ),
            check(
                Method::PATCH,
                "/api/v1/namespaces/risk/services/payments-workers",
                |b| {
                    assert_eq!(b["spec"]["clusterIP"], "None");
                },
            ),
            echo(
                Method::PATCH,
                "/apis/policy/v1/namespaces/risk/poddisruptionbudgets/payments",
            ),
            echo(
                Method::PATCH,
                "/api/v1/namespaces/risk/persistentvolumeclaims/payments-snapshots",
            ),
            check(
                Method::PATCH,
                "/api/v1/namespaces/risk/configmaps/payments-config",
                |b| {
                    assert!(
                        b["data"]["pipeline.yaml"]
                            .as_str()
                            .unwrap()
                            .contains("kind: RiskPipeline")
                    );
                },
            ),
            check(
                Method::PATCH,
                "/apis/apps/v1/namespaces/risk/statefulsets/payments",
                |b| {
                    assert_eq!(b["spec"]["replicas"], 2);
                    assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], "uid-1");
                },
            ),
            check(Method::POST, EVENTS, |e| assert_eq!(e["reason"], "Created")),
            status_check(|s| {
                let st = &s["status"];
                assert_eq!(st["observedGeneration"], 2);
                assert_eq!(
                    st["selector"],
                    "app.kubernetes.io/component=worker,riskpipe.io/pipeline=payments"
                );
                assert_eq!(st["partitions"], 4);
                assert_eq!(st["state"], "Deploying");
                assert_eq!(condition(s, "Ready")["status"], "False");
                assert_eq!(condition(s, "Progressing")["reason"], "Deploying");
                assert_eq!(condition(s, "Degraded")["status"], "False");
            }),
        ],
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(BUSY_REQUEUE));
}

#[tokio::test]
async fn a_pipeline_without_the_finalizer_gets_it_first() {
    let mut rp = pipeline();
    rp.metadata.finalizers = None;
    run(
        rp,
        TopicInfo::Unknown,
        vec![Expect {
            method: Method::PATCH,
            path: "/apis/riskpipe.io/v1alpha1/namespaces/risk/riskpipelines/payments",
            answer: Box::new(|b| {
                assert!(b.to_string().contains(FINALIZER), "{b}");
                Some(serde_json::to_value(pipeline()).unwrap())
            }),
        }],
    )
    .await
    .unwrap();
}

/// Workers that acknowledge savepoints and remember what they were asked; the
/// worker at `unreachable` does not answer deletions.
#[derive(Default)]
struct RecordingWorkers {
    asked: std::sync::Mutex<Vec<(std::net::SocketAddr, String)>>,
    deleted: std::sync::Mutex<Vec<(std::net::SocketAddr, String)>>,
    unreachable: Option<std::net::IpAddr>,
}

impl WorkerApi for RecordingWorkers {
    fn status(
        &self,
        addr: std::net::SocketAddr,
    ) -> BoxFuture<'_, Result<WorkerStatus, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "not needed".into(),
            })
        })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        path: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        self.asked.lock().unwrap().push((addr, path.to_owned()));
        Box::pin(async move {
            Ok(SavepointInfo {
                id: format!("sp-{}", addr.ip()),
                state: SavepointState::InProgress,
                path: path.to_owned(),
                error: None,
            })
        })
    }
    fn savepoint<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "not needed".into(),
            })
        })
    }
    fn delete_savepoint<'a>(
        &'a self,
        addr: std::net::SocketAddr,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Disposal, WorkerError>> {
        if self.unreachable == Some(addr.ip()) {
            return Box::pin(async move {
                Err(WorkerError::Unreachable {
                    addr,
                    reason: "connection refused".into(),
                })
            });
        }
        self.deleted.lock().unwrap().push((addr, id.to_owned()));
        Box::pin(async { Ok(Disposal::Deleted) })
    }
}

fn running_statefulset(rp: &RiskPipeline) -> Value {
    // The operator hashes the spec it acts on: the image resolved to its default.
    let spec = crate::lifecycle::effective_spec(
        &rp.spec,
        &rp.status.clone().unwrap_or_default(),
        riskpipe_crds::DEFAULT_IMAGE,
    );
    let hash = crate::build::config_hash(&spec).unwrap();
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "payments", "namespace": "risk", "generation": 1},
        "spec": {
            "replicas": 2, "serviceName": "payments-workers",
            "selector": {"matchLabels": {"riskpipe.io/pipeline": "payments"}},
            "template": {"metadata": {"annotations": {"riskpipe.io/config-hash": hash, "riskpipe.io/parallelism": "2"}},
                         "spec": {"containers": [{"name": "worker"}]}}
        },
        "status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 1,
                   "currentRevision": "r1", "updateRevision": "r1"}
    })
}

fn worker_pod(ordinal: i32) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("payments-{ordinal}"), "namespace": "risk"},
           "status": {"podIP": format!("127.0.1.{}", ordinal + 2)}})
}

#[tokio::test]
async fn a_new_nonce_asks_every_worker_and_records_their_requests() {
    let mut rp = pipeline();
    rp.spec.savepoint_trigger_nonce = Some(7);
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let workers = Arc::new(RecordingWorkers::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        applier: crate::apply::Applier::new(client.clone()),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "riskpipe-operator".into(),
                instance: None,
            },
        ),
        workers: workers.clone(),
        topics: Arc::new(FixedTopic(TopicInfo::Unknown)),
        metrics: crate::metrics::Metrics::default(),
        now,
        default_worker_image: riskpipe_crds::DEFAULT_IMAGE.into(),
    });
    let sts = running_statefulset(&rp);
    let stored = serde_json::to_value(&rp).unwrap();
    let expects = vec![
        // The stored pipeline, not the (stale) cached one, is what the reconcile decides on.
        Expect {
            method: Method::GET,
            path: PIPELINE,
            answer: Box::new(move |_| Some(stored)),
        },
        Expect {
            method: Method::GET,
            path: "/apis/apps/v1/namespaces/risk/statefulsets/payments",
            answer: Box::new(move |_| Some(sts)),
        },
        not_found("/api/v1/namespaces/risk/configmaps/payments-config"),
        Expect {
            method: Method::GET,
            path: "/api/v1/namespaces/risk/pods",
            answer: Box::new(|_| {
                Some(
                    json!({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[worker_pod(0), worker_pod(1)]}),
                )
            }),
        },
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/serviceaccounts/payments-worker",
        ),
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/services/payments-workers",
        ),
        echo(
            Method::PATCH,
            "/apis/policy/v1/namespaces/risk/poddisruptionbudgets/payments",
        ),
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/persistentvolumeclaims/payments-snapshots",
        ),
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/configmaps/payments-config",
        ),
        check(
            Method::PATCH,
            "/apis/apps/v1/namespaces/risk/statefulsets/payments",
            |b| {
                assert_eq!(
                    b["spec"]["replicas"], 2,
                    "a nonce never changes the workers"
                );
            },
        ),
        check(Method::POST, EVENTS, |e| {
            assert_eq!(e["reason"], "SavepointTriggered")
        }),
        status_check(|s| {
            let st = &s["status"];
            assert_eq!(st["lastSavepointTriggerNonce"], 7);
            let sp = &st["savepoints"][0];
            assert_eq!(
                (
                    sp["trigger"].as_str(),
                    sp["phase"].as_str(),
                    sp["triggerNonce"].as_i64()
                ),
                (Some("Nonce"), Some("InProgress"), Some(7))
            );
            assert_eq!(
                sp["requests"],
                json!([{"ordinal":0,"id":"sp-127.0.1.2"},{"ordinal":1,"id":"sp-127.0.1.3"}])
            );
            assert_eq!(condition(s, "Progressing")["reason"], "SavepointInProgress");
        }),
    ];
    let server = tokio::spawn(verify(handle, expects));
    // The watch cache has not seen the nonce yet.
    let mut cached = rp.clone();
    cached.spec.savepoint_trigger_nonce = None;
    let action = reconcile(Arc::new(cached), ctx).await.unwrap();
    server.await.unwrap();
    assert_eq!(action, Action::requeue(BUSY_REQUEUE));
    let asked = workers.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2);
    assert!(
        asked.iter().all(|(addr, path)| addr.port() == 8080
            && path.starts_with("/var/lib/riskpipe/savepoints/payments/savepoint-")),
        "{asked:?}"
    );
    assert_eq!(
        asked[0].1, asked[1].1,
        "one common folder for the savepoint"
    );
}

fn completed_savepoint(minute: i64) -> riskpipe_crds::SavepointStatus {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let at = Timestamp::from_second(now().as_second() - 3600 + minute * 60).unwrap();
    riskpipe_crds::SavepointStatus {
        path: format!("/var/lib/riskpipe/savepoints/payments/savepoint-{minute}"),
        trigger: riskpipe_crds::SavepointTrigger::Nonce,
        trigger_nonce: Some(minute),
        phase: riskpipe_crds::SavepointPhase::Completed,
        started_at: Time(at),
        completed_at: Some(Time(at)),
        message: None,
        requests: (0..2)
            .map(|ordinal| riskpipe_crds::WorkerSavepointRequest {
                ordinal,
                id: format!("sp-{minute}"),
            })
            .collect(),
    }
}

/// Retention over `maxCount`: the oldest savepoint is deleted on each worker that
/// wrote a part; when one worker cannot be reached the entry stays, holding only the
/// part still to delete, and a Warning says so.
async fn dispose_with(unreachable: Option<&str>) -> (Value, Vec<(std::net::SocketAddr, String)>) {
    let mut rp = pipeline();
    rp.spec.savepoints.max_count = 2;
    rp.spec.savepoint_trigger_nonce = Some(3);
    rp.status = Some(riskpipe_crds::RiskPipelineStatus {
        last_savepoint_trigger_nonce: Some(3),
        savepoints: (1..=3).map(completed_savepoint).collect(),
        ..Default::default()
    });
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let workers = Arc::new(RecordingWorkers {
        unreachable: unreachable.map(|ip| ip.parse().unwrap()),
        ..RecordingWorkers::default()
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        applier: crate::apply::Applier::new(client.clone()),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "riskpipe-operator".into(),
                instance: None,
            },
        ),
        workers: workers.clone(),
        topics: Arc::new(FixedTopic(TopicInfo::Unknown)),
        metrics: crate::metrics::Metrics::default(),
        now,
        default_worker_image: riskpipe_crds::DEFAULT_IMAGE.into(),
    });
    let sts = running_statefulset(&rp);
    let stored = serde_json::to_value(&rp).unwrap();
    let written = Arc::new(std::sync::Mutex::new(Value::Null));
    let w = written.clone();
    let expect_event = unreachable.is_some();
    let mut expects = vec![
        Expect {
            method: Method::GET,
            path: PIPELINE,
            answer: Box::new(move |_| Some(stored)),
        },
        Expect {
            method: Method::GET,
            path: "/apis/apps/v1/namespaces/risk/statefulsets/payments",
            answer: Box::new(move |_| Some(sts)),
        },
        not_found("/api/v1/namespaces/risk/configmaps/payments-config"),
        Expect {
            method: Method::GET,
            path: "/api/v1/namespaces/risk/pods",
            answer: Box::new(|_| {
                Some(
                    json!({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[worker_pod(0), worker_pod(1)]}),
                )
            }),
        },
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/serviceaccounts/payments-worker",
        ),
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/services/payments-workers",
        ),
        echo(
            Method::PATCH,
            "/apis/policy/v1/namespaces/risk/poddisruptionbudgets/payments",
        ),
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/persistentvolumeclaims/payments-snapshots",
        ),
        echo(
            Method::PATCH,
            "/api/v1/namespaces/risk/configmaps/payments-config",
        ),
        echo(
            Method::PATCH,
            "/apis/apps/v1/namespaces/risk/statefulsets/payments",
        ),
        check(Method::POST, EVENTS, move |e| {
            let (reason, kind) = if expect_event {
                ("SavepointDisposalPending", "Warning")
            } else {
                ("SavepointDisposed", "Normal")
            };
            assert_eq!(
                (e["reason"].as_str(), e["type"].as_str()),
                (Some(reason), Some(kind)),
                "{e}"
            );
            assert!(e["note"].as_str().unwrap().contains("savepoint-1"), "{e}");
        }),
    ];
    expects.push(status_check(move |s| {
        *w.lock().unwrap() = s["status"].clone()
    }));
    let server = tokio::spawn(verify(handle, expects));
    reconcile(Arc::new(rp), ctx).await.unwrap();
    server.await.unwrap();
    let deleted = workers.deleted.lock().unwrap().clone();
    let status = written.lock().unwrap().clone();
    (status, deleted)
}

#[tokio::test]
async fn retention_deletes_the_oldest_savepoint_on_every_worker() {
    let (status, deleted) = dispose_with(None).await;
    let ids: Vec<(String, &str)> = deleted
        .iter()
        .map(|(a, id)| (a.ip().to_string(), id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("127.0.1.2".to_owned(), "sp-1"),
            ("127.0.1.3".to_owned(), "sp-1")
        ]
    );
    let paths: Vec<&str> = status["savepoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/var/lib/riskpipe/savepoints/payments/savepoint-2",
            "/var/lib/riskpipe/savepoints/payments/savepoint-3"
        ]
    );
}

#[tokio::test]
async fn an_unreachable_worker_keeps_the_entry_for_a_later_retry() {
    let (status, deleted) = dispose_with(Some("127.0.1.3")).await;
    assert_eq!(deleted.len(), 1, "worker 0 deleted its part: {deleted:?}");
    let first = &status["savepoints"][0];
    assert_eq!(
        first["path"],
        "/var/lib/riskpipe/savepoints/payments/savepoint-1"
    );
    assert_eq!(
        first["requests"],
        json!([{"ordinal": 1, "id": "sp-1"}]),
        "only the part still to delete"
    );
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("disposal pending"),
        "{first}"
    );
    assert_eq!(status["savepoints"].as_array().unwrap().len(), 3);
}
