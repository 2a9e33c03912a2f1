//! Helpers for engine tests.

#![allow(dead_code, unused_imports)]

use std::time::Duration;

pub use twinflow::testkit::*;

pub mod services;

/// Engine settings for tests: any free port, fast restarts.
pub fn settings() -> twinflow::config::Settings {
    twinflow::config::Settings {
        http_addr: "127.0.0.1:0".into(),
        restart_backoff_initial_ms: 5,
        restart_backoff_max_ms: 50,
        workers: 2,
        ..Default::default()
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Value of the first sample of `metric` whose labels contain every `label`.
pub fn metric_value(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
