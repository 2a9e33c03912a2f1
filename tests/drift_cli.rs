//! `twinflow drift` as a user runs it, on CSV files from `twinflow simulate`.

use std::process::Command;

fn twinflow(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_twinflow"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn same_plant_is_stable_a_shifted_one_is_not_and_bad_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    // One day of one unit, two halves of the same steady process.
    let sim = |file: &str, seed: &str, extra: &str| {
        std::fs::write(
            p("sim.yaml"),
            format!("realtime: false\nrate_hz: 0.05\nload: {{unit_spread: 0}}\n{extra}"),
        )
        .unwrap();
        let (code, _, err) = twinflow(&[
            "simulate",
            "--csv",
            &p(file),
            "--frames",
            "4000",
            "--seed",
            seed,
            "--scenario-file",
            &p("sim.yaml"),
        ]);
        assert_eq!(code, 0, "{err}");
    };
    sim("ref.csv", "1", "");
    sim("same.csv", "2", "");
    sim(
        "shifted.csv",
        "3",
        "scenarios: [{kind: input_drift, start_after_s: 0, shift: {UCWIT: 1.0}}]\n",
    );

    let (code, out, err) = twinflow(&[
        "drift",
        "--reference",
        &p("ref.csv"),
        "--current",
        &p("same.csv"),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["summary"]["overall_status"], "STABLE", "{out}");
    assert_eq!(r["summary"]["total_features"], 6);

    let (code, out, _) = twinflow(&[
        "drift",
        "--reference",
        &p("ref.csv"),
        "--current",
        &p("shifted.csv"),
        "--features",
        "UCWIT,UCAIT",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("Overall status"), "{out}");
    let ucwit = out
        .lines()
        .find(|l| l.trim_start().starts_with("UCWIT"))
        .unwrap();
    let ucait = out
        .lines()
        .find(|l| l.trim_start().starts_with("UCAIT"))
        .unwrap();
    assert!(!ucwit.contains("STABLE"), "{out}");
    assert!(ucait.contains("STABLE"), "{out}");

    std::fs::write(p("bad.csv"), "UCWIT,UCAIT\n7.5,25\nseven,25\n").unwrap();
    std::fs::write(p("empty.csv"), "").unwrap();
    let (reference, bad, empty, same) = (p("ref.csv"), p("bad.csv"), p("empty.csv"), p("same.csv"));
    for (args, needle) in [
        (
            vec!["--current", bad.as_str(), "--features", "UCWIT"],
            "seven",
        ),
        (vec!["--current", empty.as_str()], "empty"),
        (
            vec!["--current", same.as_str(), "--features", "NOPE"],
            "nope",
        ),
    ] {
        let mut a = vec!["drift", "--reference", reference.as_str()];
        a.extend(args);
        let (code, _, err) = twinflow(&a);
        assert_eq!(code, 2, "{a:?}: {err}");
        assert!(err.to_lowercase().contains(needle), "{a:?}: {err}");
    }
}
