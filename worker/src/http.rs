//! The worker's HTTP endpoint on the pod IP: `/healthz`, `/readyz`, `/metrics`,
//! `/status` (the JSON the operator polls) and savepoints (`POST /savepoints`,
//! `GET /savepoints/{id}`, `DELETE /savepoints/{id}`).
//!
//! It runs on its own thread with a small tokio runtime, and talks to the
//! processing loop only through [`Shared`]. The JSON types and paths are the
//! worker contract's ([`riskpipe_contract`]), re-exported here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use riskpipe_contract::api;

pub use riskpipe_contract::savepoint::{SavepointInfo, SavepointState, TriggerSavepoint};
pub use riskpipe_contract::status::{
    CheckpointInfo, OffsetOutOfRangeReport, PartitionStatus, WorkerState, WorkerStatus,
};

/// What a [`SavepointRequest`] asks for.
#[derive(Debug, Clone)]
pub enum SavepointAction {
    /// Take a savepoint into `path`.
    Take,
    /// Delete the savepoint at `path`; the outcome goes back on the channel.
    Delete(std::sync::mpsc::Sender<Result<(), String>>),
}

/// A savepoint request to the processing loop.
#[derive(Debug, Clone)]
pub struct SavepointRequest {
    /// Identifier.
    pub id: String,
    /// Where it is: a folder or `s3://bucket/key`.
    pub path: String,
    /// Take or delete.
    pub action: SavepointAction,
}

/// How long `DELETE /savepoints/{id}` waits for the storage.
const DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// State shared between the processing loop and the HTTP server.
pub struct Shared {
    /// `/status`.
    pub status: Mutex<WorkerStatus>,
    /// Savepoints by id.
    pub savepoints: Mutex<BTreeMap<String, SavepointInfo>>,
    /// Requests to the processing loop.
    pub requests: Mutex<Sender<SavepointRequest>>,
    /// Where savepoints go when the request names no path.
    pub savepoint_root: String,
    /// Set once the worker is running (restored and caught up).
    pub ready: AtomicBool,
    /// The metrics registry.
    pub registry: Registry,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    match s.status.lock() {
        Ok(st) => Json(st.clone()).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "status lock poisoned").into_response(),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn trigger_savepoint(
    State(s): State<Arc<Shared>>,
    body: Option<Json<TriggerSavepoint>>,
) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let id = format!("sp-{now}");
    let path = body
        .and_then(|Json(b)| b.path)
        .unwrap_or_else(|| format!("{}/{id}", s.savepoint_root));
    let request = SavepointRequest {
        id: id.clone(),
        path: path.clone(),
        action: SavepointAction::Take,
    };
    let info = SavepointInfo {
        id: id.clone(),
        state: SavepointState::InProgress,
        path,
        error: None,
    };
    if let Some(stopped) = to_loop(&s, request) {
        return stopped;
    }
    if let Ok(mut map) = s.savepoints.lock() {
        map.insert(id, info.clone());
    }
    (StatusCode::ACCEPTED, Json(info)).into_response()
}

/// Hands a savepoint request to the processing loop; the 503 answer when it
/// has stopped.
fn to_loop(s: &Shared, request: SavepointRequest) -> Option<Response> {
    let sent = s
        .requests
        .lock()
        .map(|tx| tx.send(request).is_ok())
        .unwrap_or(false);
    (!sent).then(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the processing loop has stopped",
        )
            .into_response()
    })
}

async fn get_savepoint(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match s.savepoints.lock().ok().and_then(|m| m.get(&id).cloned()) {
        Some(info) => Json(info).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no savepoint {id}")).into_response(),
    }
}

/// Deletes a savepoint this worker took from its storage: 204, 404 when unknown,
/// 409 while it is still being written.
async fn delete_savepoint(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(info) = s.savepoints.lock().ok().and_then(|m| m.get(&id).cloned()) else {
        return (StatusCode::NOT_FOUND, format!("no savepoint {id}")).into_response();
    };
    if info.state == SavepointState::InProgress {
        return (
            StatusCode::CONFLICT,
            format!("savepoint {id} is still being written"),
        )
            .into_response();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let request = SavepointRequest {
        id: id.clone(),
        path: info.path,
        action: SavepointAction::Delete(tx),
    };
    if let Some(stopped) = to_loop(&s, request) {
        return stopped;
    }
    let answer = tokio::task::spawn_blocking(move || rx.recv_timeout(DELETE_TIMEOUT)).await;
    match answer {
        Ok(Ok(Ok(()))) => {
            if let Ok(mut map) = s.savepoints.lock() {
                map.remove(&id);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(Err(e))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("deleting savepoint {id}: {e}"),
        )
            .into_response(),
        Ok(Err(_)) | Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("savepoint {id} was not deleted within {DELETE_TIMEOUT:?}"),
        )
            .into_response(),
    }
}

/// The router (separate so tests can call it without a socket).
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(api::HEALTHZ, get(healthz))
        .route(api::READYZ, get(readyz))
        .route(api::STATUS, get(status))
        .route(api::METRICS, get(metrics))
        .route(api::SAVEPOINTS, post(trigger_savepoint))
        .route(
            api::SAVEPOINT_ROUTE,
            get(get_savepoint).delete(delete_savepoint),
        )
        .with_state(shared)
}

/// Binds `addr` and serves on a background thread; returns the bound address.
pub fn serve(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                if let Err(e) = axum::serve(listener, router(shared)).await {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            });
        })?;
    tracing::info!(addr = %bound, "HTTP endpoint listening (/healthz /readyz /status /metrics /savepoints)");
    Ok(bound)
}
