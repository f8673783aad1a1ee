//! The env file that `e2e/env/up` writes: where each part of the test environment is.
//!
//! The file is shell (`export KEY='value'` lines) so scripts can source it too. It lives
//! at `$RISKPIPE_CACHE/env/env.sh` (default cache `$HOME/.cache/riskpipe`), or where
//! `RISKPIPE_E2E_ENV` points.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Keys that `e2e/env/up` writes and the tests read.
pub mod keys {
    /// Path of the admin kubeconfig (client cert in `system:masters`).
    pub const KUBECONFIG: &str = "KUBECONFIG";
    /// `host:port` of the Kafka broker.
    pub const KAFKA_BOOTSTRAP: &str = "KAFKA_BOOTSTRAP";
    /// `host:port` of the second Kafka broker, whose only listener is SASL_SSL.
    pub const KAFKA_SECURE_BOOTSTRAP: &str = "KAFKA_SECURE_BOOTSTRAP";
    /// PEM file of the CA that signed the SASL_SSL broker's certificate.
    pub const KAFKA_SECURE_CA: &str = "KAFKA_SECURE_CA";
    /// SASL mechanism of the SASL_SSL broker (`SCRAM-SHA-512`).
    pub const KAFKA_SECURE_MECHANISM: &str = "KAFKA_SECURE_MECHANISM";
    /// A SASL user of the SASL_SSL broker.
    pub const KAFKA_SECURE_USERNAME: &str = "KAFKA_SECURE_USERNAME";
    /// That user's password (random per environment start).
    pub const KAFKA_SECURE_PASSWORD: &str = "KAFKA_SECURE_PASSWORD";
    /// `http://host:port` of the S3-compatible object store (s3s-fs, path-style).
    pub const S3_ENDPOINT: &str = "S3_ENDPOINT";
    /// A bucket of that store that tests may write into (under unique prefixes).
    pub const S3_BUCKET: &str = "S3_BUCKET";
    /// The region the store's clients sign for.
    pub const S3_REGION: &str = "S3_REGION";
    /// Access key id of the store's test credentials.
    pub const S3_ACCESS_KEY_ID: &str = "S3_ACCESS_KEY_ID";
    /// Secret access key of the store's test credentials.
    pub const S3_SECRET_ACCESS_KEY: &str = "S3_SECRET_ACCESS_KEY";
    /// `mysql://user:password@host:port/db` of the MariaDB test database.
    pub const MARIADB_URL: &str = "MARIADB_URL";
    /// `postgres://user:password@host:port/db` of the PostgreSQL test database.
    pub const POSTGRES_URL: &str = "POSTGRES_URL";
    /// Path of the kubectl binary that matches the apiserver.
    pub const KUBECTL: &str = "RISKPIPE_KUBECTL";
    /// Path of the helm binary.
    pub const HELM: &str = "RISKPIPE_HELM";
    /// Name of the Node that the pod runner registered.
    pub const NODE_NAME: &str = "RISKPIPE_NODE_NAME";
    /// First three octets of Pod addresses (`127.0.1` unless moved).
    pub const POD_IP_PREFIX: &str = "RISKPIPE_POD_IP_PREFIX";
    /// Folder where the pod runner keeps each Pod's logs and volumes.
    pub const PODS_DIR: &str = "RISKPIPE_PODS_DIR";
    /// Folder of the environment's logs.
    pub const LOG_DIR: &str = "RISKPIPE_ENV_LOG_DIR";
    /// Folder of `<part>.pid` files of the running parts.
    pub const PID_DIR: &str = "RISKPIPE_ENV_PID_DIR";
}

/// Why the test environment could not be found or used.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The env file is missing: the environment was never started here.
    #[error(
        "the e2e environment is not up: {path} is missing; run `e2e/env/up` first \
         (it starts Kafka, the Kubernetes control plane, MariaDB, PostgreSQL and the pod runner)"
    )]
    Missing {
        /// Where the file was looked for.
        path: PathBuf,
    },
    /// The env file could not be read.
    #[error("cannot read the e2e env file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key the test needs is not in the file.
    #[error("{key} is not set in {path}; re-run `e2e/env/up` (the file is from an older version?)")]
    MissingKey {
        /// The key.
        key: String,
        /// The env file.
        path: PathBuf,
    },
    /// A part of the environment has stopped since `e2e/env/up` wrote the file.
    #[error(
        "the e2e environment is not fully up: {part} (pid {pid}) is not running; \
         see {log_dir}/{part}.log and run `e2e/env/up` again"
    )]
    NotRunning {
        /// The part, e.g. `kafka`.
        part: String,
        /// Its recorded process id.
        pid: String,
        /// Folder of the parts' logs.
        log_dir: String,
    },
    /// The kubeconfig could not be loaded.
    #[error("cannot load the kubeconfig {path} written by `e2e/env/up`")]
    Kubeconfig {
        /// The kubeconfig path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The parts of the running test environment, as `e2e/env/up` wrote them down.
#[derive(Debug, Clone)]
pub struct TestEnv {
    path: PathBuf,
    vars: BTreeMap<String, String>,
}

impl TestEnv {
    /// Where the env file is expected: `RISKPIPE_E2E_ENV`, else
    /// `$RISKPIPE_CACHE/env/env.sh`, else `$HOME/.cache/riskpipe/env/env.sh`.
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os("RISKPIPE_E2E_ENV") {
            return PathBuf::from(path);
        }
        let cache = std::env::var_os("RISKPIPE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                home.join(".cache").join("riskpipe")
            });
        cache.join("env").join("env.sh")
    }

    /// Loads the env file from [`TestEnv::default_path`]; fails naming `e2e/env/up`
    /// when it is missing, so a test never passes without the environment.
    pub fn load() -> Result<Self, EnvError> {
        Self::load_from(&Self::default_path())
    }

    /// Loads an env file from `path`.
    pub fn load_from(path: &Path) -> Result<Self, EnvError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(EnvError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(EnvError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let env = Self {
            path: path.to_owned(),
            vars: parse_env_file(&text),
        };
        env.check_running()?;
        Ok(env)
    }

    /// Fails if a part whose pid `e2e/env/up` recorded is no longer running (the file
    /// outlived the environment, e.g. after a reboot).
    fn check_running(&self) -> Result<(), EnvError> {
        let Some(dir) = self.vars.get(keys::PID_DIR) else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(part) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("pid") {
                continue;
            }
            let pid = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_owned();
            let running = pid
                .parse::<i32>()
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
            if !running {
                return Err(EnvError::NotRunning {
                    part: part.to_owned(),
                    pid,
                    log_dir: self.vars.get(keys::LOG_DIR).cloned().unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// The env file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key`, or an error naming the file.
    pub fn get(&self, key: &str) -> Result<&str, EnvError> {
        self.vars
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| EnvError::MissingKey {
                key: key.to_owned(),
                path: self.path.clone(),
            })
    }

    /// The admin kubeconfig path.
    pub fn kubeconfig(&self) -> Result<PathBuf, EnvError> {
        self.get(keys::KUBECONFIG).map(PathBuf::from)
    }

    /// A Kubernetes client from the admin kubeconfig.
    pub async fn kube_client(&self) -> Result<kube::Client, EnvError> {
        let path = self.kubeconfig()?;
        let wrap = |source: Box<dyn std::error::Error + Send + Sync>| EnvError::Kubeconfig {
            path: path.clone(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| wrap(e.into()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| wrap(e.into()))?;
        kube::Client::try_from(config).map_err(|e| wrap(e.into()))
    }
}

/// Parses `export KEY='value'` / `KEY=value` lines; comments and blank lines are skipped.
/// Values are single-quoted by `e2e/env/up` and never contain a quote themselves.
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_exports_and_skips_comments() {
        let vars = parse_env_file(
            "# written by e2e/env/up\nexport KUBECONFIG='/a b/kubeconfig'\nKAFKA_BOOTSTRAP=127.0.0.1:19092\n\n",
        );
        assert_eq!(vars["KUBECONFIG"], "/a b/kubeconfig");
        assert_eq!(vars["KAFKA_BOOTSTRAP"], "127.0.0.1:19092");
        assert_eq!(vars.len(), 2);
    }

    #[test]
    fn a_missing_file_names_the_up_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = TestEnv::load_from(&dir.path().join("env.sh")).unwrap_err();
        assert!(err.to_string().contains("e2e/env/up"), "{err}");
    }

    #[test]
    fn a_stopped_part_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        std::fs::create_dir(&pids).unwrap();
        std::fs::write(pids.join("self.pid"), std::process::id().to_string()).unwrap();
        let path = dir.path().join("env.sh");
        let text = format!(
            "export RISKPIPE_ENV_PID_DIR='{}'\nexport RISKPIPE_ENV_LOG_DIR='/logs'\n",
            pids.display()
        );
        std::fs::write(&path, text).unwrap();
        assert!(TestEnv::load_from(&path).is_ok());
        // Pid 0 is never a process of ours.
        std::fs::write(pids.join("kafka.pid"), "0").unwrap();
        let err = TestEnv::load_from(&path).unwrap_err().to_string();
        assert!(
            err.contains("kafka") && err.contains("/logs/kafka.log"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.sh");
        std::fs::write(&path, "export A='1'\n").unwrap();
        let env = TestEnv::load_from(&path).unwrap();
        let err = env.get("B").unwrap_err();
        assert!(err.to_string().contains("env.sh"), "{err}");
    }
}
