//! Server-side apply wrapped once: one field manager, always forced, so the operator
//! owns exactly the fields it sets and takes them back from whoever changed them.

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::names::FIELD_MANAGER;

/// An apply that failed, naming the object.
#[derive(Debug, thiserror::Error)]
#[error("server-side apply of {kind} {namespace}/{name} failed")]
pub struct ApplyError {
    /// Kind of the object.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Applies namespaced objects with the operator's field manager.
#[derive(Clone)]
pub struct Applier {
    client: Client,
    params: PatchParams,
}

impl Applier {
    /// An applier using `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            params: PatchParams::apply(FIELD_MANAGER).force(),
        }
    }

    /// Applies `obj` (which must carry its name and namespace) and returns the result.
    pub async fn apply<K>(&self, obj: &K) -> Result<K, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        api.patch(&name, &self.params, &Patch::Apply(obj))
            .await
            .map_err(|source| ApplyError {
                kind: K::kind(&K::DynamicType::default()).into_owned(),
                namespace,
                name,
                source,
            })
    }
}
