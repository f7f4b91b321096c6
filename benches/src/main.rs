//! `rcu-bench`: the head-to-head runner.
//!
//! ```text
//! cargo run --release -p rcu-bench [-- --quick] [--filter TEXT]… [--threads N] [--duration SECS]
//!                                     [--list] [--json] [--save NAME] [--baseline NAME] [--out DIR]
//! ```
//!
//! Runs every comparison for a fixed time each (2.5 s, or 0.35 s with
//! `--quick`), prints a table per group (ours against each peer, with the
//! ratio) and writes `results.json`, `results.csv`, `results.md` and one SVG
//! chart per group to a new folder, `target/rcu-bench/<run-id>/` (see
//! [`rcu_bench::output`]). A run takes about (measurements) × (seconds per
//! measurement), printed before it starts: on a 2-CPU machine 162
//! measurements, about 7 minutes with the structures' set-up (`--quick`:
//! about 1.5 minutes). `--help` lists every flag.

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rcu_bench::cli::Cli;
use rcu_bench::output;
use rcu_bench::report::{self, Meta, Results};
use rcu_bench::suites::{self, GROUPS, Settings, Task};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("rcu-bench: {message}");
            ExitCode::from(code)
        }
    }
}

/// An exit code (2: the request, 1: the run) and what went wrong.
type Failure = (u8, String);

fn run(cli: &Cli) -> Result<(), Failure> {
    let settings = Settings {
        duration: cli.measurement(),
        threads: cli.max_threads(),
    };
    let (tasks, references) = suites::select(suites::all_tasks(&settings), &cli.filter);
    if tasks.is_empty() {
        return Err((
            2,
            format!(
                "--filter {} matches nothing; groups: {} (--list shows every operation and subject)",
                cli.filter
                    .iter()
                    .map(|f| format!("{f:?}"))
                    .collect::<Vec<_>>()
                    .join(" --filter "),
                GROUPS.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let plan = plan(&tasks, references, &settings, !cli.filter.is_empty());
    if cli.list {
        print_list(&tasks);
        println!("\n{plan}");
        return Ok(());
    }

    let root = cli.out.clone().unwrap_or_else(output::default_root);
    let baseline = match &cli.baseline {
        Some(name) => Some((
            name,
            output::load_baseline(&root, name).map_err(|e| (2, e))?,
        )),
        None => None,
    };
    eprintln!("rcu-bench: {plan}");

    let measured = measure(&tasks, &settings);

    let (date, time, stamp) = output::utc_now();
    let (run_id, dir) =
        output::create_run_dir(&root, &stamp, !cli.filter.is_empty()).map_err(|e| {
            (
                1,
                format!("cannot create a run folder in {}: {e}", root.display()),
            )
        })?;
    let meta = Meta {
        run_id,
        date,
        time,
        cpu: output::cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        membarrier: rcu_core::stats().membarrier,
        duration_s: settings.duration.as_secs_f64(),
        threads: settings.threads,
        filters: cli.filter.clone(),
        baseline: None,
    };
    let pairs: Vec<(&Task, f64)> = tasks.iter().zip(measured).collect();
    let mut results = Results::assemble(meta, GROUPS, &pairs);
    if let Some((name, base)) = &baseline {
        let found = results.compare_with(name, base);
        eprintln!(
            "rcu-bench: compared with baseline {name:?} (run {}): {found} of {} measurements found there",
            base.meta.run_id,
            results.len()
        );
    }

    output::write_run(&root, &dir, &results)
        .map_err(|e| (1, format!("cannot write results to {}: {e}", dir.display())))?;
    if cli.json {
        print!("{}", results.to_json());
    } else {
        print!("{}", report::table(&results));
        print_engine_stats();
    }
    let kind = if results.meta.partial() {
        "partial run, in a folder of its own (full runs are untouched)"
    } else {
        "full run"
    };
    eprintln!("rcu-bench: results of this {kind}: {}", dir.display());
    if let Some(name) = &cli.save {
        let what = output::save_baseline(&root, name, &results)
            .map_err(|e| (1, format!("cannot save baseline {name:?}: {e}")))?;
        eprintln!("rcu-bench: {what}");
    }
    Ok(())
}

/// What will run and for about how long.
fn plan(tasks: &[Task], references: usize, settings: &Settings, partial: bool) -> String {
    let secs = tasks.len() as f64 * settings.duration.as_secs_f64();
    let mut what = if partial {
        format!("partial run: {} measurements", tasks.len())
    } else {
        format!("full run: {} measurements", tasks.len())
    };
    if references > 0 {
        what += &format!(" ({references} of them the rcu-rs reference of a matching row)");
    }
    what += &format!(
        " × {:.2} s each ≈ {secs:.1} s",
        settings.duration.as_secs_f64()
    );
    if tasks.iter().any(|t| t.threads.is_some()) {
        what += &format!("; scaling rows at {:?} threads", settings.thread_counts());
    }
    what
}

fn print_list(tasks: &[Task]) {
    for g in GROUPS {
        let mine: Vec<&Task> = tasks.iter().filter(|t| t.group == g.name).collect();
        if mine.is_empty() {
            continue;
        }
        println!("{} ({}; file {}.svg)", g.name, g.unit, g.slug());
        let mut last = "";
        for t in mine {
            if t.operation != last {
                println!("  {}", t.operation);
                last = &t.operation;
            }
            let role = if t.ours { "reference" } else { "peer" };
            println!("    {} [{role}]", t.subject);
        }
    }
}

/// Runs every task, with a progress bar on a terminal (one line per task
/// otherwise, for logs).
fn measure(tasks: &[Task], settings: &Settings) -> Vec<f64> {
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        ProgressBar::new(tasks.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} {elapsed_precise} (about {eta} left) {wide_msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut out = Vec::with_capacity(tasks.len());
    let mut i = 0;
    while i < tasks.len() {
        // A run of sampled tasks of one row is measured interleaved.
        let row = tasks[i..]
            .iter()
            .take_while(|t| {
                t.sampled.is_some()
                    && t.group == tasks[i].group
                    && t.operation == tasks[i].operation
            })
            .count()
            .max(1);
        for (j, t) in tasks[i..i + row].iter().enumerate() {
            if terminal {
                bar.set_message(t.path());
            } else {
                eprintln!("[{}/{}] {}", i + j + 1, tasks.len(), t.path());
            }
        }
        if row > 1 {
            out.extend(interleave(&tasks[i..i + row], settings));
        } else {
            out.push((tasks[i].run)(settings));
        }
        bar.inc(row as u64);
        i += row;
    }
    bar.finish_and_clear();
    out
}

/// Sets up every task of `row` (sampled, single-thread) and measures them
/// interleaved (see [`Task::sampled`]).
fn interleave(row: &[Task], settings: &Settings) -> Vec<f64> {
    let mut samplers: Vec<_> = row
        .iter()
        .map(|t| (t.sampled.as_ref().expect("a sampled task"))(settings))
        .collect();
    rcu_bench::harness::interleave(&mut samplers, settings.duration)
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
        "  polls {}, reader wake-ups {}, reclaim-thread wake-ups {}, stalls {}, callbacks {} run of {} queued, most bytes pending {}",
        s.polls,
        s.reader_wakeups,
        s.reclaim_wakeups,
        s.stalls,
        s.callbacks_run,
        s.callbacks_queued,
        s.max_pending_bytes
    );
}
