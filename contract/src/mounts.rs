//! Where a worker Pod finds what the operator mounts: the rendered manifest and
//! the Secrets, and the environment variables that point at them.

/// Folder the ConfigMap with the rendered manifest is mounted at.
pub const CONFIG_DIR: &str = "/etc/riskpipe";
/// Key of the rendered manifest in that ConfigMap (a file of [`CONFIG_DIR`]).
pub const CONFIG_KEY: &str = "pipeline.yaml";

/// Folder of the mounted Secrets: one sub-folder per Secret, one file per key.
pub const SECRETS_DIR: &str = "/etc/riskpipe/secrets";
/// Environment variable that names the Secrets folder to the worker.
pub const SECRETS_DIR_ENV: &str = "RISKPIPE_SECRETS_DIR";

/// Environment variable with the Pod's name (the worker's ordinal is its `-N`
/// suffix), set from the downward API.
pub const POD_NAME_ENV: &str = "POD_NAME";
/// Environment variable with the Pod's IP, set from the downward API.
pub const POD_IP_ENV: &str = "POD_IP";

/// The manifest file the worker reads (`/etc/riskpipe/pipeline.yaml`).
pub fn config_path() -> String {
    format!("{CONFIG_DIR}/{CONFIG_KEY}")
}

/// The folder the Secret `name` is mounted at (`/etc/riskpipe/secrets/<name>`).
pub fn secret_dir(name: &str) -> String {
    format!("{SECRETS_DIR}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(config_path(), "/etc/riskpipe/pipeline.yaml");
        assert_eq!(secret_dir("db"), "/etc/riskpipe/secrets/db");
        assert!(SECRETS_DIR.starts_with(CONFIG_DIR));
    }
}
