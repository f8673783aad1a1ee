//! The Secrets contract, operator side: every Secret the spec references is mounted
//! read-only at `/etc/riskpipe/secrets/<secret-name>/` (one file per key, each
//! Secret once), and `RISKPIPE_SECRETS_DIR` tells the worker where to look.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EnvVar, SecretVolumeSource, Volume, VolumeMount};
use riskpipe_contract::mounts;
use riskpipe_crds::{RiskPipelineSpec, Storage};

/// Folder the workers read Secrets from, and the environment variable naming it
/// (the worker contract's).
pub use riskpipe_contract::mounts::{SECRETS_DIR, SECRETS_DIR_ENV};
/// Owner and group read only: the worker runs as the Pod's `fsGroup`.
const SECRET_FILE_MODE: i32 = 0o440;

/// Names of the Secrets `spec` references (Kafka security, S3 credentials of
/// checkpoints and savepoints, database credentials, encryption and HMAC keys),
/// each once, sorted.
pub fn referenced(spec: &RiskPipelineSpec) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(kafka) = spec.source.kafka.as_ref() {
        names.extend(kafka.security_secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for storage in [&spec.checkpoints.storage, &spec.savepoints.storage] {
        if let Some(Storage::S3(s3)) = storage.kind() {
            names.extend(s3.credentials_secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    if let Some(db) = spec.dimensions.database.as_ref() {
        names.extend(db.credentials_secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for key in [&spec.secrets.encryption_key_ref, &spec.secrets.hmac_key_ref] {
        names.extend(key.as_ref().map(|k| k.name.clone()));
    }
    names
}

/// One Secret volume and read-only mount per referenced Secret. Volume names are
/// `secret-<n>` (Secret names may be longer than a volume name may be).
pub fn volumes(spec: &RiskPipelineSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    referenced(spec)
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let volume = format!("secret-{i}");
            (
                Volume {
                    name: volume.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(name.clone()),
                        default_mode: Some(SECRET_FILE_MODE),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                VolumeMount {
                    name: volume,
                    mount_path: mounts::secret_dir(&name),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            )
        })
        .unzip()
}

/// `RISKPIPE_SECRETS_DIR=/etc/riskpipe/secrets`.
pub fn dir_env() -> EnvVar {
    EnvVar {
        name: SECRETS_DIR_ENV.into(),
        value: Some(SECRETS_DIR.into()),
        ..EnvVar::default()
    }
}
