//! The runner end to end, with tiny durations and filters: outputs parse
//! back, filters, folders, baselines, `--help`. (No timing is checked.)

use clap::CommandFactory;
use rcu_bench::cli::Cli;
use rcu_bench::report::{Record, Results, records_from_csv};
use rcu_bench::suites::{GROUPS, Settings, all_tasks, slug};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A scratch folder for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rcu-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(out: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rcu-bench"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run rcu-bench")
}

fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn latest(root: &Path, pointer: &str) -> PathBuf {
    root.join(read(root.join(pointer)).trim())
}

/// One full run (about 20 s in a debug build) serves two checks: its own
/// outputs, then a partial run beside it.
#[test]
fn a_full_run_has_every_group_and_peer_and_a_later_partial_run_leaves_it_alone() {
    let out = Scratch::new("full");
    let stdout = ok(bench(
        &out.0,
        &["--duration", "0.005", "--threads", "2", "--json"],
    ))
    .stdout;
    let results: Results = serde_json::from_slice(&stdout).expect("valid JSON");
    assert!(!results.meta.partial());
    assert_eq!(results.meta.threads, 2);
    assert!(results.meta.cpus >= 1 && results.meta.date.len() == 10);

    let expected = all_tasks(&Settings {
        duration: Duration::from_millis(1),
        threads: 2,
    });
    assert_eq!(results.len(), expected.len());
    let names: Vec<&str> = results.groups.iter().map(|g| g.name.as_str()).collect();
    let dir = latest(&out.0, "latest-full.txt");
    assert_eq!(dir, latest(&out.0, "latest.txt"));
    for g in GROUPS {
        assert!(
            names.contains(&g.name),
            "group {} missing: {names:?}",
            g.name
        );
        let svg = read(dir.join(format!("{}.svg", g.slug())));
        assert!(
            svg.starts_with("<svg") && svg.contains(g.name),
            "{}",
            g.name
        );
    }
    for g in &results.groups {
        for r in &g.rows {
            assert!(r.ours.ns > 0.0 && r.ours.ratio == 1.0, "{r:?}");
            assert!(!r.peers.is_empty(), "a row without peers: {r:?}");
            for p in &r.peers {
                assert!(p.ratio > 0.0 && p.ratio.is_finite(), "{p:?}");
            }
        }
    }
    assert_eq!(
        Results::from_json(&read(dir.join("results.json"))).unwrap(),
        results
    );
    assert!(read(dir.join("results.md")).contains("| operation |"));

    a_partial_run_never_touches_a_full_runs_files(&out.0);
}

#[test]
fn json_and_csv_parse_back_into_the_same_rows() {
    let out = Scratch::new("parse");
    let stdout = ok(bench(
        &out.0,
        &[
            "--duration",
            "0.005",
            "--filter",
            "1 thread, idle",
            "--json",
        ],
    ))
    .stdout;
    let printed = Results::from_json(std::str::from_utf8(&stdout).unwrap()).unwrap();
    let dir = latest(&out.0, "latest.txt");
    let written = Results::from_json(&read(dir.join("results.json"))).unwrap();
    assert_eq!(printed, written);
    // Serialising again gives the same text: nothing lost on the way.
    assert_eq!(written.to_json(), read(dir.join("results.json")));

    let csv: Vec<Record> = records_from_csv(&read(dir.join("results.csv"))).unwrap();
    assert_eq!(csv, written.records());
    assert!(csv.len() >= 2 && csv.iter().any(|r| r.ours) && csv.iter().any(|r| !r.ours));
    let header = read(dir.join("results.csv"));
    assert!(header.starts_with("group,operation,threads,subject,ours,ns,ratio"));
}

#[test]
fn a_filter_selects_groups_operations_or_subjects_and_keeps_the_reference() {
    let out = Scratch::new("filter");
    // A peer's name: its rows come with our reference, so ratios exist.
    let stdout = ok(bench(
        &out.0,
        &[
            "--duration",
            "0.005",
            "--filter",
            "arc_swap",
            "--threads",
            "1",
            "--json",
        ],
    ))
    .stdout;
    let results: Results = serde_json::from_slice(&stdout).unwrap();
    assert!(results.meta.partial() && !results.is_empty());
    for g in &results.groups {
        for r in &g.rows {
            assert!(r.ours.subject.starts_with("rcu-rs"), "{r:?}");
            assert!(
                r.peers.iter().all(|p| p.subject.contains("arc_swap")),
                "{r:?}"
            );
        }
    }
    // A group's file name.
    let list = ok(bench(&out.0, &["--list", "--filter", "grace-periods"])).stdout;
    let list = String::from_utf8(list).unwrap();
    assert!(
        list.contains("grace periods") && !list.contains("read side"),
        "{list}"
    );
}

#[test]
fn a_filter_that_matches_nothing_fails_with_a_message() {
    let out = Scratch::new("nomatch");
    let o = bench(
        &out.0,
        &["--duration", "0.005", "--filter", "no such thing"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("matches nothing") && err.contains("no such thing"),
        "{err}"
    );
    assert!(!out.0.exists(), "nothing is written");
}

/// A partial run into `out`, which holds a full run: its files stay as they
/// were, and the partial run's folder has only the group that ran.
fn a_partial_run_never_touches_a_full_runs_files(out: &Path) {
    let full = latest(out, "latest-full.txt");
    let before: Vec<(PathBuf, String)> = std::fs::read_dir(&full)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.clone(), read(p))
        })
        .collect();
    let o = ok(bench(out, &["--duration", "0.005", "--filter", "callback"]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("partial run"));
    let partial = latest(out, "latest.txt");
    assert_ne!(partial, full);
    assert!(partial.to_string_lossy().ends_with("-partial"));
    assert_eq!(latest(out, "latest-full.txt"), full);
    for (p, text) in before {
        assert_eq!(read(p), text);
    }
    // The partial folder has only the group that ran.
    let svgs: Vec<String> = std::fs::read_dir(&partial)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    assert_eq!(svgs, [format!("{}.svg", slug("grace periods"))]);
}

#[test]
fn save_then_baseline_shows_the_change_row_by_row() {
    let out = Scratch::new("baseline");
    let args = ["--duration", "0.005", "--filter", "wait for readers"];
    let o = ok(bench(&out.0, &[&args[..], &["--save", "before"]].concat()));
    assert!(String::from_utf8_lossy(&o.stderr).contains("saved baseline \"before\""));
    assert!(out.0.join("baselines/before.json").is_file());

    let table = ok(bench(
        &out.0,
        &[&args[..], &["--baseline", "before"]].concat(),
    ))
    .stdout;
    let table = String::from_utf8(table).unwrap();
    assert!(
        table.contains("change") && table.contains("baseline \"before\""),
        "{table}"
    );
    assert!(table.contains('%'), "{table}");

    let json = ok(bench(
        &out.0,
        &[&args[..], &["--baseline", "before", "--json"]].concat(),
    ))
    .stdout;
    let results: Results = serde_json::from_slice(&json).unwrap();
    assert_eq!(results.meta.baseline.as_deref(), Some("before"));
    for g in &results.groups {
        for r in &g.rows {
            for m in r.measurements() {
                let (old, change) = (m.baseline_ns.unwrap(), m.change_pct.unwrap());
                assert!((change - (m.ns - old) / old * 100.0).abs() < 1e-9, "{m:?}");
            }
        }
    }

    let o = bench(
        &out.0,
        &[&args[..], &["--baseline", "never-saved"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("never-saved"));
}

#[test]
fn help_lists_every_flag() {
    let out = Scratch::new("help");
    let help = ok(bench(&out.0, &["--help"])).stdout;
    let help = String::from_utf8(help).unwrap();
    let flags: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for f in [
        "--quick",
        "--duration",
        "--filter",
        "--threads",
        "--list",
        "--json",
        "--save",
        "--baseline",
        "--out",
    ] {
        assert!(flags.iter().any(|g| g == f), "{f} is not a flag");
    }
    for f in flags.iter().chain(&["--help".to_string()]) {
        assert!(
            help.contains(f.as_str()),
            "--help does not mention {f}:\n{help}"
        );
    }
}

#[test]
fn bad_arguments_are_errors() {
    let out = Scratch::new("bad");
    for args in [
        &["--threads", "0"][..],
        &["--duration", "-1"],
        &["--duration", "0"],
        &["--bogus"],
        &["--quick", "--duration", "1"],
        &["--save", "../escape"],
    ] {
        let o = bench(&out.0, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}");
    }
}
