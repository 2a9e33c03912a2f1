//! `twinflow validate`: every error kind, reported with file:line:column and
//! exit code 2; a valid file exits 0 with a one-line summary.

use std::process::Command;

fn validate(file: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_twinflow"))
        .arg("validate")
        .arg(format!("tests/pipelines/{file}"))
        .env_remove("TWINFLOW_TEST_SURELY_UNSET")
        .output()
        .expect("run twinflow");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 2 and a `file:line:col: ...needle...` line.
fn assert_error(file: &str, line: u64, needle: &str) -> String {
    let (code, _out, err) = validate(&format!("invalid/{file}"));
    assert_eq!(code, 2, "exit code for {file}; stderr:\n{err}");
    let prefix = format!("tests/pipelines/invalid/{file}:{line}:");
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(needle)),
        "expected a line starting {prefix} containing {needle:?}; got:\n{err}"
    );
    err
}

#[test]
fn valid_pipeline_prints_a_summary_and_exits_0() {
    let (code, out, err) = validate("valid.yaml");
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("valid pipeline \"valid-example\" with 4 nodes and 2 edges"),
        "{out}"
    );
}

#[test]
fn unknown_node_key() {
    assert_error("unknown_key.yaml", 7, "unknown field `modle`");
}

#[test]
fn unknown_top_level_key() {
    assert_error("unknown_top_key.yaml", 7, "channel_capacty");
}

#[test]
fn unknown_node_type_lists_known_types() {
    let err = assert_error(
        "unknown_type.yaml",
        5,
        "Unknown type \"kafka\" for node \"out\"",
    );
    assert!(
        err.contains("simulator") && err.contains("predictor"),
        "{err}"
    );
}

#[test]
fn duplicate_id() {
    assert_error(
        "duplicate_id.yaml",
        4,
        "Duplicate node id \"sim\" (first defined at line 2)",
    );
}

#[test]
fn input_naming_a_missing_node() {
    assert_error(
        "missing_input.yaml",
        6,
        "Input \"simulator\" for node \"out\" doesn't match any node.",
    );
}

#[test]
fn cycle_prints_the_chain() {
    let err = assert_error("cycle.yaml", 7, "Cycle in the graph:");
    assert!(
        err.contains("a -> b -> a") || err.contains("b -> a -> b"),
        "{err}"
    );
}

#[test]
fn message_type_mismatch_on_an_edge() {
    assert_error(
        "type_mismatch.yaml",
        9,
        "Node \"p2\" (predictor) accepts SensorFrame, but its input \"p1\" (predictor) emits Prediction | Alert.",
    );
}

#[test]
fn source_given_inputs() {
    assert_error(
        "source_with_inputs.yaml",
        6,
        "Source \"sim2\" (simulator) takes no inputs",
    );
}

#[test]
fn sink_without_inputs() {
    assert_error(
        "sink_without_inputs.yaml",
        4,
        "Sink \"out\" (log) has no inputs",
    );
}

#[test]
fn zero_capacity() {
    assert_error("bad_capacity.yaml", 7, "capacity must be at least 1, got 0");
}

#[test]
fn non_positive_intervals_are_all_reported() {
    let err = assert_error("bad_interval.yaml", 2, "rate_hz");
    assert!(
        err.lines().any(
            |l| l.starts_with("tests/pipelines/invalid/bad_interval.yaml:5:")
                && l.contains("flush_interval_ms")
        ),
        "{err}"
    );
}

#[test]
fn wrong_value_type() {
    assert_error("bad_value_type.yaml", 6, "`every`: invalid");
}

#[test]
fn yaml_syntax_error() {
    let (code, _, err) = validate("invalid/yaml_syntax.yaml");
    assert_eq!(code, 2);
    assert!(
        err.starts_with("tests/pipelines/invalid/yaml_syntax.yaml:"),
        "{err}"
    );
}

#[test]
fn unset_variable_without_default() {
    assert_error(
        "unset_variable.yaml",
        6,
        "TWINFLOW_TEST_SURELY_UNSET is not set",
    );
}

#[test]
fn dead_letter_node_must_accept_dead_letters() {
    assert_error("bad_dead_letter.yaml", 1, "does not accept DeadLetter");
}

#[test]
fn every_error_is_reported_in_one_pass() {
    let (code, _, err) = validate("invalid/many_errors.yaml");
    assert_eq!(code, 2);
    for needle in [
        "channel_capacity must be at least 1",
        "Source \"sim\" (simulator) takes no inputs",
        "Duplicate node id \"sim\"",
        "Input \"ghost\" for node \"out\" doesn't match any node.",
        "Sink \"lonely\" (file) has no inputs",
        "Unknown type \"nonsense\" for node \"weird\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(err.contains("6 problem(s) found"), "{err}");
}

#[test]
fn graph_prints_mermaid_and_dot() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_twinflow"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let m = run(&["graph", "tests/pipelines/valid.yaml"]);
    assert!(m.starts_with("flowchart LR"), "{m}");
    assert!(m.contains("sim_n -->|16| predict_n"), "{m}");
    assert!(m.contains("predict_n -->|4, drop_oldest| out_n"), "{m}");
    let d = run(&["graph", "--dot", "tests/pipelines/valid.yaml"]);
    assert!(d.starts_with("digraph"), "{d}");
    assert!(d.contains("\"sim\" -> \"predict\""), "{d}");
}

#[test]
fn a_node_whose_output_nobody_reads() {
    assert_error(
        "unconsumed.yaml",
        4,
        "Transform \"predict\" (predictor) is not an input of any node",
    );
}

#[test]
fn every_shipped_pipeline_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir("pipelines").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_twinflow"))
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 2, "the demo and the MQTT pipeline at least");
}

#[test]
fn edge_kinds_must_exist_and_match_the_sender() {
    let err = assert_error("bad_kinds.yaml", 7, "unknown message type \"Telegram\"");
    assert!(
        err.contains("Node \"out\" (log) accepts Prediction, but its input \"sim\" (simulator) emits SensorFrame."),
        "{err}"
    );
}
