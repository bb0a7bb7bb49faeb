//! The agent's control socket: a small HTTP/JSON API on a Unix socket (mode 0600, so only
//! root changes what the kernel enforces), used by `nightjar blocklist`. It is the seam the
//! full API grows from; today it manages the XDP blocklist while the agent runs.
//!
//! - `GET /v1/blocklist`: entries with their packet and byte counts.
//! - `POST /v1/blocklist` `{"cidr": "10.0.0.0/8", "mode": "drop" | "audit"}`: add.
//! - `DELETE /v1/blocklist?cidr=10.0.0.0/8`: remove; traffic from it passes again.
//! - `GET /v1/xdp/sources?limit=N`: the busiest source networks XDP saw, by bytes.
//! - `GET /v1/kubernetes/pods`: this node's pods with workload, services and importance.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use nightjar_core::telemetry::Telemetry;
use nightjar_loader::blocklist::{Blocklist, BlocklistError};
use nightjar_loader::connect_rules::Cidr;
use nightjar_loader::xdp::{BlockEntry, XdpCounters};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Where `nightjar agent` listens and `nightjar blocklist` connects by default.
pub const DEFAULT_SOCKET: &str = "/run/nightjar/control.sock";

/// What the handlers share with the agent's loop.
#[derive(Clone)]
pub struct ControlState {
    /// `None` when no XDP interface is attached: blocklist requests are refused.
    pub blocklist: Option<Arc<Mutex<Blocklist>>>,
    /// `None` when no XDP interface is attached.
    pub xdp: Option<Arc<Mutex<XdpCounters>>>,
    /// `None` without Kubernetes metadata.
    pub pods: Option<nightjar_k8s::annotate::PublishedPods>,
    pub telemetry: Arc<Telemetry>,
}

type Reply = (StatusCode, Json<Value>);

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    (status, Json(json!({ "error": message.to_string() })))
}

fn blocklist(state: &ControlState) -> Result<&Arc<Mutex<Blocklist>>, Reply> {
    state.blocklist.as_ref().ok_or_else(|| {
        error(
            StatusCode::CONFLICT,
            "no XDP interface is attached: start the agent with --xdp-interface",
        )
    })
}

fn status_of(err: &BlocklistError) -> StatusCode {
    match err {
        BlocklistError::Conflict(..) | BlocklistError::Full(_) => StatusCode::CONFLICT,
        BlocklistError::NotListed(_) => StatusCode::NOT_FOUND,
        BlocklistError::Kernel { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A blocklist CIDR from a request; a 400 naming it when it is not one.
fn parse_cidr(text: &str) -> Result<Cidr, Reply> {
    Cidr::parse(text).map_err(|e| error(StatusCode::BAD_REQUEST, format!("blocklist entry {e}")))
}

async fn list(State(state): State<ControlState>) -> Reply {
    match blocklist(&state) {
        Ok(list) => {
            let entries = list.lock().unwrap_or_else(|e| e.into_inner()).list();
            (StatusCode::OK, Json(json!(entries)))
        }
        Err(reply) => reply,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    cidr: String,
    #[serde(default)]
    mode: Option<String>,
}

async fn add(State(state): State<ControlState>, body: axum::body::Bytes) -> Reply {
    let request: AddRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let audit = match request.mode.as_deref() {
        None | Some("drop") => false,
        Some("audit") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("mode {other:?}: expected \"drop\" or \"audit\""),
            )
        }
    };
    let cidr = match parse_cidr(&request.cidr) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let list = match blocklist(&state) {
        Ok(list) => list,
        Err(reply) => return reply,
    };
    let result = list
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add(BlockEntry { cidr, audit });
    match result {
        Ok(()) => {
            tracing::info!(entry = %cidr, audit, "Blocklist entry added");
            (
                StatusCode::CREATED,
                Json(
                    json!({ "cidr": cidr.to_string(), "mode": if audit { "audit" } else { "drop" } }),
                ),
            )
        }
        Err(e) => error(status_of(&e), e),
    }
}

#[derive(Debug, Deserialize)]
struct RemoveQuery {
    cidr: String,
}

async fn remove(
    State(state): State<ControlState>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "expected ?cidr=NETWORK/LEN");
    };
    let cidr = match parse_cidr(&query.cidr) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let list = match blocklist(&state) {
        Ok(list) => list,
        Err(reply) => return reply,
    };
    let result = list
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&cidr, &state.telemetry);
    match result {
        Ok(()) => {
            tracing::info!(entry = %cidr, "Blocklist entry removed");
            (StatusCode::OK, Json(json!({ "removed": cidr.to_string() })))
        }
        Err(e) => error(status_of(&e), e),
    }
}

#[derive(Debug, Deserialize)]
struct SourcesQuery {
    limit: Option<usize>,
}

async fn sources(
    State(state): State<ControlState>,
    query: Result<Query<SourcesQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "expected ?limit=N");
    };
    let Some(xdp) = &state.xdp else {
        return error(
            StatusCode::CONFLICT,
            "no XDP interface is attached: start the agent with --xdp-interface",
        );
    };
    let list = xdp
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sources(query.limit.unwrap_or(50));
    (StatusCode::OK, Json(json!(list)))
}

async fn pods(State(state): State<ControlState>) -> Reply {
    let Some(pods) = &state.pods else {
        return error(
            StatusCode::CONFLICT,
            "no Kubernetes metadata: start the agent with --kubeconfig, --kube-metadata or a CRI socket",
        );
    };
    let mut list: Vec<_> = pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    list.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    (StatusCode::OK, Json(json!(list)))
}

fn router(state: ControlState) -> Router {
    Router::new()
        .route("/v1/blocklist", get(list).post(add).delete(remove))
        .route("/v1/xdp/sources", get(sources))
        .route("/v1/kubernetes/pods", get(pods))
        .with_state(state)
}

/// Removes the socket file when the agent stops.
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds `path` (mode 0600; a stale file from a crashed agent is replaced, a live agent's is
/// not) and serves until `shutdown` turns true.
pub fn serve(
    path: &Path,
    state: ControlState,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SocketFile> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        anyhow::ensure!(
            std::os::unix::net::UnixStream::connect(path).is_err(),
            "another agent is listening on {}",
            path.display()
        );
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))?;
    let app = router(state);
    tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "Control socket stopped");
        }
    });
    Ok(SocketFile(path.to_path_buf()))
}

/// One request to a running agent's control socket (blocking; for the CLI). Returns the
/// status code and the JSON body.
pub fn request(
    socket: &Path,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the agent at {} (is `nightjar agent` running?)",
            socket.display()
        )
    })?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: nightjar\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .context("malformed response from the agent")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed status line from the agent")?;
    let value = if payload.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(payload).context("the agent's answer is not JSON")?
    };
    Ok((status, value))
}

/// Percent-encodes a query value (CIDRs carry '/' and ':').
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
