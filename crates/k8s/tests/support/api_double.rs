//! An in-process stand-in for kube-apiserver with real list/watch semantics, enough for
//! kube-rs watchers: a global resourceVersion; list responses carry it; `watch=true` from a
//! resourceVersion streams ADDED/MODIFIED/DELETED after it, then live changes and BOOKMARKs;
//! a resourceVersion older than the compaction point gets a 410 Gone (an ERROR event with a
//! Status, as the real server sends on a watch); `spec.nodeName` field selectors on pods.
//! Plain HTTP on 127.0.0.1; tests point a kubeconfig at it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Where each kind lives in the API.
const RESOURCES: &[(&str, &str)] = &[
    ("Pod", "/api/v1/pods"),
    ("Service", "/api/v1/services"),
    ("Namespace", "/api/v1/namespaces"),
    ("Node", "/api/v1/nodes"),
    ("ReplicaSet", "/apis/apps/v1/replicasets"),
    ("Deployment", "/apis/apps/v1/deployments"),
    ("StatefulSet", "/apis/apps/v1/statefulsets"),
    ("DaemonSet", "/apis/apps/v1/daemonsets"),
    ("Job", "/apis/batch/v1/jobs"),
    ("CronJob", "/apis/batch/v1/cronjobs"),
    ("EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices"),
];

fn kind_of_path(path: &str) -> Option<&'static str> {
    RESOURCES
        .iter()
        .find(|(_, p)| *p == path)
        .map(|(kind, _)| *kind)
}

#[derive(Debug, Clone)]
struct Logged {
    rv: u64,
    kind: String,
    kind_event: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct State_ {
    rv: u64,
    /// Watches from before this resourceVersion get 410 Gone.
    compacted: u64,
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<Logged>,
    /// Every watch request: (kind, resourceVersion asked, bookmarks asked).
    watches: Vec<(String, u64, bool)>,
    /// Bumped to end every open watch stream.
    epoch: u64,
}

/// The double. Dropping it stops the server.
pub struct ApiDouble {
    state: Arc<Mutex<State_>>,
    notify: broadcast::Sender<()>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ApiDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn key_of(object: &Value) -> (String, String, String) {
    (
        object["kind"].as_str().unwrap_or_default().to_string(),
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[derive(Clone)]
struct AppState {
    state: Arc<Mutex<State_>>,
    notify: broadcast::Sender<()>,
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some(("spec.nodeName", node)) => object["spec"]["nodeName"].as_str() == Some(node),
        Some(("metadata.name", name)) => object["metadata"]["name"].as_str() == Some(name),
        _ => true,
    })
}

async fn handle(
    State(app): State<AppState>,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(kind) = kind_of_path(uri.path()) else {
        return (StatusCode::NOT_FOUND, "unknown resource").into_response();
    };
    let selector = query.get("fieldSelector").map(String::as_str);
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watch {
        let state = app.state.lock().unwrap();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|((k, _, _), o)| k == kind && matches_selector(o, selector))
            .map(|(_, o)| o.clone())
            .collect();
        let list = json!({
            "apiVersion": "v1",
            "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": state.rv.to_string()},
            "items": items,
        });
        return axum::Json(list).into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(290u64);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    let (gone, epoch) = {
        let mut state = app.state.lock().unwrap();
        state.watches.push((kind.to_string(), from, bookmarks));
        (from < state.compacted, state.epoch)
    };
    if gone {
        let status = json!({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410}});
        let _ = tx.send(Ok(format!("{status}\n"))).await;
        drop(tx);
    } else {
        let state = app.state.clone();
        let mut notify = app.notify.subscribe();
        let kind = kind.to_string();
        let selector = selector.map(String::from);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            let mut sent = from;
            loop {
                let (events, rv, ended) = {
                    let s = state.lock().unwrap();
                    let events: Vec<Logged> = s
                        .log
                        .iter()
                        .filter(|l| l.rv > sent && l.kind == kind)
                        .filter(|l| matches_selector(&l.object, selector.as_deref()))
                        .cloned()
                        .collect();
                    (events, s.rv, s.epoch != epoch)
                };
                if ended {
                    return;
                }
                for e in events {
                    let line = json!({"type": e.kind_event, "object": e.object});
                    if tx.send(Ok(format!("{line}\n"))).await.is_err() {
                        return;
                    }
                }
                sent = sent.max(rv);
                tokio::select! {
                    _ = notify.recv() => {}
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        if bookmarks {
                            let apiv = if kind == "EndpointSlice" { "discovery.k8s.io/v1" } else { "v1" };
                            let mark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": apiv,
                                "metadata": {"resourceVersion": rv.to_string()}}});
                            if tx.send(Ok(format!("{mark}\n"))).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => return,
                }
            }
        });
    }
    let stream = tokio_stream(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// An mpsc receiver as a stream of body chunks.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl ApiDouble {
    /// Serves on `addr` (port 0 for any) with `objects` loaded.
    pub async fn start(addr: &str, objects: Vec<Value>) -> Self {
        let (notify, _) = broadcast::channel(1024);
        let state = Arc::new(Mutex::new(State_::default()));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(AppState {
            state: state.clone(),
            notify: notify.clone(),
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let double = Self {
            state,
            notify,
            addr,
            server,
        };
        for object in objects {
            double.apply(object);
        }
        double
    }

    /// Adds or replaces an object (ADDED or MODIFIED).
    pub fn apply(&self, object: Value) {
        self.change(object, false, true);
    }

    /// Deletes an object (DELETED with its last state).
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let object = {
            let s = self.state.lock().unwrap();
            s.objects
                .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
                .cloned()
        };
        if let Some(object) = object {
            self.change(object, true, true);
        }
    }

    /// Changes state without telling open watches (they would have missed it): only a
    /// relist can find out.
    pub fn delete_silently(&self, kind: &str, namespace: &str, name: &str) {
        let object = {
            let s = self.state.lock().unwrap();
            s.objects
                .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
                .cloned()
        };
        if let Some(object) = object {
            self.change(object, true, false);
        }
    }

    fn change(&self, mut object: Value, delete: bool, logged: bool) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&object);
        let kind_event = if delete {
            s.objects.remove(&key);
            "DELETED"
        } else if s.objects.insert(key.clone(), object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if logged {
            s.log.push(Logged {
                rv,
                kind: key.0,
                kind_event,
                object,
            });
        }
        drop(s);
        let _ = self.notify.send(());
    }

    /// Forgets history: a watch from before now gets 410 Gone.
    pub fn compact(&self) {
        let mut s = self.state.lock().unwrap();
        s.compacted = s.rv + 1;
        s.log.clear();
    }

    /// Ends every open watch stream, as an apiserver restart would.
    pub fn drop_watches(&self) {
        self.state.lock().unwrap().epoch += 1;
        let _ = self.notify.send(());
    }

    /// Watch requests seen: (kind, resourceVersion, bookmarks asked).
    pub fn watches(&self) -> Vec<(String, u64, bool)> {
        self.state.lock().unwrap().watches.clone()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.lock().unwrap().rv
    }

    /// A kubeconfig pointing at this server, written into `dir`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        kubeconfig_for(&self.addr, dir)
    }
}

/// A kubeconfig for a plain-HTTP server at `addr`.
pub fn kubeconfig_for(addr: &SocketAddr, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: nobody\ncurrent-context: double\nusers:\n- name: nobody\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path
}
