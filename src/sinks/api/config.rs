//! Settings of the `api` node and the checks serde cannot express.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::state::ApiState;

fn default_history() -> usize {
    10_000
}

fn default_recent_alerts() -> usize {
    200
}

fn default_event_buffer() -> usize {
    1024
}

fn default_max_body() -> usize {
    64 * 1024
}

fn yes() -> bool {
    true
}

/// Settings of an `api` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Id of the `predictor` node whose model answers `POST /predict`;
    /// default: the pipeline's only predictor.
    #[serde(default)]
    pub predictor: Option<String>,
    /// Rows of history kept in memory per unit (oldest dropped first).
    #[serde(default = "default_history")]
    pub history_per_unit: usize,
    /// Resolved and firing alerts kept for `GET /api/alerts` (newest first).
    #[serde(default = "default_recent_alerts")]
    pub recent_alerts: usize,
    /// Events buffered for server-sent-event clients; a client further
    /// behind than this skips ahead rather than slowing the pipeline.
    #[serde(default = "default_event_buffer")]
    pub event_buffer: usize,
    /// Environment variable holding the bearer token required by mutating
    /// endpoints (`POST /predict`); unset: no authentication.
    #[serde(default)]
    pub auth_token_env: Option<String>,
    /// File holding that token (first line; relative to the pipeline file).
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// Origins allowed to call the API from a browser page served elsewhere
    /// (`https://scada.example`, or `*`); empty (default): no CORS headers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, bytes; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Serve the dashboard at `/`.
    #[serde(default = "yes")]
    pub dashboard: bool,
    /// Shared by the HTTP routes and every build of the node, so a restart
    /// of the component keeps its history and its connected clients.
    #[serde(skip)]
    pub(crate) shared: Arc<OnceLock<Arc<ApiState>>>,
}

impl ApiConfig {
    /// The node's state, made on first use with this config's sizes.
    pub fn state(&self) -> Arc<ApiState> {
        self.shared
            .get_or_init(|| {
                Arc::new(ApiState::new(
                    self.history_per_unit,
                    self.recent_alerts,
                    self.event_buffer,
                ))
            })
            .clone()
    }

    pub(crate) fn check(&self, base_dir: &Path, problems: &mut Vec<String>) {
        if self.history_per_unit == 0 {
            problems.push("history_per_unit must be at least 1".into());
        }
        if self.event_buffer == 0 {
            problems.push("event_buffer must be at least 1".into());
        }
        if self.max_body_bytes < 256 {
            problems.push(format!(
                "max_body_bytes {} is too small for a sensor payload (at least 256)",
                self.max_body_bytes
            ));
        }
        for o in &self.cors_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                problems.push(format!(
                    "cors_origins: \"{o}\" is not an origin (scheme://host[:port], or *)"
                ));
            } else if o.ends_with('/') {
                problems.push(format!(
                    "cors_origins: \"{o}\" must not end with '/' (browsers send origins without it)"
                ));
            }
        }
        if let Err(e) = self.auth_token(base_dir) {
            problems.push(e);
        }
    }

    /// The bearer token, when authentication is configured. An unset
    /// variable or an empty file is an error rather than "no auth": a typo
    /// must not leave the API open.
    pub(crate) fn auth_token(&self, base_dir: &Path) -> Result<Option<String>, String> {
        match (&self.auth_token_env, &self.auth_token_file) {
            (Some(_), Some(_)) => Err("give auth_token_env or auth_token_file, not both".into()),
            (Some(var), None) => match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
                _ => Err(format!(
                    "auth_token_env: the environment variable {var} is not set or empty"
                )),
            },
            (None, Some(file)) => {
                let path = if file.is_absolute() {
                    file.clone()
                } else {
                    base_dir.join(file)
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("auth_token_file: cannot read {}: {e}", path.display()))?;
                match text.lines().next().map(str::trim) {
                    Some(t) if !t.is_empty() => Ok(Some(t.to_string())),
                    _ => Err(format!(
                        "auth_token_file: {} holds no token on its first line",
                        path.display()
                    )),
                }
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ApiConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults() {
        let c = parse("{}");
        assert_eq!(c.history_per_unit, 10_000);
        assert_eq!(c.max_body_bytes, 65_536);
        assert!(c.cors_origins.is_empty());
        assert!(c.dashboard);
        let mut p = Vec::new();
        c.check(Path::new("."), &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let c = parse(
            "{history_per_unit: 0, max_body_bytes: 10, cors_origins: [example.com, 'http://a/'],
              auth_token_env: TWINFLOW_TEST_SURELY_UNSET_VAR}",
        );
        let mut p = Vec::new();
        c.check(Path::new("."), &mut p);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p
            .iter()
            .any(|m| m.contains("TWINFLOW_TEST_SURELY_UNSET_VAR")));
    }

    #[test]
    fn token_file_relative_to_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let c = parse("{auth_token_file: token}");
        assert_eq!(c.auth_token(dir.path()).unwrap().as_deref(), Some("s3cret"));
        std::fs::write(dir.path().join("token"), "\n").unwrap();
        assert!(c.auth_token(dir.path()).is_err());
    }

    #[test]
    fn state_is_shared_by_clones() {
        let c = parse("{history_per_unit: 7}");
        let d = c.clone();
        assert!(Arc::ptr_eq(&c.state(), &d.state()));
    }
}
