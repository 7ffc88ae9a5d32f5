//! The `[daemon] listen` endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /health` (the health report as JSON; 200 when healthy, else 503). Bound before
//! the mailboxes start, so a taken address stops the start with a clear error; it stops
//! with the daemon.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, DeskState};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ([daemon] listen): {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

#[derive(Clone)]
struct Endpoint {
    prometheus: PrometheusHandle,
    status: DeskState,
}

/// Binds `addr` now; serves in a task of its own until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    prometheus: PrometheusHandle,
    status: DeskState,
    shutdown: CancellationToken,
) -> Result<(), ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(health))
        .with_state(Endpoint { prometheus, status });
    tracing::info!(%addr, "serving /metrics and /health");
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = server.await {
            tracing::error!(%addr, %error, "the metrics listener failed");
        }
    });
    Ok(())
}

async fn scrape(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    metrics::refresh_time_gauges(&endpoint.status.current(), Utc::now());
    // Histograms are folded into their buckets here: nothing else runs the exporter's upkeep.
    endpoint.prometheus.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        endpoint.prometheus.render(),
    )
}

async fn health(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    let report = endpoint.status.current().assessed(Utc::now());
    let code = match report.healthy {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    match serde_json::to_string_pretty(&report) {
        Ok(json) => (code, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
