//! A Pod's volumes as folders on this machine, and the API objects they show.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use super::plan::{PodPlace, PodRefs, field_value};

/// A volume that could not be laid out.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The volume type has no local equivalent here.
    #[error("volume {0}: unsupported volume type")]
    Unsupported(String),
    /// A ConfigMap or Secret the volume needs is missing.
    #[error("volume {volume}: {kind} {name} not found")]
    MissingObject {
        /// The volume.
        volume: String,
        /// ConfigMap or Secret.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Writing the volume's folder failed.
    #[error("volume {volume}: cannot write {path}")]
    Io {
        /// The volume.
        volume: String,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Fetches every ConfigMap and Secret that the Pod's env, envFrom and volumes name
/// (missing ones are left out; the plan decides if that is an error), and a token of
/// its ServiceAccount if a projected volume asks for one.
pub async fn fetch_refs(client: &kube::Client, pod: &Pod) -> Result<PodRefs, kube::Error> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (config_maps, secrets, wants_token) = referenced_names(pod);
    let mut refs = PodRefs::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for name in config_maps {
        if let Some(cm) = cm_api.get_opt(&name).await? {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            refs.config_maps.insert(name, data);
        }
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in secrets {
        if let Some(secret) = secret_api.get_opt(&name).await? {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.extend(
                secret
                    .string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            refs.secrets.insert(name, data);
        }
    }
    if wants_token {
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = sa_api
            .create_token_request(&sa, &PostParams::default(), &request)
            .await?;
        refs.service_account_token = token.status.and_then(|s| s.token);
    }
    Ok(refs)
}

/// Names of ConfigMaps and Secrets the Pod refers to, and whether it wants a token.
fn referenced_names(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut token = false;
    let Some(spec) = &pod.spec else {
        return (cms, secrets, token);
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for from in c.env_from.iter().flatten() {
            cms.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for var in c.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                cms.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        cms.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            cms.extend(source.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(source.secret.as_ref().map(|s| s.name.clone()));
            token |= source.service_account_token.is_some();
        }
    }
    (cms, secrets, token)
}

/// Lays out each volume of the Pod as a folder and returns volume name → folder.
///
/// `emptyDir` and the API-backed kinds (configMap, secret, downwardAPI, projected) live
/// in `<pod dir>/volumes/<name>` and are rewritten at each start; a
/// `persistentVolumeClaim` is `<claims dir>/<namespace>/<claim>` and outlives the Pod
/// (a StatefulSet's state survives a restart, as with a real volume); a `hostPath` is
/// that path on this machine.
pub fn lay_out(
    pod: &Pod,
    place: &PodPlace,
    refs: &PodRefs,
    claims_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut dirs = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = lay_out_one(v, pod, place, refs, &claims_dir.join(&ns))?;
        dirs.insert(v.name.clone(), dir);
    }
    Ok(dirs)
}

fn lay_out_one(
    v: &Volume,
    pod: &Pod,
    place: &PodPlace,
    refs: &PodRefs,
    claims_dir: &Path,
) -> Result<PathBuf, VolumeError> {
    let own = place.pod_dir.join("volumes").join(&v.name);
    let io = |path: &Path| {
        let volume = v.name.clone();
        let path = path.to_owned();
        move |source| VolumeError::Io {
            volume,
            path,
            source,
        }
    };
    if let Some(host) = &v.host_path {
        let path = PathBuf::from(&host.path);
        let is_file_type = matches!(
            host.type_.as_deref(),
            Some("File" | "FileOrCreate" | "Socket" | "CharDevice" | "BlockDevice")
        );
        if !is_file_type {
            std::fs::create_dir_all(&path).map_err(io(&path))?;
        }
        return Ok(path);
    }
    if let Some(claim) = &v.persistent_volume_claim {
        let path = claims_dir.join(&claim.claim_name);
        std::fs::create_dir_all(&path).map_err(io(&path))?;
        return Ok(path);
    }
    let files: Vec<(String, Vec<u8>)> = if v.empty_dir.is_some() {
        Vec::new()
    } else if let Some(cm) = &v.config_map {
        let data = object_data(
            &refs.config_maps,
            "ConfigMap",
            &cm.name,
            cm.optional,
            &v.name,
        )?;
        select_items(data, cm.items.as_deref())
    } else if let Some(secret) = &v.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = object_data(&refs.secrets, "Secret", &name, secret.optional, &v.name)?;
        select_items(data, secret.items.as_deref())
    } else if let Some(down) = &v.downward_api {
        downward_files(pod, place, down.items.as_deref())
    } else if let Some(projected) = &v.projected {
        let mut files = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data = object_data(
                    &refs.config_maps,
                    "ConfigMap",
                    &cm.name,
                    cm.optional,
                    &v.name,
                )?;
                files.extend(select_items(data, cm.items.as_deref()));
            }
            if let Some(secret) = &source.secret {
                let data = object_data(
                    &refs.secrets,
                    "Secret",
                    &secret.name,
                    secret.optional,
                    &v.name,
                )?;
                files.extend(select_items(data, secret.items.as_deref()));
            }
            if let Some(down) = &source.downward_api {
                files.extend(downward_files(pod, place, down.items.as_deref()));
            }
            if let Some(token) = &source.service_account_token {
                let value = refs.service_account_token.clone().unwrap_or_default();
                files.push((token.path.clone(), value.into_bytes()));
            }
        }
        files
    } else {
        return Err(VolumeError::Unsupported(v.name.clone()));
    };
    if own.exists() && v.empty_dir.is_none() {
        std::fs::remove_dir_all(&own).map_err(io(&own))?;
    }
    std::fs::create_dir_all(&own).map_err(io(&own))?;
    for (rel, bytes) in files {
        let path = own.join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    Ok(own)
}

fn object_data<'a>(
    objects: &'a BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    kind: &'static str,
    name: &str,
    optional: Option<bool>,
    volume: &str,
) -> Result<Option<&'a BTreeMap<String, Vec<u8>>>, VolumeError> {
    match objects.get(name) {
        Some(data) => Ok(Some(data)),
        None if optional == Some(true) => Ok(None),
        None => Err(VolumeError::MissingObject {
            volume: volume.to_owned(),
            kind,
            name: name.to_owned(),
        }),
    }
}

/// All keys as files, or only the listed `items` at their paths.
fn select_items(
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
) -> Vec<(String, Vec<u8>)> {
    let Some(data) = data else { return Vec::new() };
    match items {
        None => data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(items) => items
            .iter()
            .filter_map(|item| data.get(&item.key).map(|v| (item.path.clone(), v.clone())))
            .collect(),
    }
}

fn downward_files(
    pod: &Pod,
    place: &PodPlace,
    items: Option<&[DownwardAPIVolumeFile]>,
) -> Vec<(String, Vec<u8>)> {
    items
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let field = item.field_ref.as_ref()?;
            let value = match field.field_path.as_str() {
                "metadata.labels" => map_file(&pod.metadata.labels),
                "metadata.annotations" => map_file(&pod.metadata.annotations),
                _ => field_value(pod, place, field)?,
            };
            Some((item.path.clone(), value.into_bytes()))
        })
        .collect()
}

/// `key="value"` lines, as the kubelet writes labels and annotations.
fn map_file(map: &Option<BTreeMap<String, String>>) -> String {
    map.iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec,
    };
    use kube::api::ObjectMeta;
    use std::net::Ipv4Addr;

    #[test]
    fn lays_out_empty_dir_config_map_and_claims() {
        let root = tempfile::tempdir().unwrap();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "scratch".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                    Volume {
                        name: "conf".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "cfg".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "state".into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: "state-p".into(),
                            read_only: None,
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let place = PodPlace {
            pod_ip: Ipv4Addr::new(127, 0, 1, 2),
            host_ip: Ipv4Addr::new(127, 0, 1, 1),
            node_name: "n".into(),
            pod_dir: root.path().join("pod"),
        };
        let mut refs = PodRefs::default();
        refs.config_maps.insert(
            "cfg".into(),
            [("a.yaml".to_owned(), b"x: 1".to_vec())].into(),
        );
        let dirs = lay_out(&pod, &place, &refs, &root.path().join("claims")).unwrap();
        assert!(dirs["scratch"].is_dir());
        assert_eq!(std::fs::read(dirs["conf"].join("a.yaml")).unwrap(), b"x: 1");
        assert_eq!(dirs["state"], root.path().join("claims/ns/state-p"));

        let missing = lay_out(
            &pod,
            &place,
            &PodRefs::default(),
            &root.path().join("claims"),
        );
        assert!(matches!(missing, Err(VolumeError::MissingObject { .. })));
    }
}
