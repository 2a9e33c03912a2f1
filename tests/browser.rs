//! The dashboard in a real browser: headless Chromium through chromedriver
//! (WebDriver). The page must load without a console error, show live
//! values that change, draw its charts, drift and alerts, the history and
//! the pipeline; the what-if form must answer exactly what `POST /predict`
//! answers. Screenshots go to `target/artifacts/`.

#[path = "support/browser.rs"]
mod browser;
mod common;
#[path = "support/engine.rs"]
mod engine;

use std::time::Duration;

use serde_json::{json, Value};

use browser::{Browser, Driver};
use engine::{artifacts_dir, raw_number, Engine};

const WAIT: Duration = Duration::from_secs(30);

/// Fails with both error sources when the page reported anything.
async fn assert_no_errors(b: &Browser) {
    let page = b.page_errors().await;
    let console = b.console_errors().await;
    assert!(
        page.is_empty() && console.is_empty(),
        "the page reported errors: {page:?}; browser console: {console:?}"
    );
}

/// Waits until a canvas has more than `min` pixels that are not
/// transparent: its chart was drawn (drawing happens on an animation frame,
/// after the data arrived).
async fn wait_inked(b: &Browser, selector: &str, min: u64) {
    let expr = format!(
        "(() => {{ const c = document.querySelector('{selector}');
             if (!c || !c.width) return false;
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
             return n > {min}; }})()"
    );
    b.wait_for(&format!("a chart drawn in {selector}"), WAIT, &expr)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_dashboard_history_and_pipeline() {
    // First, so that a machine without a browser fails at once.
    let driver = Driver::start();
    // Small drift windows and an alert that fires at once, so every panel
    // has something to show within seconds.
    let e = tokio::task::spawn_blocking(|| {
        let e = Engine::start(
            "pipelines/api-demo.yaml",
            &[
                ("TWINFLOW_DEMO_RATE_HZ", "10"),
                ("TWINFLOW_DEMO_LEARN_FRAMES", "50"),
                ("TWINFLOW_DEMO_WINDOW", "50"),
                ("TWINFLOW_DEMO_STEP", "10"),
                ("TWINFLOW_DEMO_UCAOT_LIMIT", "5"),
                ("TWINFLOW_DEMO_UCAOT_CLEAR", "4"),
                ("TWINFLOW_DEMO_ALERT_FOR", "0s"),
            ],
        );
        e.wait_json("/api/drift", "a drift report per unit", WAIT, |v| {
            v["reports"].as_array().unwrap().len() == 3
        });
        e
    })
    .await
    .unwrap();
    let b = driver.session(1440, 1320).await;
    b.goto(&e.base).await;
    b.wait_for("the dashboard to start", WAIT, "window.__twinflow.ready")
        .await;
    b.wait_for("live events", WAIT, "window.__twinflow.events > 10")
        .await;

    // Live values change: the predicted UCAOT of the selected unit moves.
    let first = b
        .wait_for(
            "a live UCAOT",
            WAIT,
            "document.querySelector('#kpi-UCAOT .pred').dataset.value",
        )
        .await;
    let expr = format!(
        "(() => {{ const v = document.querySelector('#kpi-UCAOT .pred').dataset.value; \
         return v && v !== {first} ? v : null; }})()"
    );
    let second = b.wait_for("UCAOT to change", WAIT, &expr).await;
    assert_ne!(first, second);
    let shown: f64 = b
        .js("return document.querySelector('#kpi-UCAOT .pred').textContent")
        .await
        .as_str()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!((5.0..40.0).contains(&shown), "UCAOT shown as {shown}");
    let chips = b
        .js("return [...document.querySelectorAll('#unit-chips .chip')].map(c => c.dataset.unit)")
        .await;
    assert_eq!(chips, json!(["uc-01", "uc-02", "uc-03"]));

    // The charts have drawn lines, drift lists every input with its PSI,
    // the alert rule's alerts are listed.
    for chart in ["chart-aot", "chart-tin"] {
        wait_inked(&b, &format!("#{chart} canvas"), 2000).await;
    }
    let drift_rows = b
        .wait_for(
            "the drift table",
            WAIT,
            "document.querySelectorAll('#drift-body tbody tr').length",
        )
        .await;
    assert_eq!(drift_rows, 6);
    let psi = b
        .js("return document.querySelector('#drift-body tbody tr td:nth-child(3)').textContent")
        .await;
    assert!(
        psi.as_str().unwrap().parse::<f64>().is_ok(),
        "PSI shown as {psi}"
    );
    b.wait_for(
        "active alerts",
        WAIT,
        "document.querySelectorAll('#alerts-active li.warning').length",
    )
    .await;
    let dir = artifacts_dir();
    b.screenshot(&dir.join("dashboard-live.png")).await;

    // History: a range with rows, its charts and the CSV link.
    b.click("tab-btn-history").await;
    b.wait_for(
        "history rows",
        WAIT,
        "/rows/.test(document.getElementById('h-meta').textContent)",
    )
    .await;
    wait_inked(&b, "#history-charts .chart canvas", 2000).await;
    let href = b
        .js("return document.getElementById('h-csv').href")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        href.contains("format=csv") && href.contains("unit=uc-01"),
        "{href}"
    );
    let csv = reqwest::get(&href).await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.text().await.unwrap().starts_with("ts,unit,"));
    b.screenshot(&dir.join("dashboard-history.png")).await;

    // Pipeline: every node, with live rates.
    b.click("tab-btn-pipeline").await;
    b.wait_for(
        "the graph with rates",
        WAIT,
        "document.querySelectorAll('#p-graph g.node').length === 5 && \
         ![...document.querySelectorAll('#p-graph .n-rate')].some(t => t.textContent.includes('…'))",
    )
    .await;
    b.screenshot(&dir.join("dashboard-pipeline.png")).await;

    // A phone-sized window: the layout stacks.
    b.click("tab-btn-live").await;
    b.client.set_window_size(420, 1600).await.unwrap();
    b.wait_for(
        "one chart per row",
        WAIT,
        "document.querySelector('#chart-aot').getBoundingClientRect().width > 300",
    )
    .await;
    b.screenshot(&dir.join("dashboard-narrow.png")).await;

    assert_no_errors(&b).await;
    b.close().await;
    tokio::task::spawn_blocking(move || assert_eq!(e.stop(Duration::from_secs(20)), 0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_if_form_answers_like_post_predict() {
    let driver = Driver::start();
    let e = tokio::task::spawn_blocking(|| Engine::start("tests/pipelines/api.yaml", &[]))
        .await
        .unwrap();
    let b = driver.session(1280, 1000).await;
    b.goto(&format!("{}/#predict", e.base)).await;
    b.wait_for("the dashboard to start", WAIT, "window.__twinflow.ready")
        .await;

    let inputs = [
        ("UCWIT", "8.25"),
        ("UCAIT", "27.5"),
        ("UCWF", "12"),
        ("UCAIH", "65"),
        ("AMBT", "30"),
        ("UCTSP", "22"),
    ];
    for (k, v) in inputs {
        b.type_into(&format!("f-{k}"), v).await;
    }
    b.click("predict-btn").await;
    b.wait_for(
        "the form's prediction",
        WAIT,
        "JSON.parse(document.getElementById('predict-raw').textContent || '{}').inputs?.UCWIT === 8.25",
    )
    .await;
    let body: Value = inputs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.parse::<f64>().unwrap())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let api = reqwest::Client::new()
        .post(format!("{}/predict", e.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for k in ["UCAOT", "UCWOT", "UCAF", "Q_thermal"] {
        let shown = b
            .js(&format!(
                "return document.getElementById('out-{k}').dataset.value"
            ))
            .await;
        let shown: f64 = shown.as_str().unwrap().parse().unwrap();
        assert_eq!(
            shown,
            raw_number(&api, k),
            "{k}: form vs POST /predict {api}"
        );
    }
    let diagram = b
        .js("return ['d-UCAIT','d-UCAOT','d-UCWIT','d-UCWOT','d-Q'].map(id => document.getElementById(id).textContent)")
        .await;
    assert_eq!(diagram[0], "27.5 °C", "{diagram}");
    assert!(diagram[4].as_str().unwrap().ends_with(" kW"), "{diagram}");
    let regime = b
        .js("return document.getElementById('regime').textContent")
        .await;
    assert!(regime.as_str().unwrap().contains("coil"), "{regime}");
    let dir = artifacts_dir();
    b.screenshot(&dir.join("dashboard-what-if.png")).await;
    assert_no_errors(&b).await;

    // Bad fields: the engine's 422 is shown beside each field.
    b.type_into("f-UCWF", "abc").await;
    b.type_into("f-UCAIH", "150").await;
    b.click("predict-btn").await;
    b.wait_for(
        "field errors",
        WAIT,
        "document.querySelectorAll('#predict-form .field.invalid').length === 2",
    )
    .await;
    let msgs = b
        .js("return ['UCWF','UCAIH'].map(f => document.querySelector(`.err[data-for=\"${f}\"]`).textContent)")
        .await;
    assert!(
        msgs[0].as_str().unwrap().contains("must be a number"),
        "{msgs}"
    );
    assert!(msgs[1].as_str().unwrap().contains("out of range"), "{msgs}");
    b.screenshot(&dir.join("dashboard-what-if-errors.png"))
        .await;

    // The browser logs the 422 answer itself; nothing else may appear.
    assert!(b.page_errors().await.is_empty());
    let console = b.console_errors().await;
    assert!(
        console
            .iter()
            .all(|m| m.contains("/predict") && m.contains("422")),
        "{console:?}"
    );
    b.close().await;
    tokio::task::spawn_blocking(move || drop(e)).await.unwrap();
}
