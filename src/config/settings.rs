//! Engine settings: layered from the built-in `config/default.yaml`, an
//! optional settings file (`--config` or `TWINFLOW_CONFIG`), then
//! `TWINFLOW_*` environment variables (`TWINFLOW_HTTP_ADDR`,
//! `TWINFLOW_LOG_LEVEL`, ...). Pipeline files hold what a pipeline does;
//! these hold how this process runs.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The built-in defaults, the same text as `config/default.yaml`.
pub const DEFAULT_SETTINGS: &str = include_str!("../../config/default.yaml");

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How this twinflow process runs.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Listen address of the HTTP server (health, readiness, metrics, API).
    /// Port 0 picks a free port; the chosen address is logged.
    pub http_addr: String,
    /// Log filter, in `tracing` env-filter syntax (`info`, `twinflow=debug`).
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Restarts allowed within `restart_window_secs` before the pipeline is
    /// stopped and the process exits non-zero.
    pub restart_budget: u32,
    /// The window of the restart budget, seconds.
    pub restart_window_secs: f64,
    /// First restart delay, milliseconds; doubles per restart of a component.
    pub restart_backoff_initial_ms: u64,
    /// Largest restart delay, milliseconds.
    pub restart_backoff_max_ms: u64,
    /// How long a graceful shutdown may take before the process gives up
    /// and exits non-zero, seconds.
    pub shutdown_timeout_secs: f64,
    /// Threads (actix arbiters) that run the pipeline's actors; 0 = one per core.
    pub workers: usize,
}

/// Settings could not be read.
#[derive(Debug, thiserror::Error)]
#[error("engine settings: {0}")]
pub struct SettingsError(String);

impl Settings {
    /// Defaults, then `file` (if any), then `TWINFLOW_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_SETTINGS,
            config::FileFormat::Yaml,
        ));
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).required(true));
        }
        b = b.add_source(config::Environment::with_prefix("TWINFLOW").try_parsing(true));
        let s: Settings = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| SettingsError(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "http_addr \"{}\" is not an address like 127.0.0.1:8000",
                self.http_addr
            ));
        }
        if self.restart_budget == 0 {
            problems.push("restart_budget must be at least 1".to_string());
        }
        for (name, v) in [
            ("restart_window_secs", self.restart_window_secs),
            ("shutdown_timeout_secs", self.shutdown_timeout_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                problems.push(format!(
                    "{name} must be a positive number of seconds, got {v}"
                ));
            }
        }
        if self.restart_backoff_initial_ms == 0
            || self.restart_backoff_max_ms < self.restart_backoff_initial_ms
        {
            problems.push(
                "restart_backoff_initial_ms must be ≥ 1 and ≤ restart_backoff_max_ms".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError(problems.join("; ")))
        }
    }

    pub fn restart_window(&self) -> Duration {
        Duration::from_secs_f64(self.restart_window_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_timeout_secs)
    }

    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        // The built-in defaults always parse (a unit test holds this).
        config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_SETTINGS,
                config::FileFormat::Yaml,
            ))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("config/default.yaml is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let s = Settings::default();
        assert_eq!(s.http_addr, "127.0.0.1:8000");
        assert_eq!(s.restart_budget, 5);
        assert!(s.check().is_ok());
    }

    #[test]
    fn a_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.yaml");
        std::fs::write(&f, "http_addr: 127.0.0.1:9100\nrestart_budget: 2\n").unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.http_addr, "127.0.0.1:9100");
        assert_eq!(s.restart_budget, 2);
        assert_eq!(s.log_level, Settings::default().log_level);
    }

    #[test]
    fn bad_values_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.yaml");
        std::fs::write(&f, "http_addr: nowhere\nrestart_budget: 0\n").unwrap();
        let e = Settings::load(Some(&f)).unwrap_err().to_string();
        assert!(
            e.contains("http_addr") && e.contains("restart_budget"),
            "{e}"
        );
    }
}
