//! twinflow under test, for the API and browser tests: the binary on a free
//! port with a pipeline, killed if the test fails before stopping it, and
//! HTTP helpers that wait for conditions instead of sleeping.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::services::Twinflow;

pub struct Engine {
    tf: Option<Twinflow>,
    pub base: String,
    http: Option<reqwest::blocking::Client>,
}

impl Engine {
    pub fn start(pipeline: &str, envs: &[(&str, &str)]) -> Engine {
        let tf = Twinflow::spawn(&["run", pipeline], envs);
        let base = tf.base.clone();
        Engine {
            tf: Some(tf),
            base,
            http: Some(
                reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap(),
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        self.http.as_ref().expect("running")
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client()
            .get(self.url(path))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn json(&self, path: &str) -> Value {
        let r = self.get(path);
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    pub fn post(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value) {
        let (status, text) = self.post_text(path, body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The status and the body text of a JSON POST.
    pub fn post_text(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, String) {
        let r = self
            .client()
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    }

    /// Polls `path` until `cond` holds on its JSON; panics with the last
    /// answer after `within`.
    pub fn wait_json(
        &self,
        path: &str,
        what: &str,
        within: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.json(path);
            if cond(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last answer of {path}: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; the exit code.
    pub fn stop(mut self, within: Duration) -> i32 {
        self.tf.take().expect("running").terminate(within)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(tf) = self.tf.take() {
            tf.kill_9();
        }
        // A blocking client must not be dropped on an async runtime's
        // thread (the browser tests hold an Engine there).
        if let Some(c) = self.http.take() {
            let _ = std::thread::spawn(move || drop(c)).join();
        }
    }
}

/// The number after the first `"key":` of a JSON text, parsed with a
/// correctly rounded parser. serde_json's default float parsing may be one
/// unit in the last place off, which an exact comparison would catch.
pub fn raw_number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let tail = json[at..].trim_start();
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(tail.len());
    tail[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

/// Where tests leave what a person may want to look at afterwards
/// (screenshots): `target/artifacts/`.
pub fn artifacts_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
