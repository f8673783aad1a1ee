//! The workers' HTTP API: `/status` figures and savepoints, in the types of the
//! worker contract ([`riskpipe_contract`]), which the worker serves with. Behind a
//! trait so the reconcile can be tested without workers.

use std::{net::SocketAddr, time::Duration};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use kube::api::ObjectMeta;
use riskpipe_contract::api;
use serde::de::DeserializeOwned;

pub use riskpipe_contract::{
    CheckpointInfo, PartitionStatus, SavepointInfo, SavepointState, TriggerSavepoint, WorkerState,
    WorkerStatus,
};

/// Longest wait for one call to a worker.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A call to a worker that failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No answer (connection refused, timeout).
    #[error("worker at {addr} did not answer: {reason}")]
    Unreachable {
        /// The worker's address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// An answer with an unexpected status code.
    #[error("worker at {addr} answered {status} to {path}: {body}")]
    Status {
        /// The worker's address.
        addr: SocketAddr,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
        /// The body, for the message.
        body: String,
    },
    /// An answer that is not the JSON the contract describes.
    #[error("worker at {addr} sent an unreadable answer to {path}")]
    Decode {
        /// The worker's address.
        addr: SocketAddr,
        /// The request path.
        path: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What a worker did with `DELETE /savepoints/{id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposal {
    /// 204: removed from its storage.
    Deleted,
    /// 404: the worker does not know the id (e.g. it restarted since).
    Unknown,
}

/// Calls to the workers.
pub trait WorkerApi: Send + Sync {
    /// `GET /status`.
    fn status(&self, addr: SocketAddr) -> BoxFuture<'_, Result<WorkerStatus, WorkerError>>;
    /// `POST /savepoints` with `path`; the answer names the id to poll.
    fn trigger_savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>>;
    /// `GET /savepoints/{id}`.
    fn savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>>;
    /// `DELETE /savepoints/{id}`: 204 is [`Disposal::Deleted`], 404
    /// [`Disposal::Unknown`], anything else an error (e.g. 409 while it is written).
    fn delete_savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Disposal, WorkerError>>;
}

/// The workers' API over plain HTTP on the Pod network.
#[derive(Clone)]
pub struct HttpWorkers {
    client: Client<HttpConnector, Full<bytes::Bytes>>,
}

impl Default for HttpWorkers {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl HttpWorkers {
    async fn call<T: DeserializeOwned>(
        &self,
        addr: SocketAddr,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, WorkerError> {
        let (status, bytes) = self.send(addr, method, path, body).await?;
        if !status.is_success() {
            return Err(status_error(addr, path, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| WorkerError::Decode {
            addr,
            path: path.to_owned(),
            source,
        })
    }

    async fn send(
        &self,
        addr: SocketAddr,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(http::StatusCode, bytes::Bytes), WorkerError> {
        let unreachable = |reason: String| WorkerError::Unreachable { addr, reason };
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::from(body.unwrap_or_default()))
            .map_err(|e| unreachable(e.to_string()))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, WorkerError>((status, bytes))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
    }
}

fn status_error(
    addr: SocketAddr,
    path: &str,
    status: http::StatusCode,
    bytes: &[u8],
) -> WorkerError {
    WorkerError::Status {
        addr,
        path: path.to_owned(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(bytes).chars().take(300).collect(),
    }
}

impl WorkerApi for HttpWorkers {
    fn status(&self, addr: SocketAddr) -> BoxFuture<'_, Result<WorkerStatus, WorkerError>> {
        Box::pin(self.call(addr, http::Method::GET, api::STATUS, None))
    }

    fn trigger_savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        Box::pin(async move {
            let body = TriggerSavepoint {
                path: Some(path.to_owned()),
            };
            let body = serde_json::to_vec(&body).map_err(|source| WorkerError::Decode {
                addr,
                path: api::SAVEPOINTS.into(),
                source,
            })?;
            self.call(addr, http::Method::POST, api::SAVEPOINTS, Some(body))
                .await
        })
    }

    fn savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SavepointInfo, WorkerError>> {
        Box::pin(async move {
            let path = api::savepoint(id);
            self.call(addr, http::Method::GET, &path, None).await
        })
    }

    fn delete_savepoint<'a>(
        &'a self,
        addr: SocketAddr,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Disposal, WorkerError>> {
        Box::pin(async move {
            let path = api::savepoint(id);
            let (status, bytes) = self.send(addr, http::Method::DELETE, &path, None).await?;
            match status {
                http::StatusCode::NOT_FOUND => Ok(Disposal::Unknown),
                s if s.is_success() => Ok(Disposal::Deleted),
                s => Err(status_error(addr, &path, s, &bytes)),
            }
        })
    }
}

/// Address of a worker Pod's HTTP port, when it has an IP.
pub fn pod_addr(meta: &ObjectMeta, pod_ip: Option<&str>) -> Option<(i32, SocketAddr)> {
    let ordinal = crate::names::ordinal_of(meta.name.as_deref()?)?;
    let ip = pod_ip?.parse().ok()?;
    Some((ordinal, SocketAddr::new(ip, api::HTTP_PORT)))
}

#[cfg(test)]
mod tests {
    use axum::{
        Json, Router,
        extract::Path,
        http::StatusCode,
        routing::{get, post},
    };
    use serde_json::{Value, json};

    use super::*;

    /// A stand-in for the worker's HTTP endpoint, answering as the contract says.
    async fn fake_worker() -> SocketAddr {
        let app = Router::new()
            .route(
                "/status",
                get(|| async {
                    Json(json!({"pipeline":"p","ordinal":1,"replicas":2,"ownedPartitions":[1,3],
                        "recordsPerSecond":5.0,"busyRatio":0.1,"lagRecords":7,"lagSeconds":1.4,"errorRate":0.0,
                        "lastCheckpoint":null,"state":"running"}))
                }),
            )
            .route(
                "/savepoints",
                post(|Json(body): Json<Value>| async move {
                    let path = body["path"].as_str().unwrap_or("missing").to_owned();
                    (StatusCode::ACCEPTED, Json(json!({"id":"sp-1","path":path})))
                }),
            )
            .route(
                "/savepoints/{id}",
                get(|Path(id): Path<String>| async move {
                    if id == "sp-1" {
                        Json(json!({"id":id,"state":"completed","path":"/sp","error":null})).into_response()
                    } else {
                        (StatusCode::NOT_FOUND, "no savepoint").into_response()
                    }
                })
                .delete(|Path(id): Path<String>| async move {
                    match id.as_str() {
                        "sp-1" => StatusCode::NO_CONTENT.into_response(),
                        "sp-2" => (StatusCode::CONFLICT, "still being written").into_response(),
                        _ => (StatusCode::NOT_FOUND, "no savepoint").into_response(),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    use axum::response::IntoResponse;

    #[tokio::test]
    async fn http_client_speaks_the_worker_contract() {
        let addr = fake_worker().await;
        let api = HttpWorkers::default();
        let status = api.status(addr).await.unwrap();
        assert_eq!(
            (
                status.ordinal,
                status.owned_partitions.clone(),
                status.lag_records
            ),
            (1, vec![1, 3], 7)
        );
        let ack = api
            .trigger_savepoint(addr, "/sp/payments/savepoint-1")
            .await
            .unwrap();
        assert_eq!(
            (ack.id.as_str(), ack.path.as_str()),
            ("sp-1", "/sp/payments/savepoint-1")
        );
        assert_eq!(
            api.savepoint(addr, "sp-1").await.unwrap().state,
            SavepointState::Completed
        );
        let lost = api.savepoint(addr, "sp-9").await.unwrap_err();
        assert!(
            matches!(lost, WorkerError::Status { status: 404, .. }),
            "{lost}"
        );
        assert_eq!(
            api.delete_savepoint(addr, "sp-1").await.unwrap(),
            Disposal::Deleted
        );
        assert_eq!(
            api.delete_savepoint(addr, "sp-9").await.unwrap(),
            Disposal::Unknown
        );
        let busy = api.delete_savepoint(addr, "sp-2").await.unwrap_err();
        assert!(
            matches!(busy, WorkerError::Status { status: 409, .. }),
            "{busy}"
        );
    }

    #[tokio::test]
    async fn an_absent_worker_is_unreachable_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = HttpWorkers::default().status(addr).await.unwrap_err();
        assert!(matches!(err, WorkerError::Unreachable { .. }), "{err}");
    }
}
