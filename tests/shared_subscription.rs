//! Two twinflow instances share one MQTT subscription
//! (`pipelines/mqtt-shared.yaml`) on a real Mosquitto: every reading is
//! predicted, none twice, and both instances take a share of the load. The
//! same run shows what deploy/README.md says about per-unit state: Mosquitto
//! hands out readings round robin, so every unit's readings reach both
//! instances.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::metric_value;
use common::services::{publish, Mosquitto, Subscriber, Twinflow};

const READINGS: usize = 4000;
/// Three units over two topics make the round robin alternate units between
/// the instances (with four, `k % 4` on alternating topics would pin each
/// unit to one instance by coincidence).
const UNITS: usize = 3;
const LONG: Duration = Duration::from_secs(60);

/// An instance, killed when the test ends unless it was stopped before.
struct Instance(Option<Twinflow>);

impl Instance {
    fn start(broker: &Mosquitto, client_id: &str, protocol: &str) -> Instance {
        Instance(Some(Twinflow::spawn(
            &["run", "pipelines/mqtt-shared.yaml"],
            &[
                ("TWINFLOW_MQTT_URL", &broker.url()),
                ("TWINFLOW_MQTT_CLIENT_ID", client_id),
                ("TWINFLOW_MQTT_PROTOCOL", protocol),
            ],
        )))
    }

    fn metrics(&self) -> String {
        self.0.as_ref().unwrap().metrics()
    }

    fn value(&self, metric: &str, labels: &[&str]) -> f64 {
        metric_value(&self.metrics(), metric, labels).unwrap_or(0.0)
    }

    fn units_predicted(&self) -> BTreeSet<String> {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("twinflow_prediction{"))
            .filter_map(|l| l.split("unit=\"").nth(1))
            .filter_map(|r| r.split('"').next())
            .map(str::to_string)
            .collect()
    }

    fn stop(&mut self) -> i32 {
        self.0.take().unwrap().terminate(LONG)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut tf) = self.0.take() {
            let _ = tf.child.kill();
            let _ = tf.child.wait();
        }
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every prediction received, as (unit, ts); duplicates kept.
fn predictions(sub: &Subscriber) -> Vec<(String, String)> {
    sub.on("hvac/predictions/results")
        .iter()
        .map(|m| {
            let p = &m["payload"];
            (
                p["unit"].as_str().unwrap_or_default().to_string(),
                p["ts"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn two_instances_split_a_shared_subscription_without_loss_or_duplicates_mqtt5() {
    split_between_two_instances("5");
}

#[test]
fn two_instances_split_a_shared_subscription_without_loss_or_duplicates_mqtt311() {
    split_between_two_instances("3.1.1");
}

fn split_between_two_instances(protocol: &str) {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/predictions/results", "hvac/status/#"]);
    let mut a = Instance::start(&broker, "twinflow-a", protocol);
    let mut b = Instance::start(&broker, "twinflow-b", protocol);
    sub.wait_until(LONG, "both instances online", |m| {
        ["hvac/status/twinflow-a", "hvac/status/twinflow-b"]
            .iter()
            .all(|t| {
                m.iter()
                    .any(|m| m["topic"] == *t && m["payload"]["status"] == "online")
            })
    });
    // Each ingest subscribes as soon as its connection is up; until both have,
    // the group has one member, which would get every reading.
    let sensors = ["component_id=\"sensors\""];
    wait_until("both ingest connections", || {
        [&a, &b]
            .iter()
            .all(|i| i.value("twinflow_mqtt_connected", &sensors) == 1.0)
    });

    let count = READINGS.to_string();
    let units = UNITS.to_string();
    publish(broker.port, &["--count", &count, "--units", &units]);

    // Nothing lost: every reading predicted.
    // mqtt_pub.py's reading k: unit uc-{k % units}, ts 2026-01-01T00:00:00Z + k s.
    let t0 = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let expected: BTreeSet<(String, String)> = (0..READINGS)
        .map(|k| {
            let ts = t0 + chrono::Duration::seconds(k as i64);
            (
                format!("uc-{:02}", k % UNITS),
                ts.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
        })
        .collect();
    wait_until("every reading predicted", || {
        predictions(&sub).into_iter().collect::<BTreeSet<_>>() == expected
    });
    // Both pipelines have handed everything they took in to their publisher,
    // so a duplicate would be on its way by now.
    let received = |i: &Instance, node: &str| {
        i.value(
            "twinflow_component_received_events_total",
            &[&format!("component_id=\"{node}\"")],
        )
    };
    wait_until("both pipelines drained", || {
        [&a, &b].iter().all(|i| {
            let taken = received(i, "sensors");
            taken > 0.0 && received(i, "publish") == taken
        })
    });
    // Nothing twice: as many predictions as readings, on the wire and in
    // the instances' counters.
    let (ra, rb) = (received(&a, "sensors"), received(&b, "sensors"));
    wait_until("the subscriber to catch up", || {
        predictions(&sub).len() >= READINGS
    });
    let all = predictions(&sub);
    assert_eq!(all.len(), READINGS, "duplicates in a failure-free run");
    assert_eq!(ra + rb, READINGS as f64, "a: {ra}, b: {rb}");

    // The load is split.
    let share = ra / (ra + rb);
    eprintln!(
        "MQTT {protocol}: instance a took {ra} readings, b {rb} ({:.1} % / {:.1} %)",
        share * 100.0,
        (1.0 - share) * 100.0
    );
    assert!(share > 0.2 && share < 0.8, "a: {ra}, b: {rb}");

    // And so is every unit: per-unit state would be split between the
    // instances (deploy/README.md, "Scaling past one machine").
    let all_units: BTreeSet<String> = (0..UNITS).map(|u| format!("uc-{u:02}")).collect();
    assert_eq!(a.units_predicted(), all_units);
    assert_eq!(b.units_predicted(), all_units);

    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
}

/// With persistent sessions a stopped member stays in the group: Mosquitto
/// keeps dispatching its share to its session, where it waits until the
/// instance returns. Nothing is lost, but the others do not take over
/// (deploy/README.md says so; this is the evidence).
#[test]
fn a_stopped_instance_share_waits_for_it_at_the_broker() {
    const N: usize = 400;
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/predictions/results"]);
    let a = Instance::start(&broker, "twinflow-a", "5");
    let mut b = Instance::start(&broker, "twinflow-b", "5");
    let sensors = ["component_id=\"sensors\""];
    wait_until("both ingest connections", || {
        [&a, &b]
            .iter()
            .all(|i| i.value("twinflow_mqtt_connected", &sensors) == 1.0)
    });
    // A clean stop: b's session, and with it its group membership, stays.
    assert_eq!(b.stop(), 0);
    let count = N.to_string();
    publish(broker.port, &["--count", &count, "--units", "3"]);
    wait_until("a's share predicted", || predictions(&sub).len() >= N / 2);

    let b = Instance::start(&broker, "twinflow-b", "5");
    wait_until("every reading predicted", || {
        predictions(&sub).into_iter().collect::<BTreeSet<_>>().len() == N
    });
    // a never took b's share: b's fresh process received it from its session.
    let received = |i: &Instance| i.value("twinflow_component_received_events_total", &sensors);
    assert_eq!(received(&a), (N / 2) as f64);
    assert_eq!(received(&b), (N / 2) as f64);
}
