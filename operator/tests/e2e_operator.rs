//! The operator end to end on the real control plane of `e2e/env/up`: `helm install`
//! of the chart, then the operator binary of this build run as a local process (the
//! pod runner runs only binaries from its own build folder), against real Kafka.
//! Each test works in a fresh namespace. Without the environment every test fails,
//! naming `e2e/env/up`.
//!
//! With real workers (decisions, savepoint upgrades, kills, suspend/resume):
//! `e2e_workers.rs`.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::{apps::v1::StatefulSet, coordination::v1::Lease};
use kube::Api;
use riskpipe_crds::RiskPipeline;
use riskpipe_e2e::{env::keys, wait::wait_for};

#[tokio::test]
async fn applied_pipeline_gets_its_objects_status_and_rolls_on_change() {
    let env = env();
    let ns = install(&env, "op-apply");
    let topic = unique("tx");
    create_topic(&env, &topic, 4).await;
    // With the chart's RBAC only: a missing permission fails this test.
    let op = Operator::start_as_chart(&env, &ns, "op-a");
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest(&env, "payments", &topic, 2, "")),
    )
    .unwrap();

    let c = client(&env).await;
    let api: Api<RiskPipeline> = Api::namespaced(c.clone(), &ns);
    let rp = wait_pipeline(&api, "payments", "status for generation 1", &op, |rp| {
        rp.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
    })
    .await;
    let status = rp.status.clone().unwrap();
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/component=worker,riskpipe.io/pipeline=payments")
    );
    assert_eq!(
        status.partitions,
        Some(4),
        "partition count read from Kafka"
    );
    for t in ["Ready", "Progressing", "Degraded"] {
        assert!(condition(&rp, t).is_some(), "{t} missing: {status:?}");
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(c.clone(), &ns);
    let sts = sts_api.get("payments").await.unwrap();
    assert_eq!(sts.spec.replicas, Some(2));
    assert_eq!(
        sts.metadata.owner_references.as_ref().unwrap()[0].kind,
        "RiskPipeline"
    );
    let hash_of = |s: &StatefulSet| {
        s.spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["riskpipe.io/config-hash"]
            .clone()
    };
    let before = hash_of(&sts);
    for kind in [
        "configmap/payments-config",
        "service/payments-workers",
        "pdb/payments",
        "serviceaccount/payments-worker",
    ] {
        tool(&env, keys::KUBECTL, &["get", "-n", &ns, kind], None)
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    let events = tool(
        &env,
        keys::KUBECTL,
        &[
            "get",
            "events.events.k8s.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    )
    .unwrap();
    assert!(events.contains("Created"), "events: {events}");
    let columns = tool(
        &env,
        keys::KUBECTL,
        &["get", "riskpipelines", "-n", &ns],
        None,
    )
    .unwrap();
    assert!(
        columns.contains("PARALLELISM") && columns.contains("CONDITION"),
        "{columns}"
    );

    // A threshold change rolls the workers: a new hash in the Pod template.
    let patch = r#"{"spec":{"rules":{"decision":{"reviewScore":65}}}}"#;
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
            patch,
        ],
        None,
    )
    .unwrap();
    wait_for("a new config hash", DEADLINE, POLL, || async {
        let s = sts_api.get("payments").await?;
        Ok((hash_of(&s) != before).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail()));
    // The status names the cause (written in the same reconcile, after the apply).
    wait_pipeline(
        &api,
        "payments",
        "a rollout whose cause names the rules",
        &op,
        |rp| {
            rp.status
                .as_ref()
                .and_then(|s| s.rollout.as_ref())
                .is_some_and(|r| r.cause.contains("rules"))
        },
    )
    .await;

    // The scale subresource (what HPA and KEDA use) changes the parallelism.
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
    wait_for("3 workers after kubectl scale", DEADLINE, POLL, || async {
        let s = sts_api.get("payments").await?;
        let args = s
            .spec
            .template
            .spec
            .as_ref()
            .map(|p| p.containers[0].args.clone().unwrap_or_default())
            .unwrap_or_default();
        Ok((s.spec.replicas == Some(3) && args.join(" ").contains("--replicas 3")).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail()));

    // Suspend stops every worker.
    let suspend = r#"{"spec":{"job":{"state":"suspended"}}}"#;
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
            suspend,
        ],
        None,
    )
    .unwrap();
    wait_pipeline(&api, "payments", "Suspended", &op, |rp| {
        rp.status.as_ref().and_then(|s| s.state) == Some(riskpipe_crds::PipelineState::Suspended)
    })
    .await;
    assert_eq!(
        sts_api.get("payments").await.unwrap().spec.replicas,
        Some(0)
    );

    // Deleting the pipeline passes the finalizer and takes what it owns with it.
    tool(
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
    )
    .unwrap();
    wait_for(
        "the pipeline and its StatefulSet to go",
        DEADLINE,
        POLL,
        || async {
            let gone = api.get_opt("payments").await?.is_none()
                && sts_api.get_opt("payments").await?.is_none();
            Ok(gone.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail()));
    let _ = tool(
        &env,
        keys::KUBECTL,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
}

#[tokio::test]
async fn invalid_manifests_are_refused_or_marked_with_what_to_fix() {
    let env = env();
    let ns = install(&env, "op-invalid");
    for (file, says) in [
        ("threshold-order", "reviewScore"),
        ("min-above-max", "minReplicas"),
        ("unknown-field", "paralellism"),
    ] {
        let err = tool(
            &env,
            keys::KUBECTL,
            &[
                "apply",
                "-n",
                &ns,
                "-f",
                &format!("deploy/examples/invalid/{file}.yaml"),
            ],
            None,
        )
        .expect_err(&format!("{file} must be refused by the apiserver"));
        assert!(err.contains(says), "{file}: {err}");
    }
    // What the apiserver cannot know: the topic has fewer partitions than workers.
    let topic = unique("tx");
    create_topic(&env, &topic, 1).await;
    let op = Operator::start(&env, &ns, "op-b");
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest(&env, "narrow", &topic, 3, "")),
    )
    .unwrap();
    let api: Api<RiskPipeline> = Api::namespaced(client(&env).await, &ns);
    let rp = wait_pipeline(&api, "narrow", "Ready=False InvalidSpec", &op, |rp| {
        condition(rp, "Ready").is_some_and(|c| c.1 == "InvalidSpec")
    })
    .await;
    let (_, _, message) = condition(&rp, "Ready").unwrap();
    assert!(
        message.contains("spec.parallelism") && message.contains("1 partition(s)"),
        "{message}"
    );
    let sts: Api<StatefulSet> = Api::namespaced(client(&env).await, &ns);
    assert!(
        sts.get_opt("narrow").await.unwrap().is_none(),
        "nothing is deployed from an invalid spec"
    );
    // Fixing it is enough: no restart, no retry loop needed.
    tool(
        &env,
        keys::KUBECTL,
        &[
            "patch",
            "riskpipeline",
            "narrow",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"parallelism":1}}"#,
        ],
        None,
    )
    .unwrap();
    wait_pipeline(&api, "narrow", "the fixed spec to be accepted", &op, |rp| {
        condition(rp, "Ready").is_some_and(|c| c.1 != "InvalidSpec")
            && rp.status.as_ref().and_then(|s| s.observed_generation) == rp.metadata.generation
    })
    .await;
    let _ = tool(
        &env,
        keys::KUBECTL,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
}

#[tokio::test]
async fn one_operator_leads_and_a_follower_takes_over() {
    let env = env();
    let ns = install(&env, "op-lease");
    let mut ops = [
        Operator::start(&env, &ns, "op-a"),
        Operator::start(&env, &ns, "op-b"),
    ];
    let leases: Api<Lease> = Api::namespaced(client(&env).await, &ns);
    let holder = |leases: Api<Lease>| async move {
        let l = leases.get_opt("riskpipe").await?;
        Ok(l.and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty()))
    };
    let first = wait_for("a leader", DEADLINE, POLL, || holder(leases.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", ops[0].log_tail(), ops[1].log_tail()));
    let (leader, follower) = if first == "op-a" { (0, 1) } else { (1, 0) };
    let follower_name = if follower == 0 { "op-a" } else { "op-b" };
    // Wait until the leader has said so, then check that the follower never did.
    wait_for("the leader to start reconciling", DEADLINE, POLL, || {
        let log = ops[leader].log_tail();
        async move { Ok(log.contains("\"leading\"").then_some(())) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ops[leader].log_tail()));
    assert!(
        !ops[follower].log_tail().contains("\"leading\""),
        "{}",
        ops[follower].log_tail()
    );
    ops[leader].terminate();
    let status = ops[leader].child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM is a graceful, successful stop: {status}\n{}",
        ops[leader].log_tail()
    );
    // Released on shutdown (no holder left), and the follower takes over.
    let after = holder(leases.clone()).await.unwrap();
    assert!(
        after.is_none() || after.as_deref() == Some(follower_name),
        "not released: {after:?}"
    );
    let next = wait_for(
        "the follower to lead",
        Duration::from_secs(30),
        POLL,
        || {
            let leases = leases.clone();
            async move { Ok(holder(leases).await?.filter(|h| h == follower_name)) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ops[follower].log_tail()));
    assert_eq!(next, follower_name);
    let _ = tool(
        &env,
        keys::KUBECTL,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
}
