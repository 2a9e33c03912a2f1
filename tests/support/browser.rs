//! A headless browser driven through WebDriver, for the dashboard tests:
//! Chromium with chromedriver (Debian's `chromium` and `chromium-driver`),
//! or, with `TWINFLOW_BROWSER=firefox`, Firefox with geckodriver. A missing
//! browser fails the test with what to install: a skipped browser test
//! would pass unseen.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

const CHROMIUM_HINT: &str = "the dashboard tests need Chromium and its WebDriver (Debian: \
     `apt-get install chromium chromium-driver`; .ci/run installs them)";
const FIREFOX_HINT: &str = "TWINFLOW_BROWSER=firefox needs Firefox and geckodriver (Debian: \
     `apt-get install firefox-esr`; geckodriver: `cargo install geckodriver`)";

fn require(env: &str, names: &[&str], hint: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return p.into();
    }
    on_path(names).unwrap_or_else(|| {
        panic!(
            "{} is not installed: {hint}, or set {env} to the binary",
            names[0]
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chromium,
    Firefox,
}

/// A WebDriver server of the test's own, on a free port.
pub struct Driver {
    child: Child,
    pub port: u16,
    pub kind: Kind,
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Driver {
    pub fn start() -> Driver {
        let kind = match std::env::var("TWINFLOW_BROWSER").as_deref() {
            Ok("firefox") => Kind::Firefox,
            Ok("chromium") | Err(_) => Kind::Chromium,
            Ok(other) => panic!("TWINFLOW_BROWSER={other}: chromium (default) or firefox"),
        };
        let (binary, driver) = match kind {
            Kind::Chromium => (
                require(
                    "TWINFLOW_CHROMIUM",
                    &["chromium", "chromium-browser", "google-chrome"],
                    CHROMIUM_HINT,
                ),
                require("TWINFLOW_CHROMEDRIVER", &["chromedriver"], CHROMIUM_HINT),
            ),
            Kind::Firefox => (
                require(
                    "TWINFLOW_FIREFOX",
                    &["firefox-esr", "firefox"],
                    FIREFOX_HINT,
                ),
                require("TWINFLOW_GECKODRIVER", &["geckodriver"], FIREFOX_HINT),
            ),
        };
        let port = crate::common::services::free_port();
        let profile = tempfile::tempdir().unwrap();
        // Kept only if the test fails (see Drop).
        let log = profile.path().join("webdriver.log");
        let mut cmd = Command::new(&driver);
        match kind {
            Kind::Chromium => cmd
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg(format!("--log-path={}", log.display()))
                .stderr(Stdio::null()),
            Kind::Firefox => cmd
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stderr(std::fs::File::create(&log).unwrap()),
        };
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port}",
                driver.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            port,
            kind,
            binary,
            profile,
        }
    }

    fn capabilities(&self, width: u32, height: u32) -> Value {
        match self.kind {
            Kind::Chromium => {
                let args = [
                    "--headless".to_string(),
                    "--no-sandbox".into(),
                    "--disable-gpu".into(),
                    "--disable-quic".into(),
                    "--no-first-run".into(),
                    "--disable-background-networking".into(),
                    "--disable-component-update".into(),
                    "--disable-sync".into(),
                    "--disable-dev-shm-usage".into(),
                    "--force-device-scale-factor=1".into(),
                    "--hide-scrollbars".into(),
                    format!("--window-size={width},{height}"),
                    format!(
                        "--user-data-dir={}",
                        self.profile.path().join("chromium").display()
                    ),
                ];
                json!({
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": self.binary, "args": args},
                    "goog:loggingPrefs": {"browser": "ALL"},
                })
            }
            // Nothing may call out: no captive-portal probe, no updates, no
            // safe-browsing lists (the test machine may have no internet).
            Kind::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": self.binary,
                    "args": ["-headless", format!("--width={width}"), format!("--height={height}")],
                    "prefs": {
                        "network.captive-portal-service.enabled": false,
                        "network.connectivity-service.enabled": false,
                        "app.update.enabled": false,
                        "browser.safebrowsing.malware.enabled": false,
                        "browser.safebrowsing.phishing.enabled": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "toolkit.telemetry.enabled": false,
                        "network.trr.mode": 5
                    }
                }
            }),
        }
    }

    /// A new headless browser session.
    pub async fn session(&self, width: u32, height: u32) -> Browser {
        let caps = self
            .capabilities(width, height)
            .as_object()
            .unwrap()
            .clone();
        let url = format!("http://127.0.0.1:{}", self.port);
        let client = tokio::time::timeout(
            Duration::from_secs(45),
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .expect("the browser started within 45 s")
        .unwrap_or_else(|e| panic!("no WebDriver session from {url}: {e}"));
        Browser {
            client,
            driver: url,
            kind: self.kind,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let to = crate::engine::artifacts_dir().join(format!("webdriver-{}.log", self.port));
            let _ = std::fs::copy(self.profile.path().join("webdriver.log"), &to);
            eprintln!("WebDriver log: {}", to.display());
        }
    }
}

pub struct Browser {
    pub client: Client,
    driver: String,
    pub kind: Kind,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Evaluates `expr` until it is truthy; returns its value.
    pub async fn wait_for(&self, what: &str, within: Duration, expr: &str) -> Value {
        let deadline = Instant::now() + within;
        let script = format!("try {{ return ({expr}); }} catch (e) {{ return null; }}");
        loop {
            let v = self.js(&script).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let errors = self.page_errors().await;
                panic!("timed out after {within:?} waiting for {what} ({expr}); page errors: {errors:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("#{id}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click #{id}: {e}"));
    }

    /// Replaces the text of an input as a person would: clear, then type.
    pub async fn type_into(&self, id: &str, text: &str) {
        let e = self.client.find(Locator::Id(id)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// What the page's own error hook collected (errors, rejected promises,
    /// console.error, blocked loads).
    pub async fn page_errors(&self) -> Vec<String> {
        let v = self
            .js("return (window.__twinflow && window.__twinflow.errors) || ['no error hook: app.js did not run'];")
            .await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// SEVERE entries of the browser's console log, as chromedriver kept
    /// them (catches what happens before the page's hook exists, such as a
    /// script that does not parse). geckodriver keeps no such log: with
    /// Firefox only the page's own hook is read.
    pub async fn console_errors(&self) -> Vec<String> {
        if self.kind == Kind::Firefox {
            return Vec::new();
        }
        let id = self.client.session_id().await.unwrap().unwrap_or_default();
        let url = format!("{}/session/{id}/se/log", self.driver);
        let res = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("chromedriver answers the log request");
        let v: Value = res.json().await.expect("the log is JSON");
        let entries = v["value"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("chromedriver did not return the browser log: {v}"));
        entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// A PNG of the window; with Firefox the name gets a `-firefox` suffix.
    pub async fn screenshot(&self, path: &Path) {
        let path = match self.kind {
            Kind::Chromium => path.to_path_buf(),
            Kind::Firefox => {
                let stem = path.file_stem().unwrap().to_string_lossy();
                path.with_file_name(format!("{stem}-firefox.png"))
            }
        };
        let path = path.as_path();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
