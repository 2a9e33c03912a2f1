//! Interop: `twinflow simulate --bacnet` as the device a BACnet client (here
//! bacpypes3, through `tests/support/bacnet_client.py`) has in front of it:
//! unicast discovery, ReadProperty, ReadPropertyMultiple, the object list,
//! commanding a prediction point and relinquishing it, live values, sensor
//! faults as status flags, and a clean exit on SIGTERM. Loopback unicast only.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::services::{bacnet_client, SimulatedBacnet as Simulated};

/// Generous: the tests must pass on a loaded two-core machine.
const WAIT: Duration = Duration::from_secs(60);

const INPUTS: [(&str, &str); 6] = [
    ("UCWIT", "degreesCelsius"),
    ("UCAIT", "degreesCelsius"),
    ("UCWF", "litersPerMinute"),
    ("UCAIH", "percentRelativeHumidity"),
    ("AMBT", "degreesCelsius"),
    ("UCTSP", "degreesCelsius"),
];

fn read(target: &str, object: &str, property: &str) -> Value {
    client(&["read", "--target", target, object, property])
}

/// One `bacnet_client.py` call; its JSON answer.
fn client(args: &[&str]) -> Value {
    bacnet_client(args)
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_bacpypes3_client_discovers_reads_and_commands_the_simulated_device() {
    let sim = Simulated::start(4321, 1, &["--rate-hz", "5", "--seed", "7"]);
    let t = sim.target(0);

    // Discovery: a unicast Who-Is for the instance finds it.
    let i_am = client(&["whois", "--target", &t, "--device-id", "4321"]);
    assert_eq!(i_am["device_id"], 4321, "{i_am}");
    assert_eq!(i_am["max_apdu"], 1476, "{i_am}");
    assert_eq!(i_am["source"], t.as_str(), "{i_am}");

    // ReadProperty: present-value and units.
    let ucwit = number(&read(&t, "analogInput:0", "presentValue"));
    assert!((5.0..10.0).contains(&ucwit), "UCWIT {ucwit}");
    assert_eq!(read(&t, "analogInput:0", "units"), json!("degreesCelsius"));
    assert_eq!(
        read(&t, "analogInput:0", "statusFlags"),
        json!([0, 0, 0, 0])
    );

    // ReadPropertyMultiple: the six inputs with their units.
    let specs: Vec<String> = (0..6)
        .map(|i| format!("analogInput:{i}:presentValue,units,objectName"))
        .collect();
    let mut args = vec!["rpm", "--target", t.as_str()];
    args.extend(specs.iter().map(String::as_str));
    let rpm = client(&args);
    for (i, (name, units)) in INPUTS.iter().enumerate() {
        let o = &rpm[format!("analogInput:{i}")];
        assert_eq!(o["objectName"], *name, "{rpm}");
        assert_eq!(o["units"], *units, "{rpm}");
        assert!(number(&o["presentValue"]).is_finite(), "{rpm}");
    }

    // The object list: the device, 9 analogInputs, 4 analogValues.
    let objects = client(&["objects", "--target", &t, "--device-id", "4321"]);
    let objects = objects.as_array().unwrap();
    assert_eq!(objects.len(), 14, "{objects:?}");
    let has = |object: &str, name: &str, units: Value| {
        objects.iter().any(|o| {
            o["object"] == object && o["name"] == name && (units.is_null() || o["units"] == units)
        })
    };
    assert!(has("device:4321", "uc-01", Value::Null), "{objects:?}");
    for (i, (name, units)) in INPUTS.iter().enumerate() {
        assert!(
            has(&format!("analogInput:{i}"), name, json!(units)),
            "{objects:?}"
        );
    }
    for (i, name, units) in [
        (6, "UCAOT", "degreesCelsius"),
        (7, "UCWOT", "degreesCelsius"),
        (8, "UCAF", "cubicMetersPerHour"),
    ] {
        assert!(
            has(&format!("analogInput:{i}"), name, json!(units)),
            "{objects:?}"
        );
    }
    for (i, name, units) in [
        (0, "UCAOT_pred", "degreesCelsius"),
        (1, "UCWOT_pred", "degreesCelsius"),
        (2, "UCAF_pred", "cubicMetersPerHour"),
        (3, "Q_thermal_pred", "kilowatts"),
    ] {
        assert!(
            has(&format!("analogValue:{i}"), name, json!(units)),
            "{objects:?}"
        );
    }
    assert_eq!(
        read(&t, "device:4321", "modelName"),
        json!("twinflow simulated unit cooler")
    );

    // Commanding a prediction point at priority 16, as a writer does.
    let w = client(&[
        "write",
        "--target",
        &t,
        "analogValue:0",
        "presentValue",
        "18.5",
        "--priority",
        "16",
    ]);
    assert_eq!(w["ok"], true, "{w}");
    let mut expected = vec![Value::Null; 16];
    expected[15] = json!(18.5);
    assert_eq!(
        read(&t, "analogValue:0", "priorityArray"),
        Value::Array(expected)
    );
    assert_eq!(read(&t, "analogValue:0", "presentValue"), json!(18.5));
    // Relinquishing the slot: back to the relinquish default.
    client(&[
        "write",
        "--target",
        &t,
        "analogValue:0",
        "presentValue",
        "null",
        "--priority",
        "16",
    ]);
    assert_eq!(
        read(&t, "analogValue:0", "priorityArray"),
        Value::Array(vec![Value::Null; 16])
    );
    assert_eq!(read(&t, "analogValue:0", "presentValue"), json!(0.0));
    assert_eq!(read(&t, "analogValue:0", "relinquishDefault"), json!(0.0));

    // The inputs live: the return-air reading changes as the plant runs.
    let first = number(&read(&t, "analogInput:1", "presentValue"));
    let deadline = Instant::now() + WAIT;
    loop {
        let now = number(&read(&t, "analogInput:1", "presentValue"));
        if now != first {
            assert!((15.0..35.0).contains(&now), "UCAIT {now}");
            break;
        }
        assert!(Instant::now() < deadline, "UCAIT stayed at {first}");
    }

    assert_eq!(sim.terminate(), 0, "exit status after SIGTERM");
}

#[test]
fn a_faulty_sensor_shows_as_fault_on_every_units_device() {
    // UCAIT reads NaN from the start, on every unit.
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("fault.yaml");
    std::fs::write(
        &scenario,
        "scenarios:\n  - {kind: sensor_fault, feature: UCAIT, mode: nan, start_after_s: 0}\n",
    )
    .unwrap();
    let sim = Simulated::start(
        700,
        2,
        &[
            "--rate-hz",
            "5",
            "--scenario-file",
            scenario.to_str().unwrap(),
        ],
    );
    for unit in 0..2 {
        let t = sim.target(unit);
        // Unit i is device 700 + i on port + i.
        let i_am = client(&["whois", "--target", &t]);
        assert_eq!(i_am["device_id"], 700 + unit, "{i_am}");
        let rpm = client(&[
            "rpm",
            "--target",
            &t,
            "analogInput:1:presentValue,statusFlags,reliability",
            "analogInput:0:statusFlags,reliability",
        ]);
        let faulty = &rpm["analogInput:1"];
        // Fault, in service. (inAlarm is set too: Event_State goes to FAULT,
        // and Status_Flags' inAlarm is "Event_State is not NORMAL".)
        assert_eq!(faulty["statusFlags"][1], 1, "{rpm}");
        assert_eq!(faulty["statusFlags"][3], 0, "{rpm}");
        assert_eq!(faulty["reliability"], "unreliableOther", "{rpm}");
        // Never a NaN on the wire.
        assert!(number(&faulty["presentValue"]).is_finite(), "{rpm}");
        let fine = &rpm["analogInput:0"];
        assert_eq!(fine["statusFlags"], json!([0, 0, 0, 0]), "{rpm}");
        assert_eq!(fine["reliability"], "noFaultDetected", "{rpm}");
    }
    assert_eq!(sim.terminate(), 0);
}

#[test]
fn bad_arguments_exit_2() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_twinflow"))
            .arg("simulate")
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &[][..],
        &["--bacnet", "127.0.0.1:47808", "--csv", "x.csv"][..],
        &["--bacnet", "not-an-address"][..],
        &["--bacnet", "127.0.0.1:0"][..],
        &["--device-id", "5"][..],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!Path::new("x.csv").exists());
}
