//! `rcu-bench`: the head-to-head runner.
//!
//! ```text
//! cargo run --release -p rcu-bench [-- --quick] [--filter TEXT] [--threads N] [--duration SECS] [--json]
//! ```
//!
//! Runs every comparison for a fixed time each, prints a table (ours against
//! each peer, with the ratio), and writes `results.json`, `results.csv`,
//! `results.md` and one SVG chart per group to `target/rcu-bench/`.

use rcu_bench::report::{self, Group, Measurement, Meta, Row};
use rcu_bench::suites::{self, GROUPS, Settings};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "usage: rcu-bench [--quick] [--filter TEXT] [--threads N] [--duration SECS] [--json] [--out DIR]
  --quick          about 15 s in all (0.35 s per measurement)
  --filter TEXT    only measurements whose group/operation/subject contains TEXT
  --threads N      reader threads of the multi-threaded rows (default 2)
  --duration SECS  seconds per measurement (default 2.5: about 75 s in all)
  --json           print the JSON results instead of the table
  --out DIR        where to write results (default: the workspace's target/rcu-bench)";

struct Args {
    duration: Duration,
    threads: usize,
    filter: Option<String>,
    json: bool,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs_f64(2.5),
        threads: 2,
        filter: None,
        json: false,
        out: default_out(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => args.duration = Duration::from_secs_f64(0.35),
            "--filter" => args.filter = Some(value("--filter")?.to_lowercase()),
            "--threads" => {
                args.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?;
                if args.threads == 0 {
                    return Err("--threads must be at least 1".into());
                }
            }
            "--duration" => {
                let s: f64 = value("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?;
                if !(s > 0.0 && s.is_finite()) {
                    return Err("--duration must be a positive number of seconds".into());
                }
                args.duration = Duration::from_secs_f64(s);
            }
            "--json" => args.json = true,
            "--out" => args.out = PathBuf::from(value("--out")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn default_out() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("rcu-bench")
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rcu-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let settings = Settings {
        duration: args.duration,
        threads: args.threads,
    };
    let tasks: Vec<_> = suites::tasks(args.threads)
        .into_iter()
        .filter(|t| {
            args.filter
                .as_ref()
                .is_none_or(|f| t.path().to_lowercase().contains(f))
        })
        .collect();
    if tasks.is_empty() {
        eprintln!("rcu-bench: nothing matches the filter");
        std::process::exit(2);
    }

    let start = Instant::now();
    let mut results: Vec<(usize, f64)> = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        progress(i, tasks.len(), &task.path(), start);
        results.push((i, (task.run)(&settings)));
    }
    progress(tasks.len(), tasks.len(), "done", start);
    eprintln!();

    // Assemble rows: ours first, then the peers measured for the same
    // operation. A row without our measurement (filtered out) is dropped.
    let mut groups: Vec<Group> = Vec::new();
    for (name, unit) in GROUPS {
        let mut rows: Vec<Row> = Vec::new();
        for &(i, ns) in &results {
            let t = &tasks[i];
            if t.group != name {
                continue;
            }
            let m = Measurement {
                subject: t.subject.clone(),
                ns,
            };
            match rows.iter_mut().find(|r| r.operation == t.operation) {
                Some(r) if t.ours => r.ours = m,
                Some(r) => r.peers.push(m),
                None => rows.push(Row {
                    operation: t.operation.clone(),
                    ours: if t.ours {
                        m.clone()
                    } else {
                        Measurement {
                            subject: String::new(),
                            ns: f64::NAN,
                        }
                    },
                    peers: if t.ours { Vec::new() } else { vec![m] },
                }),
            }
        }
        rows.retain(|r| r.ours.ns.is_finite());
        if !rows.is_empty() {
            groups.push(Group {
                name: name.into(),
                unit: unit.into(),
                rows,
            });
        }
    }

    let meta = Meta {
        date: utc_date(),
        cpu: cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        membarrier: rcu_core::stats().membarrier,
        duration_s: args.duration.as_secs_f64(),
        threads: args.threads,
    };
    let json = report::json(&meta, &groups);
    if let Err(e) = write_outputs(&args.out, &meta, &groups, &json) {
        eprintln!(
            "rcu-bench: could not write results to {}: {e}",
            args.out.display()
        );
        std::process::exit(1);
    }
    if args.json {
        print!("{json}");
    } else {
        print!("{}", report::table(&meta, &groups));
        print_engine_stats();
        println!("results: {}", args.out.display());
    }
}

/// What the process-wide domain did during the run.
fn print_engine_stats() {
    let s = rcu_core::stats();
    let f = &s.forced_by;
    println!("\nrcu-rs engine during the run (process-wide domain):");
    println!(
        "  grace periods {} ({} forced: callbacks {}, polls {}, drain {}, expedite {}, memory {}), longest {:?}",
        s.grace_periods,
        s.forced_grace_periods,
        f.callbacks,
        f.polls,
        f.drain,
        f.expedite,
        f.memory,
        s.longest_grace_period
    );
    println!("  grace period times: {}", s.histogram);
    println!(
        "  polls {}, reader wake-ups {}, stalls {}, callbacks {} run of {} queued, most bytes pending {}",
        s.polls,
        s.reader_wakeups,
        s.stalls,
        s.callbacks_run,
        s.callbacks_queued,
        s.max_pending_bytes
    );
}

fn write_outputs(
    dir: &std::path::Path,
    meta: &Meta,
    groups: &[Group],
    json: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), json)?;
    std::fs::write(dir.join("results.csv"), report::csv(groups))?;
    std::fs::write(dir.join("results.md"), report::markdown(meta, groups))?;
    for g in groups {
        let file: String = g
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(dir.join(format!("{file}.svg")), report::svg(g))?;
    }
    Ok(())
}

fn progress(done: usize, total: usize, what: &str, start: Instant) {
    const WIDTH: usize = 30;
    let filled = done * WIDTH / total.max(1);
    let bar = format!(
        "[{}{}] {done}/{total} {:>5.1}s {what}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        start.elapsed().as_secs_f64()
    );
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{bar}");
    } else {
        let _ = writeln!(err, "{bar}");
    }
    let _ = err.flush();
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Today's UTC date from the system clock (civil-from-days, Howard Hinnant).
fn utc_date() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
