//! Helpers shared by the operator's end-to-end tests: the environment, `kubectl`
//! and `helm`, a namespace with the chart installed, the operator binary as a local
//! process, Kafka topics and waits on the pipeline's status.
#![allow(dead_code)] // each test file uses a different subset

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use kube::{Api, Client};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use riskpipe_crds::RiskPipeline;
use riskpipe_e2e::{
    env::{TestEnv, keys},
    wait::wait_for,
};

/// Longest wait for one condition.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// Time between two looks at a condition.
pub const POLL: Duration = Duration::from_millis(300);

/// The running test environment (fails naming `e2e/env/up` when it is not up).
pub fn env() -> TestEnv {
    TestEnv::load().unwrap_or_else(|e| panic!("{e}"))
}

/// `prefix` with a number that differs between runs.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}", nanos % 1_000_000_000)
}

/// Runs `kubectl` or `helm` (by env key) with the environment's kubeconfig.
pub fn tool(
    env: &TestEnv,
    key: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    let mut cmd = Command::new(env.get(key).unwrap());
    let home = std::env::temp_dir().join("riskpipe-operator-e2e-helm");
    cmd.args(args)
        .env("KUBECONFIG", env.get(keys::KUBECONFIG).unwrap())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The checkout.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The one step before `helm install`/`helm upgrade` (README, "Install"): Helm
/// never upgrades a chart's `crds/`, so the CRD of this checkout is applied with
/// server-side apply (idempotent; the cluster's CRD is shared by every test).
pub fn apply_crd(env: &TestEnv) {
    tool(
        env,
        keys::KUBECTL,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "riskpipe-crd",
            "-f",
            "charts/riskpipe/crds/riskpipe.io_riskpipelines.yaml",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("kubectl apply of the CRD: {e}"));
    tool(
        env,
        keys::KUBECTL,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/riskpipelines.riskpipe.io",
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("CRD not established: {e}"));
}

/// A namespace with the chart installed in it (CRD, namespaced RBAC, no operator Pod).
pub fn install(env: &TestEnv, prefix: &str) -> String {
    let ns = unique(prefix);
    apply_crd(env);
    tool(
        env,
        keys::HELM,
        &[
            "install",
            "riskpipe",
            "charts/riskpipe",
            "--namespace",
            &ns,
            "--create-namespace",
            "--set",
            "replicaCount=0",
            "--set",
            &format!("watchNamespaces={{{ns}}}"),
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("helm install: {e}"));
    ns
}

/// A copy of the admin kubeconfig that impersonates the chart's operator
/// ServiceAccount in `ns`, so the operator runs with exactly the chart's RBAC.
pub fn impersonating_kubeconfig(env: &TestEnv, ns: &str) -> PathBuf {
    let text = std::fs::read_to_string(env.get(keys::KUBECONFIG).unwrap()).unwrap();
    let mut config: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    for user in config["users"].as_array_mut().unwrap() {
        user["user"]["as"] = format!("system:serviceaccount:{ns}:riskpipe").into();
        user["user"]["as-groups"] = serde_json::json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated"
        ]);
    }
    let path = std::env::temp_dir().join(format!("{ns}-operator.kubeconfig"));
    std::fs::write(&path, yaml_serde::to_string(&config).unwrap()).unwrap();
    path
}

/// The operator binary of this build, run locally; killed when dropped.
pub struct Operator {
    /// The process.
    pub child: Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Operator {
    /// Runs with the admin's rights.
    pub fn start(env: &TestEnv, ns: &str, identity: &str) -> Self {
        Self::start_with(env.get(keys::KUBECONFIG).unwrap().into(), ns, identity)
    }

    /// Runs with the chart's ServiceAccount rights instead of the admin's.
    pub fn start_as_chart(env: &TestEnv, ns: &str, identity: &str) -> Self {
        Self::start_with(impersonating_kubeconfig(env, ns), ns, identity)
    }

    pub fn start_with(kubeconfig: PathBuf, ns: &str, identity: &str) -> Self {
        let log = std::env::temp_dir().join(format!("{ns}-{identity}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_riskpipe-operator"))
            .args([
                "--namespaces",
                ns,
                "--metrics-addr",
                "127.0.0.1:0",
                "--lease-name",
                "riskpipe",
            ])
            .args(["--lease-duration-seconds", "6"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", ns)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info,riskpipe_operator=debug")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// SIGTERM (a graceful stop).
    pub fn terminate(&mut self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a Kafka topic with `partitions` partitions.
pub async fn create_topic(env: &TestEnv, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env.get(keys::KAFKA_BOOTSTRAP).unwrap())
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    results.into_iter().for_each(|r| {
        r.unwrap();
    });
}

/// A small stateless-mode pipeline on `topic`; `extra` is appended to the spec.
pub fn manifest(env: &TestEnv, name: &str, topic: &str, parallelism: i32, extra: &str) -> String {
    format!(
        "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: {name}\nspec:\n  parallelism: {parallelism}\n  \
         image: riskpipe-worker:e2e\n  job:\n    upgradeMode: stateless\n  source:\n    kafka:\n      bootstrapServers: {}\n      topic: {topic}\n{extra}",
        env.get(keys::KAFKA_BOOTSTRAP).unwrap()
    )
}

/// (status, reason, message) of the condition `type_`.
pub fn condition(rp: &RiskPipeline, type_: &str) -> Option<(String, String, String)> {
    let c = rp
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `ok` holds for the pipeline; panics with the operator's log.
pub async fn wait_pipeline(
    api: &Api<RiskPipeline>,
    name: &str,
    what: &str,
    op: &Operator,
    ok: impl Fn(&RiskPipeline) -> bool,
) -> RiskPipeline {
    wait_for(what, DEADLINE, POLL, || async {
        let rp = api.get(name).await?;
        Ok(ok(&rp).then_some(rp))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\noperator log:\n{}", op.log_tail()))
}

/// A client of the environment's apiserver.
pub async fn client(env: &TestEnv) -> Client {
    env.kube_client().await.unwrap()
}

/// Builds the worker binary the pod runner runs, once per test process.
pub fn worker_binary(env: &TestEnv) {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let bin_dir = std::path::PathBuf::from(
            env.get("RISKPIPE_PODRUNNER_BIN_DIR")
                .map_err(|e| e.to_string())?,
        );
        let binary = bin_dir.join("riskpipe-worker");
        if std::env::var_os("RISKPIPE_E2E_SKIP_WORKER_BUILD").is_some() {
            return binary
                .exists()
                .then_some(())
                .ok_or_else(|| format!("{} does not exist", binary.display()));
        }
        let target_dir = bin_dir
            .parent()
            .ok_or("the pod runner's bin dir has no parent")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("building riskpipe-worker for the pod runner");
        let out = std::process::Command::new(cargo)
            .args(["build", "-p", "riskpipe-worker", "--bin", "riskpipe-worker"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(root())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(40).collect();
            return Err(format!(
                "building riskpipe-worker failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!(
            "the pod runner runs $CARGO_TARGET_DIR/debug/riskpipe-worker, which these tests need: {e}"
        );
    }
}
