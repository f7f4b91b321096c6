//! The runner end to end, with a tiny duration: every group is there, every
//! row has our measurement and every peer a ratio. (No timing is checked.)

use std::process::Command;

#[test]
fn runner_json_has_every_group_and_a_ratio_for_every_peer() {
    let out = std::env::temp_dir().join(format!("rcu-bench-test-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_rcu-bench"))
        .args(["--duration", "0.005", "--json", "--out"])
        .arg(&out)
        .output()
        .expect("run rcu-bench");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");

    let groups = json["groups"].as_array().expect("groups");
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    for (name, _) in rcu_bench::suites::GROUPS {
        assert!(names.contains(&name), "group {name} missing: {names:?}");
    }
    // Every task of the suite is in the results, ours or as a peer.
    let tasks = rcu_bench::suites::tasks(2);
    let mut seen = 0;
    for g in groups {
        for row in g["rows"].as_array().unwrap() {
            assert!(
                row["ours"]["ns"].as_f64().is_some_and(|ns| ns > 0.0),
                "{row}"
            );
            seen += 1;
            let peers = row["peers"].as_array().unwrap();
            assert!(!peers.is_empty(), "a row without peers: {row}");
            for p in peers {
                assert!(
                    p["ratio"].as_f64().is_some_and(|r| r > 0.0),
                    "peer without a ratio: {p}"
                );
                seen += 1;
            }
        }
    }
    assert_eq!(seen, tasks.len());
    assert!(json["membarrier"].is_boolean());
    assert!(json["date"].as_str().is_some_and(|d| d.len() == 10));

    // The files the README promises.
    for f in [
        "results.json",
        "results.csv",
        "results.md",
        "read-side.svg",
        "grace-periods.svg",
    ] {
        let path = out.join(f);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!text.is_empty(), "{f} is empty");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + tasks.len());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn runner_rejects_bad_arguments() {
    for args in [
        &["--threads", "0"][..],
        &["--duration", "-1"],
        &["--bogus"],
        &["--filter", "no such thing"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_rcu-bench"))
            .args(args)
            .output()
            .unwrap()
            .status;
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
