//! Checkpoints and savepoints in S3-compatible object storage: the worker against
//! the test environment's Kafka and its S3 server (s3s-fs, `e2e/env/parts/s3.sh`),
//! with the credentials in a Secret folder under `RISKPIPE_SECRETS_DIR`.
//!
//! - checkpoints land in the bucket with retention; kill -9, wipe the local state,
//!   restart: the state comes back from the bucket and every transaction is decided
//!   exactly once with the features of an uninterrupted run;
//! - a savepoint taken over HTTP by two workers into one `s3://` location restores
//!   three workers (`--restore-from s3://…`); `DELETE /savepoints/{id}` removes one.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use riskpipe_crds::{S3Storage, SecretRef};
use riskpipe_e2e::env::{TestEnv, keys};
use riskpipe_worker::snapshots::layout::{
    CheckpointEntry, checkpoints_from_keys, partition_marker,
};
use riskpipe_worker::snapshots::store::SnapshotStore;
use serde_json::Value;

const SECRET: &str = "s3-creds";

/// The S3 server of the test environment, a unique prefix in its bucket, and a
/// secrets folder holding its credentials.
struct Bucket {
    s3: S3Storage,
    secrets: tempfile::TempDir,
    store: SnapshotStore,
}

impl Bucket {
    fn new(prefix: &str) -> Self {
        let env = TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
        let get = |k: &str| env.get(k).unwrap_or_else(|e| panic!("{e}")).to_owned();
        let secrets = tempfile::tempdir().unwrap();
        let folder = secrets.path().join(SECRET);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(
            folder.join("accessKeyId"),
            get(keys::S3_ACCESS_KEY_ID) + "\n",
        )
        .unwrap();
        std::fs::write(
            folder.join("secretAccessKey"),
            get(keys::S3_SECRET_ACCESS_KEY) + "\n",
        )
        .unwrap();
        let s3 = S3Storage {
            bucket: get(keys::S3_BUCKET),
            prefix: format!("{prefix}/"),
            endpoint: Some(get(keys::S3_ENDPOINT)),
            region: Some(get(keys::S3_REGION)),
            credentials_secret_ref: Some(SecretRef {
                name: SECRET.to_owned(),
            }),
        };
        let store = SnapshotStore::new(&[(&s3, "test")], secrets.path()).expect("S3 client");
        Bucket { s3, secrets, store }
    }

    /// `s3://bucket/prefix/rest`.
    fn url(&self, rest: &str) -> String {
        format!("s3://{}/{}{rest}", self.s3.bucket, self.s3.prefix)
    }

    /// The `checkpoints:` and `savepoints:` of the manifest, both in this bucket.
    fn snapshots_yaml(&self) -> String {
        let s3 = format!(
            "      s3:\n        bucket: {}\n        prefix: {}\n        endpoint: {}\n        region: {}\n        credentialsSecretRef:\n          name: {SECRET}\n",
            self.s3.bucket,
            self.s3.prefix,
            self.s3.endpoint.as_deref().unwrap_or_default(),
            self.s3.region.as_deref().unwrap_or_default(),
        );
        format!(
            "  checkpoints:\n    interval: 1s\n    minPause: 1s\n    retain: 2\n    storage:\n{s3}  savepoints:\n    storage:\n{s3}"
        )
    }

    fn env(&self) -> [(&'static str, &str); 1] {
        [(
            "RISKPIPE_SECRETS_DIR",
            self.secrets.path().to_str().unwrap(),
        )]
    }

    /// Keys under `s3://bucket/prefix/rest`, relative to it.
    fn list(&self, rest: &str) -> Vec<String> {
        let place = self.store.place(&self.url(rest)).unwrap();
        self.store.list(&place).expect("listing the bucket")
    }

    /// The checkpoints of `pipeline` (in its own folder under `checkpoints/`).
    fn checkpoints(&self, pipeline: &str) -> Vec<CheckpointEntry> {
        let keys = self.list(&format!("checkpoints/{pipeline}"));
        checkpoints_from_keys(keys.iter().map(String::as_str))
    }
}

/// A passing test leaves nothing in the bucket (a failing one keeps its objects to
/// look at).
impl Drop for Bucket {
    fn drop(&mut self) {
        if !std::thread::panicking()
            && let Ok(place) = self.store.place(&self.url(""))
        {
            let _ = self.store.delete(&place);
        }
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_savepoint(addr: &str, id: &str) -> Value {
    wait_for("savepoint completed", Duration::from_secs(60), || {
        let s: Value = http_json("GET", addr, &format!("/savepoints/{id}"), None);
        assert_ne!(s["state"], "failed", "{s}");
        (s["state"] == "completed").then_some(s)
    })
}

#[test]
fn checkpoints_in_s3_with_retention_restore_after_kill_and_wipe() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let bucket = Bucket::new(&unique("chk"));
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    produce_more(&bootstrap, &input, 0);
    let dir = tempfile::tempdir().unwrap();
    let name = unique("s3chk");
    let m = manifest_with(
        dir.path(),
        &name,
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &bucket.snapshots_yaml(),
    );
    let state = dir.path().join("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let env = bucket.env();
    let worker = start_worker_env(&m, &state, 0, 1, Some(&addr), None, &env);
    let _ = read_committed(&bootstrap, &decisions, 3_000, Duration::from_secs(120));

    // Checkpoints every second, two kept: watch at least four complete, then the
    // bucket holds the two newest (each with all eight partitions), not the first.
    let mut ids = Vec::new();
    wait_for("four checkpoints", Duration::from_secs(90), || {
        let status: Value = http_json("GET", &addr, "/status", None);
        let last = &status["lastCheckpoint"];
        if let Some(id) = last["id"].as_str()
            && ids.last().map(String::as_str) != Some(id)
        {
            assert!(
                last["path"]
                    .as_str()
                    .unwrap()
                    .starts_with(&bucket.url(&format!("checkpoints/{name}/"))),
                "{last}"
            );
            ids.push(id.to_owned());
        }
        (ids.len() >= 4).then_some(())
    });
    let kept = wait_for("retention down to 2", Duration::from_secs(30), || {
        let complete: Vec<CheckpointEntry> = bucket
            .checkpoints(&name)
            .into_iter()
            .filter(|e| e.complete)
            .collect();
        (complete.len() == 2).then_some(complete)
    });
    for e in &kept {
        assert_eq!(e.partitions.len(), PARTITIONS as usize, "{e:?}");
    }
    assert!(
        !bucket.checkpoints(&name).iter().any(|e| e.name == ids[0]),
        "the first checkpoint {} outlived retention",
        ids[0]
    );

    worker.kill9();
    std::fs::remove_dir_all(&state).unwrap();
    produce_more(&bootstrap, &input, 1);
    let worker = start_worker_env(&m, &state, 0, 1, None, None, &env);
    let out = read_committed(&bootstrap, &decisions, 6_000, Duration::from_secs(180));
    worker.terminate();
    // Windows continue across the wipe only if the state came back from S3.
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
}

#[test]
fn savepoint_in_s3_restores_three_workers_from_two_and_delete_removes_one() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let bucket = Bucket::new(&unique("sp"));
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    produce_more(&bootstrap, &input, 0);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_with(
        dir.path(),
        &unique("s3sp"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &bucket.snapshots_yaml(),
    );
    let env = bucket.env();
    let start = |replicas: u32, round: &str, restore: Option<&Path>| {
        (0..replicas)
            .map(|o| {
                let addr = format!("127.0.0.1:{}", free_port());
                let state = dir.path().join(format!("state-{round}-w{o}"));
                let w = start_worker_env(&m, &state, o, replicas, Some(&addr), restore, &env);
                (w, addr)
            })
            .collect::<Vec<_>>()
    };

    // Two workers write one savepoint, as the operator asks them to.
    let two = start(2, "two", None);
    let _ = read_committed(&bootstrap, &decisions, 3_000, Duration::from_secs(120));
    let savepoint = bucket.url("payments/savepoint-1");
    for (_, addr) in &two {
        let body = format!("{{\"path\":\"{savepoint}\"}}");
        let created: Value = http_json("POST", addr, "/savepoints", Some(&body));
        assert_eq!(created["path"], savepoint.as_str(), "{created}");
        let done = wait_savepoint(addr, created["id"].as_str().unwrap());
        assert_eq!(done["path"], savepoint.as_str());
    }
    let objects = bucket.list("payments/savepoint-1");
    for p in 0..PARTITIONS {
        assert!(
            objects.contains(&partition_marker(p)),
            "partition {p} missing in {objects:?}"
        );
    }
    for (w, _) in two {
        w.kill9();
    }

    // Three workers with fresh local folders restore from it.
    produce_more(&bootstrap, &input, 1);
    let mut three = start(3, "three", Some(Path::new(&savepoint)));
    let out = read_committed(&bootstrap, &decisions, 6_000, Duration::from_secs(180));
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));

    // A savepoint to the default location (the savepoint storage's prefix); the
    // worker is killed and restarted (it remembers the savepoint in its state
    // folder), then DELETE removes it from the bucket.
    let (w0, addr) = three.remove(0);
    let created: Value = http_json("POST", &addr, "/savepoints", Some("{}"));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["path"], bucket.url(&id).as_str(), "{created}");
    wait_savepoint(&addr, &id);
    assert!(!bucket.list(&id).is_empty());
    w0.kill9();
    let addr = format!("127.0.0.1:{}", free_port());
    let state = dir.path().join("state-three-w0");
    let restore = Some(Path::new(&savepoint));
    let w0 = start_worker_env(&m, &state, 0, 3, Some(&addr), restore, &env);
    let path = format!("/savepoints/{id}");
    wait_for(
        "the savepoint known after the restart",
        Duration::from_secs(60),
        || {
            let (code, body) = http_call("GET", &addr, &path, None);
            (code == 200).then(|| assert!(body.contains("completed"), "{body}"))
        },
    );
    let (code, body) = http_call("DELETE", &addr, &path, None);
    assert_eq!(code, 204, "{body}");
    assert!(bucket.list(&id).is_empty(), "{:?}", bucket.list(&id));
    assert_eq!(http_call("GET", &addr, &path, None).0, 404);
    assert_eq!(http_call("DELETE", &addr, &path, None).0, 404);
    assert_eq!(
        http_call("DELETE", &addr, "/savepoints/sp-unknown", None).0,
        404
    );
    three.insert(0, (w0, addr));
    // The restored-from savepoint is untouched.
    assert!(!bucket.list("payments/savepoint-1").is_empty());
    for (w, _) in three {
        w.terminate();
    }
    // Still exactly once after the kill and restart.
    let out = read_committed(&bootstrap, &decisions, 6_000, Duration::from_secs(60));
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
}

#[test]
fn restore_from_an_empty_s3_location_is_a_clear_error() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let bucket = Bucket::new(&unique("none"));
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest_with(
        dir.path(),
        &unique("s3none"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &bucket.snapshots_yaml(),
    );
    let missing = bucket.url("payments/savepoint-never-taken");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_riskpipe-worker"))
        .args(["run", "-f"])
        .arg(&m)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args([
            "--ordinal",
            "0",
            "--replicas",
            "1",
            "--restore-from",
            &missing,
        ])
        .envs(bucket.env())
        .env("RISKPIPE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start riskpipe-worker");
    let status = wait_for("the worker to exit", Duration::from_secs(90), || {
        child.try_wait().expect("wait")
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("no savepoint or checkpoint there"),
        "{stderr}"
    );
}
