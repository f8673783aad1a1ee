//! The worker's command line as the operator starts it in a Pod: the flag names
//! (the worker's `clap` definitions use these constants) and [`WorkerArgs`], which
//! renders the argument vector.
//!
//! Flag names are long names without the leading `--`, as `clap`'s `long = …`
//! takes them.

/// The subcommand that runs a pipeline.
pub const RUN: &str = "run";
/// The RiskPipeline manifest (YAML); also `-f` ([`FILE_SHORT`]).
pub const FILE: &str = "file";
/// Short form of [`FILE`].
pub const FILE_SHORT: char = 'f';
/// Pod name; the worker's ordinal is its `-N` suffix.
pub const POD_NAME: &str = "pod-name";
/// Worker ordinal when there is no pod name.
pub const ORDINAL: &str = "ordinal";
/// Number of workers sharing the input partitions.
pub const REPLICAS: &str = "replicas";
/// Folder of the local RocksDB state.
pub const STATE_DIR: &str = "state-dir";
/// Address of the HTTP endpoint (`ip:port`).
pub const HTTP_ADDR: &str = "http-addr";
/// Savepoint or checkpoint to restore partitions without local state from.
pub const RESTORE_FROM: &str = "restore-from";
/// Folder of the mounted Secrets (default [`crate::mounts::SECRETS_DIR`]).
pub const SECRETS_DIR: &str = "secrets-dir";

/// The arguments of `riskpipe-worker run` in a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerArgs {
    /// The manifest file ([`crate::mounts::config_path`] in a Pod).
    pub manifest: String,
    /// The Pod's name (in a Pod spec: `$(POD_NAME)`, expanded by the kubelet).
    pub pod_name: String,
    /// Number of workers.
    pub replicas: u32,
    /// Folder of the local state.
    pub state_dir: String,
    /// Address of the HTTP endpoint (in a Pod spec: `$(POD_IP):8080`).
    pub http_addr: String,
    /// Where to restore partitions without local state from.
    pub restore_from: Option<String>,
    /// The Secrets folder, when not the default (or the environment's).
    pub secrets_dir: Option<String>,
}

fn long(flag: &str) -> String {
    format!("--{flag}")
}

impl WorkerArgs {
    /// The argument vector, subcommand first (without the program name).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            RUN.to_owned(),
            format!("-{FILE_SHORT}"),
            self.manifest.clone(),
            long(POD_NAME),
            self.pod_name.clone(),
            long(REPLICAS),
            self.replicas.to_string(),
            long(STATE_DIR),
            self.state_dir.clone(),
            long(HTTP_ADDR),
            self.http_addr.clone(),
        ];
        if let Some(path) = &self.restore_from {
            args.push(long(RESTORE_FROM));
            args.push(path.clone());
        }
        if let Some(dir) = &self.secrets_dir {
            args.push(long(SECRETS_DIR));
            args.push(dir.clone());
        }
        args
    }
}

/// The value given to `flag` (a long name) in `args`, if any: to read rendered
/// arguments back (e.g. `--state-dir` of a Pod template).
pub fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let flag = long(flag);
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> WorkerArgs {
        WorkerArgs {
            manifest: "/etc/riskpipe/pipeline.yaml".into(),
            pod_name: "$(POD_NAME)".into(),
            replicas: 3,
            state_dir: "/var/lib/riskpipe/state".into(),
            http_addr: "$(POD_IP):8080".into(),
            restore_from: None,
            secrets_dir: None,
        }
    }

    #[test]
    fn renders_the_command_line() {
        assert_eq!(
            args().to_args().join(" "),
            "run -f /etc/riskpipe/pipeline.yaml --pod-name $(POD_NAME) --replicas 3 \
             --state-dir /var/lib/riskpipe/state --http-addr $(POD_IP):8080"
        );
        let more = WorkerArgs {
            restore_from: Some("s3://b/sp".into()),
            secrets_dir: Some("/s".into()),
            ..args()
        }
        .to_args();
        assert!(more.ends_with(&[
            "--restore-from".into(),
            "s3://b/sp".into(),
            "--secrets-dir".into(),
            "/s".into()
        ]));
        assert_eq!(value_of(&more, RESTORE_FROM), Some("s3://b/sp"));
        assert_eq!(value_of(&more, ORDINAL), None);
    }
}
