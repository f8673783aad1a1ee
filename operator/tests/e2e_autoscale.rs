//! GitOps-safe autoscaling on the real control plane of `e2e/env/up`: the built-in
//! autoscaler keeps its choice in `status.autoscaledParallelism`, which drives the
//! StatefulSet, and never writes the spec, so Argo CD with self-heal sees no drift.
//!
//! The reconcile runs in this process against the real API server, with real worker
//! Pods (run by the pod runner) and the real input topic; only the figures the
//! workers report on `/status` are scripted, because the autoscaler's decisions
//! follow from them and real load on a shared two-core machine cannot steer three
//! decisions in a row within a test's time. Everything else the reconcile does —
//! applying the StatefulSet, reading the Pods, writing the status, Events — is real.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{
    Api, ResourceExt,
    runtime::events::{Recorder, Reporter},
};
use riskpipe_crds::RiskPipeline;
use riskpipe_e2e::{env::keys, wait::wait_for};
use riskpipe_operator::{
    apply::Applier,
    metrics::Metrics,
    reconcile::{self, Context, KafkaTopics},
    worker_api::{Disposal, SavepointInfo, WorkerApi, WorkerError, WorkerState, WorkerStatus},
};

/// Every worker reports the same scripted figures.
#[derive(Default)]
struct Figures {
    /// (records per second of one worker, busy ratio).
    now: Mutex<(f64, f64)>,
}

impl WorkerApi for Figures {
    fn status(&self, _: SocketAddr) -> BoxFuture<'_, Result<WorkerStatus, WorkerError>> {
        let (rate, busy) = *self.now.lock().unwrap();
        Box::pin(async move {
            Ok(WorkerStatus {
                records_per_second: rate,
                busy_ratio: busy,
                state: WorkerState::Running,
                ..WorkerStatus::default()
            })
        })
    }
    fn trigger_savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "no savepoints in this test".into(),
            })
        })
    }
    fn savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        self.trigger_savepoint(addr, "")
    }
    fn delete_savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Disposal, WorkerError>> {
        Box::pin(async move {
            Err(WorkerError::Unreachable {
                addr,
                reason: "no savepoints in this test".into(),
            })
        })
    }
}

/// The stored object's spec exactly as the API server returns it, and its generation.
fn stored_spec(env: &riskpipe_e2e::env::TestEnv, ns: &str) -> (String, i64) {
    let text = tool(
        env,
        keys::KUBECTL,
        &["get", "riskpipeline", "payments", "-n", ns, "-o", "json"],
        None,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        serde_json::to_string(&v["spec"]).unwrap(),
        v["metadata"]["generation"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn the_autoscaler_drives_the_workers_from_the_status_and_never_writes_the_spec() {
    let env = env();
    worker_binary(&env);
    let ns = install(&env, "op-autoscale");
    let topic = unique("tx-as");
    create_topic(&env, &topic, 4).await;
    // No spec.image: the stored object must not get one from the CRD.
    let text = manifest(&env, "payments", &topic, 1, "")
        .replace("  image: riskpipe-worker:e2e\n", "")
        + "  autoscaler:\n    enabled: true\n    minReplicas: 1\n    maxReplicas: 4\n    \
           targetUtilization: 0.5\n    stabilizationWindow: 2s\n    catchUpDuration: 60s\n    \
           restartTime: 0s\n";
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&text),
    )
    .unwrap();
    let (spec_before, generation) = stored_spec(&env, &ns);
    assert!(
        !spec_before.contains("\"image\""),
        "the CRD baked an image into the stored spec: {spec_before}"
    );

    let client = client(&env).await;
    let figures = Arc::new(Figures::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        applier: Applier::new(client.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "riskpipe-operator".into(),
                instance: Some("e2e-autoscale".into()),
            },
        ),
        workers: figures.clone(),
        topics: Arc::new(KafkaTopics),
        metrics: Metrics::default(),
        now: k8s_openapi::jiff::Timestamp::now,
        // The pod runner runs this image from its build folder.
        default_worker_image: "riskpipe-worker:e2e".into(),
    });
    // The reconcile loop of this test (the controller's, without the watch).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (ctx, stop, api) = (
            ctx.clone(),
            stop.clone(),
            Api::<RiskPipeline>::namespaced(client.clone(), &ns),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(rp) = api.get("payments").await
                    && let Err(e) = reconcile::reconcile(Arc::new(rp), ctx.clone()).await
                {
                    eprintln!("reconcile failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let api: Api<RiskPipeline> = Api::namespaced(client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let image = sts_api_image(&sts_api).await;
    assert_eq!(image, "riskpipe-worker:e2e", "the operator's default image");
    // Each worker does `rate` records/s at `busy`; at target utilization 0.5:
    // 1 worker saturated → 2; 2 saturated → 4; 4 at busy 0.1 → 1.
    for (busy, want) in [(1.0, 2), (1.0, 4), (0.1, 1)] {
        *figures.now.lock().unwrap() = (1000.0, busy);
        let rp = wait_for(
            &format!("the autoscaler to choose {want} workers and them to run"),
            Duration::from_secs(150),
            POLL,
            || async {
                let rp = api.get("payments").await?;
                let sts = sts_api.get_opt("payments").await?;
                let s = rp.status.clone().unwrap_or_default();
                let running = sts
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some_and(|st| st.ready_replicas == Some(want) && st.replicas == want);
                Ok((s.autoscaled_parallelism == Some(want)
                    && s.parallelism == Some(want)
                    && s.state == Some(riskpipe_crds::PipelineState::Running)
                    && running)
                    .then_some(rp))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rp.spec.parallelism, 1,
            "spec.parallelism written by the operator"
        );
        let sts = sts_api.get("payments").await.unwrap();
        assert_eq!(sts.spec.replicas, Some(want));
    }
    let (spec_after, generation_after) = stored_spec(&env, &ns);
    assert_eq!(
        spec_after, spec_before,
        "the spec changed over three autoscaler decisions"
    );
    assert_eq!(generation_after, generation, "metadata.generation moved");
    // The decisions are Events naming the status field (the recorder folds Events
    // of one reason into a series, so their count is not the decisions' count).
    let events = tool(
        &env,
        keys::KUBECTL,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={range .items[?(@.reason==\"Scaled\")]}{.note}{\"\\n\"}{end}",
        ],
        None,
    )
    .unwrap();
    assert!(
        events.contains("1 → 2") && events.contains("status.autoscaledParallelism"),
        "{events}"
    );
    // `kubectl get` shows the spec's parallelism and the autoscaler's choice.
    let table = tool(
        &env,
        keys::KUBECTL,
        &["get", "riskpipelines", "-n", &ns],
        None,
    )
    .unwrap();
    assert!(
        table.contains("PARALLELISM") && table.contains("AUTOSCALED") && table.contains("WORKERS"),
        "{table}"
    );

    // Turned off, the autoscaler's choice goes and the spec (and HPA/KEDA through the
    // scale subresource) drives the workers again.
    tool(
        &env,
        keys::KUBECTL,
        &[
            "patch",
            "riskpipeline",
            "payments",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"autoscaler":{"enabled":false}}}"#,
        ],
        None,
    )
    .unwrap();
    tool(
        &env,
        keys::KUBECTL,
        &[
            "scale",
            "riskpipeline",
            "payments",
            "-n",
            &ns,
            "--replicas=3",
        ],
        None,
    )
    .unwrap();
    wait_for(
        "3 workers through the scale subresource",
        Duration::from_secs(150),
        POLL,
        || async {
            let rp = api.get("payments").await?;
            let s = rp.status.clone().unwrap_or_default();
            let sts = sts_api.get("payments").await?;
            Ok((s.autoscaled_parallelism.is_none()
                && s.parallelism == Some(3)
                && sts.spec.replicas == Some(3))
            .then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = looping.await;
    let _ = tool(
        &env,
        keys::KUBECTL,
        &[
            "delete",
            "riskpipeline",
            "payments",
            "-n",
            &ns,
            "--wait=false",
        ],
        None,
    );
    // The finalizer is this test's: without its reconcile loop, remove it by hand.
    let _ = tool(
        &env,
        keys::KUBECTL,
        &[
            "patch",
            "riskpipeline",
            "payments",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    let _ = tool(
        &env,
        keys::KUBECTL,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
    let _ = api
        .get_opt("payments")
        .await
        .map(|o| o.map(|r| r.name_any()));
}

/// The worker image in the StatefulSet, once it exists.
async fn sts_api_image(sts_api: &Api<StatefulSet>) -> String {
    wait_for("the StatefulSet", DEADLINE, POLL, || async {
        let Some(s) = sts_api.get_opt("payments").await? else {
            return Ok(None);
        };
        Ok(s.spec
            .template
            .spec
            .and_then(|p| p.containers.first().and_then(|c| c.image.clone())))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}
