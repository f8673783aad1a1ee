//! `spec.podTemplate` merged into the workers' Pod spec: each field the user gives
//! replaces the operator's default, except what the operator must own (the
//! container's command, ports, probes, mounts and security context, the volumes).

use k8s_openapi::api::core::v1::PodSpec;
use riskpipe_crds::WorkerPodSpec;

/// `own` with the user's settings `user` merged in.
pub fn merge(mut own: PodSpec, user: &WorkerPodSpec) -> PodSpec {
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if !user.node_selector.is_empty() {
        own.node_selector = Some(user.node_selector.clone());
    }
    if !user.tolerations.is_empty() {
        own.tolerations = Some(user.tolerations.clone());
    }
    if user.affinity.is_some() {
        own.affinity = user.affinity.clone();
    }
    if !user.topology_spread_constraints.is_empty() {
        own.topology_spread_constraints = Some(user.topology_spread_constraints.clone());
    }
    if !user.image_pull_secrets.is_empty() {
        own.image_pull_secrets = Some(user.image_pull_secrets.clone());
    }
    if let Some(name) = set(&user.priority_class_name) {
        own.priority_class_name = Some(name);
    }
    if let Some(name) = set(&user.service_account_name) {
        own.service_account_name = Some(name);
    }
    if let Some(name) = set(&user.scheduler_name) {
        own.scheduler_name = Some(name);
    }
    if let Some(name) = set(&user.runtime_class_name) {
        own.runtime_class_name = Some(name);
    }
    if !user.env.is_empty() {
        for c in &mut own.containers {
            let env = c.env.get_or_insert_default();
            // The operator's variables win (validation refuses their names anyway).
            let taken: Vec<String> = env.iter().map(|e| e.name.clone()).collect();
            env.extend(
                user.env
                    .iter()
                    .filter(|e| !taken.contains(&e.name))
                    .cloned(),
            );
        }
    }
    own
}
