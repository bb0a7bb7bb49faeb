//! The `/metrics` endpoint, serving the agent's [`Telemetry`] in the Prometheus text format.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use nightjar_core::telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio::sync::watch;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves `/metrics` until `shutdown` turns true. Returns the bound address
/// (useful with port 0) once listening.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let telemetry = telemetry.clone();
            async move { ([(CONTENT_TYPE, OPENMETRICS)], telemetry.encode()).into_response() }
        }),
    );
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "Metrics server stopped");
        }
    });
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let telemetry = Arc::new(Telemetry::new());
        telemetry.count_event("process_exec");
        let (tx, rx) = watch::channel(false);
        let (addr, handle) = serve("127.0.0.1:0".parse().unwrap(), telemetry, rx)
            .await
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains("nightjar_events_total{type=\"process_exec\"} 1"),
            "{body}"
        );
        tx.send(true).unwrap();
        handle.await.unwrap();
    }
}
