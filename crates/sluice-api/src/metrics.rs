//! RED metrics for every endpoint: rate, errors, duration.

use std::time::Instant;

use axum::{extract::MatchedPath, extract::Request, middleware::Next, response::Response};
use metrics::{counter, histogram};

pub(crate) async fn red(request: Request, next: Next) -> Response {
    // The matched route, not the raw path, keeps the label set bounded.
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let class = match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!("sluice_http_requests_total", "endpoint" => endpoint.clone(), "method" => method, "status" => class)
        .increment(1);
    if status.is_server_error() {
        counter!("sluice_http_errors_total", "endpoint" => endpoint.clone()).increment(1);
    }
    histogram!("sluice_http_request_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}
