//! From a Pod's container spec to a process: program, args, env and folders.
//!
//! Pure: everything it needs from the API (ConfigMaps, Secrets) is fetched before,
//! so these rules are unit-tested without a cluster.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, ObjectFieldSelector, Pod};

/// ConfigMap and Secret data that a Pod's env and volumes refer to, by name.
#[derive(Debug, Clone, Default)]
pub struct PodRefs {
    /// ConfigMap name → data (binaryData decoded lossily).
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secret name → data.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// A token of the Pod's ServiceAccount, for projected `serviceAccountToken` sources.
    pub service_account_token: Option<String>,
}

/// Where a Pod runs on this node.
#[derive(Debug, Clone)]
pub struct PodPlace {
    /// The Pod's own loopback address.
    pub pod_ip: Ipv4Addr,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// The node's name.
    pub node_name: String,
    /// The Pod's folder: working directory, HOME and default volume root.
    pub pod_dir: PathBuf,
}

/// What the pod runner starts for one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// The container's name.
    pub name: String,
    /// Arguments after the program (command[1..] then args, expanded and remapped).
    pub args: Vec<String>,
    /// The whole environment of the process (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory: a `workingDir` inside a volume is mapped to its folder;
    /// any other (the image's file system does not exist here) is the Pod's folder.
    pub workdir: PathBuf,
    /// Symbolic links to make before the start: (link, target). A value naming a
    /// folder that only holds mounts (e.g. `/etc/app/secrets` with one Secret
    /// mounted at `/etc/app/secrets/<name>` each) is mapped to a folder of links.
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// A container spec the runner cannot turn into a process.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// An env var refers to a ConfigMap or Secret key that does not exist.
    #[error("env {var}: {kind} {name} has no key {key}")]
    MissingKey {
        /// The env var.
        var: String,
        /// ConfigMap or Secret.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The key.
        key: String,
    },
    /// A downward-API field the runner does not know.
    #[error("env {var}: unsupported fieldRef {path}")]
    UnsupportedField {
        /// The env var.
        var: String,
        /// The field path.
        path: String,
    },
    /// A volumeMount names a volume the runner did not map.
    #[error("volumeMount {mount} names volume {volume}, which has no folder")]
    UnknownVolume {
        /// The mount path.
        mount: String,
        /// The volume name.
        volume: String,
    },
}

/// Plans `container` of `pod`: env from the spec (downward API, ConfigMap and Secret
/// references filled in), `$(VAR)` expanded in env and args as Kubernetes does, and
/// every value that starts with a volumeMount's path rewritten to the volume's folder.
pub fn plan_container(
    pod: &Pod,
    container: &Container,
    place: &PodPlace,
    volume_dirs: &BTreeMap<String, PathBuf>,
    refs: &PodRefs,
    base_env: &[(String, String)],
) -> Result<ContainerPlan, PlanError> {
    let mounts = mount_map(container, volume_dirs)?;
    let links = mount_links(&mounts, &place.pod_dir);
    let parents = mount_parents(&mounts, &place.pod_dir);
    let remap = |value: &str| remap_value(value, &mounts, &parents);
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("HOME".into(), place.pod_dir.display().to_string()),
        ("HOSTNAME".into(), pod_name),
    ];
    for (k, v) in base_env {
        set_env(&mut env, k.clone(), v.clone());
    }
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &source.config_map_ref {
            refs.config_maps.get(&cm.name)
        } else if let Some(secret) = &source.secret_ref {
            refs.secrets.get(&secret.name)
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            set_env(&mut env, format!("{prefix}{k}"), lossy(v));
        }
    }
    for var in container.env.iter().flatten() {
        let value = env_value(pod, container, place, refs, var, &env)?;
        let value = remap(&value);
        set_env(&mut env, var.name.clone(), value);
    }
    let lookup: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|arg| remap(&expand(arg, &lookup)))
        .collect();
    let workdir = container
        .working_dir
        .as_deref()
        .map(|dir| PathBuf::from(remap_path(dir, &mounts)))
        .filter(|dir| mounts_contain(&mounts, dir))
        .unwrap_or_else(|| place.pod_dir.clone());
    Ok(ContainerPlan {
        name: container.name.clone(),
        args,
        env,
        workdir,
        links,
    })
}

/// Where the mount paths' parents are laid out as folders of links.
fn links_root(pod_dir: &Path) -> PathBuf {
    pod_dir.join("mount-parents")
}

/// One link per mount under [`links_root`], at the mount's own path.
fn mount_links(mounts: &[(String, PathBuf)], pod_dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let root = links_root(pod_dir);
    mounts
        .iter()
        .map(|(path, dir)| (root.join(path.trim_start_matches('/')), dir.clone()))
        .collect()
}

/// Each ancestor folder of a mount path that is not inside a mount itself, with its
/// folder of links.
fn mount_parents(mounts: &[(String, PathBuf)], pod_dir: &Path) -> Vec<(String, PathBuf)> {
    let root = links_root(pod_dir);
    let mut parents: Vec<(String, PathBuf)> = Vec::new();
    for (path, _) in mounts {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| *d != Path::new("/") && !d.as_os_str().is_empty()) {
            let text = dir.display().to_string();
            let inside_mount = mounts
                .iter()
                .any(|(m, _)| text == *m || text.starts_with(&format!("{m}/")));
            if !inside_mount && !parents.iter().any(|(q, _)| *q == text) {
                parents.push((text.clone(), root.join(text.trim_start_matches('/'))));
            }
            p = dir.parent();
        }
    }
    parents
}

/// [`remap_path`], and a value that names exactly a parent folder of mounts (whole,
/// or the right side of `--flag=`) becomes its folder of links. Other paths under
/// such a parent are left alone (they may be real paths of this machine).
fn remap_value(value: &str, mounts: &[(String, PathBuf)], parents: &[(String, PathBuf)]) -> String {
    let mapped = remap_path(value, mounts);
    if mapped != value {
        return mapped;
    }
    let parent = |v: &str| {
        let v = v.trim_end_matches('/');
        parents
            .iter()
            .find(|(p, _)| p == v)
            .map(|(_, dir)| dir.display().to_string())
    };
    if let Some(dir) = parent(value) {
        return dir;
    }
    if let Some((left, right)) = value.split_once('=')
        && let Some(dir) = parent(right)
    {
        return format!("{left}={dir}");
    }
    mapped
}

fn mounts_contain(mounts: &[(String, PathBuf)], dir: &Path) -> bool {
    mounts.iter().any(|(_, host)| dir.starts_with(host))
}

/// mountPath → host folder, longest mount path first so nested mounts win.
fn mount_map(
    container: &Container,
    volume_dirs: &BTreeMap<String, PathBuf>,
) -> Result<Vec<(String, PathBuf)>, PlanError> {
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let dir = volume_dirs
            .get(&m.name)
            .ok_or_else(|| PlanError::UnknownVolume {
                mount: m.mount_path.clone(),
                volume: m.name.clone(),
            })?;
        let dir = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(sub),
            None => dir.clone(),
        };
        mounts.push((m.mount_path.trim_end_matches('/').to_owned(), dir));
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    Ok(mounts)
}

/// Rewrites `value` when it is, or starts with, a mount path (`/data/x` → `<dir>/x`).
/// Values such as `--dir=/data` are split at the first `=` and their right side checked.
pub fn remap_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    if let Some(mapped) = remap_whole(value, mounts) {
        return mapped;
    }
    if let Some((left, right)) = value.split_once('=')
        && let Some(mapped) = remap_whole(right, mounts)
    {
        return format!("{left}={mapped}");
    }
    value.to_owned()
}

fn remap_whole(value: &str, mounts: &[(String, PathBuf)]) -> Option<String> {
    mounts.iter().find_map(|(mount, dir)| {
        let rest = value.strip_prefix(mount.as_str())?;
        if rest.is_empty() {
            Some(dir.display().to_string())
        } else {
            rest.strip_prefix('/')
                .map(|rest| dir.join(rest).display().to_string())
        }
    })
}

fn set_env(env: &mut Vec<(String, String)>, key: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn env_value(
    pod: &Pod,
    container: &Container,
    place: &PodPlace,
    refs: &PodRefs,
    var: &EnvVar,
    env: &[(String, String)],
) -> Result<String, PlanError> {
    let Some(from) = &var.value_from else {
        let lookup: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        return Ok(expand(var.value.as_deref().unwrap_or(""), &lookup));
    };
    if let Some(field) = &from.field_ref {
        return field_value(pod, place, field).ok_or_else(|| PlanError::UnsupportedField {
            var: var.name.clone(),
            path: field.field_path.clone(),
        });
    }
    if let Some(sel) = &from.config_map_key_ref {
        return key_value(
            &refs.config_maps,
            "ConfigMap",
            &sel.name,
            &sel.key,
            sel.optional,
            var,
        );
    }
    if let Some(sel) = &from.secret_key_ref {
        return key_value(
            &refs.secrets,
            "Secret",
            &sel.name,
            &sel.key,
            sel.optional,
            var,
        );
    }
    if let Some(res) = &from.resource_field_ref {
        let resources = container.resources.as_ref();
        let (kind, name) = res
            .resource
            .split_once('.')
            .unwrap_or(("limits", &res.resource));
        let quantity = resources.and_then(|r| match kind {
            "requests" => r.requests.as_ref(),
            _ => r.limits.as_ref(),
        });
        return Ok(quantity
            .and_then(|q| q.get(name))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| "0".into()));
    }
    Ok(String::new())
}

fn key_value(
    objects: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    kind: &'static str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    var: &EnvVar,
) -> Result<String, PlanError> {
    match objects.get(name).and_then(|data| data.get(key)) {
        Some(value) => Ok(lossy(value)),
        None if optional == Some(true) => Ok(String::new()),
        None => Err(PlanError::MissingKey {
            var: var.name.clone(),
            kind,
            name: name.to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// The value of a downward-API `fieldRef`, or `None` if unsupported.
pub fn field_value(pod: &Pod, place: &PodPlace, field: &ObjectFieldSelector) -> Option<String> {
    let meta = &pod.metadata;
    let path = field.field_path.as_str();
    let from_map = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    if let Some(key) = bracket_key(path, "metadata.labels") {
        return Some(from_map(&meta.labels, key));
    }
    if let Some(key) = bracket_key(path, "metadata.annotations") {
        return Some(from_map(&meta.annotations, key));
    }
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => place.node_name.clone(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => place.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => place.host_ip.to_string(),
        _ => return None,
    })
}

/// `metadata.labels['app']` → `app`.
fn bracket_key<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    let rest = rest.trim_matches(|c| c == '\'' || c == '"');
    Some(rest)
}

/// Kubernetes' `$(VAR)` expansion: known names are replaced, unknown ones kept as
/// written, and `$$` escapes a dollar.
pub fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, SecretKeySelector, VolumeMount};
    use kube::api::ObjectMeta;

    fn place() -> PodPlace {
        PodPlace {
            pod_ip: Ipv4Addr::new(127, 0, 1, 7),
            host_ip: Ipv4Addr::new(127, 0, 1, 1),
            node_name: "node-a".into(),
            pod_dir: PathBuf::from("/pods/ns_p"),
        }
    }

    fn field_env(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn expands_like_kubernetes() {
        let vars: BTreeMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        assert_eq!(expand("$(A)-$(B)", &vars), "1-two");
        assert_eq!(expand("$(C) $$(A) $ x", &vars), "$(C) $(A) $ x");
        assert_eq!(expand("$(A", &vars), "$(A");
    }

    #[test]
    fn fills_downward_api_expands_args_and_maps_mounts() {
        let container = Container {
            name: "main".into(),
            command: Some(vec!["riskpipe-worker".into(), "run".into()]),
            args: Some(vec![
                "--listen=$(POD_IP):8080".into(),
                "--state".into(),
                "/data/state".into(),
                "--name=$(POD_NAME)".into(),
            ]),
            env: Some(vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_IP", "status.podIP"),
                field_env("APP", "metadata.labels['app']"),
                EnvVar {
                    name: "LOG_DIR".into(),
                    value: Some("/data/logs".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "PASSWORD".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "db".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            volume_mounts: Some(vec![VolumeMount {
                name: "state".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let dirs: BTreeMap<String, PathBuf> = [("state".to_owned(), PathBuf::from("/pv/x"))].into();
        let mut refs = PodRefs::default();
        refs.secrets.insert(
            "db".into(),
            [("password".to_owned(), b"s3".to_vec())].into(),
        );
        let plan = plan_container(&pod(), &container, &place(), &dirs, &refs, &[]).unwrap();
        assert_eq!(
            plan.args,
            [
                "run",
                "--listen=127.0.1.7:8080",
                "--state",
                "/pv/x/state",
                "--name=web-1"
            ]
        );
        let env: BTreeMap<_, _> = plan.env.into_iter().collect();
        assert_eq!(env["POD_NAME"], "web-1");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["LOG_DIR"], "/pv/x/logs");
        assert_eq!(env["PASSWORD"], "s3");
        assert_eq!(env["HOME"], "/pods/ns_p");
        assert_eq!(plan.workdir, PathBuf::from("/pods/ns_p"));
    }

    #[test]
    fn a_folder_holding_only_mounts_maps_to_a_folder_of_links() {
        let mount = |name: &str, path: &str| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: Some(true),
            ..Default::default()
        };
        let container = Container {
            name: "main".into(),
            args: Some(vec!["--secrets-dir".into(), "/etc/app/secrets".into()]),
            env: Some(vec![EnvVar {
                name: "SECRETS_DIR".into(),
                value: Some("/etc/app/secrets".into()),
                ..Default::default()
            }]),
            volume_mounts: Some(vec![
                mount("a", "/etc/app/secrets/kafka"),
                mount("b", "/etc/app/secrets/db"),
                mount("conf", "/etc/app"),
            ]),
            ..Default::default()
        };
        let dirs: BTreeMap<String, PathBuf> = [
            ("a".to_owned(), PathBuf::from("/vol/a")),
            ("b".to_owned(), PathBuf::from("/vol/b")),
            ("conf".to_owned(), PathBuf::from("/vol/conf")),
        ]
        .into();
        let plan = plan_container(
            &pod(),
            &container,
            &place(),
            &dirs,
            &PodRefs::default(),
            &[],
        )
        .unwrap();
        // /etc/app is a mount itself, so /etc/app/secrets is inside it: mapped there.
        assert_eq!(plan.args[1], "/vol/conf/secrets");

        let container = Container {
            volume_mounts: Some(vec![
                mount("a", "/etc/app/secrets/kafka"),
                mount("b", "/etc/app/secrets/db"),
            ]),
            ..container
        };
        let plan = plan_container(
            &pod(),
            &container,
            &place(),
            &dirs,
            &PodRefs::default(),
            &[],
        )
        .unwrap();
        let links = "/pods/ns_p/mount-parents/etc/app/secrets";
        assert_eq!(plan.args[1], links);
        assert_eq!(
            remap_value(
                "/etc/app/other.pem",
                &[("/etc/app/secrets/kafka".into(), "/vol/a".into())],
                &mount_parents(
                    &[("/etc/app/secrets/kafka".into(), "/vol/a".into())],
                    Path::new("/p")
                )
            ),
            "/etc/app/other.pem",
            "only the parent folder itself is mapped"
        );
        let env: BTreeMap<_, _> = plan.env.into_iter().collect();
        assert_eq!(env["SECRETS_DIR"], links);
        assert!(plan.links.contains(&(
            PathBuf::from(format!("{links}/kafka")),
            PathBuf::from("/vol/a")
        )));
        assert!(plan.links.contains(&(
            PathBuf::from(format!("{links}/db")),
            PathBuf::from("/vol/b")
        )));
    }

    #[test]
    fn a_missing_secret_key_is_an_error_unless_optional() {
        let mut var = EnvVar {
            name: "X".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "nope".into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = Container {
            name: "c".into(),
            env: Some(vec![var.clone()]),
            ..Default::default()
        };
        let err = plan_container(
            &pod(),
            &container,
            &place(),
            &BTreeMap::new(),
            &PodRefs::default(),
            &[],
        );
        assert!(matches!(err, Err(PlanError::MissingKey { .. })));
        if let Some(sel) = var
            .value_from
            .as_mut()
            .and_then(|f| f.secret_key_ref.as_mut())
        {
            sel.optional = Some(true);
        }
        let container = Container {
            name: "c".into(),
            env: Some(vec![var]),
            ..Default::default()
        };
        assert!(
            plan_container(
                &pod(),
                &container,
                &place(),
                &BTreeMap::new(),
                &PodRefs::default(),
                &[]
            )
            .is_ok()
        );
    }
}
