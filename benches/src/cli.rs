//! The runner's command line (clap derive).

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Seconds per measurement by default.
pub const DEFAULT_SECS: f64 = 2.5;
/// Seconds per measurement with `--quick`.
pub const QUICK_SECS: f64 = 0.35;

/// Head-to-head benchmarks of rcu-rs against crossbeam-epoch, seize,
/// arc-swap, papaya, dashmap, scc, congee, crossbeam-skiplist and std's
/// locks and collections.
///
/// Every measurement runs for a fixed time; a run takes about (number of
/// measurements) × (seconds per measurement), which the runner prints before
/// it starts (`--list` prints it without measuring). On a 2-CPU machine a
/// full run is about 190 measurements: about 8 minutes with the structures'
/// set-up, or 1 to 2 minutes with `--quick`.
/// The read-side scaling group has one row per thread count, so more CPUs
/// mean more measurements.
#[derive(Parser, Debug, Clone)]
#[command(name = "rcu-bench", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Short measurements: 0.35 s each instead of 2.5 s (noisier).
    #[arg(long, conflicts_with = "duration")]
    pub quick: bool,

    /// Seconds each measurement runs.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SECS, value_parser = parse_secs)]
    pub duration: f64,

    /// Only what matches TEXT (case-insensitive, part of a group, operation
    /// or subject; repeat for several). A row with a matching peer keeps its
    /// rcu-rs reference. A filtered run writes to a folder of its own.
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,

    /// Most threads of the scaling rows [default: the machine's CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Print the groups, operations and subjects that would run, and the
    /// expected run time, without measuring.
    #[arg(long)]
    pub list: bool,

    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Save this run as baseline NAME (a filtered run updates only its own
    /// measurements in an existing baseline).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub save: Option<String>,

    /// Compare this run with baseline NAME, measurement by measurement (the
    /// change in percent).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub baseline: Option<String>,

    /// Folder for runs and baselines [default: the workspace's
    /// target/rcu-bench].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

const AFTER_HELP: &str = "\
Output: each run writes results.json, results.csv, results.md and one SVG
chart per group to a folder of its own, DIR/<run-id>/ (run-id: UTC date and
time, with -partial for a filtered run); DIR/latest.txt and
DIR/latest-full.txt name the newest run and the newest unfiltered run (at
any --duration or --quick). Baselines
live in DIR/baselines/NAME.json.

Ratio = peer time / rcu-rs time (above 1: rcu-rs is faster).";

impl Cli {
    /// Seconds per measurement (`--quick` or `--duration`).
    pub fn measurement(&self) -> Duration {
        Duration::from_secs_f64(if self.quick {
            QUICK_SECS
        } else {
            self.duration
        })
    }

    /// Most threads of the scaling rows.
    pub fn max_threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        )
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v > 0.0 && v <= 3600.0 {
        Ok(v)
    } else {
        Err("a number of seconds above 0 (at most 3600)".into())
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
    {
        Ok(s.to_string())
    } else {
        Err("letters, digits, '-', '_' and '.' (a file name), not starting with '.'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn quick_and_duration() {
        let c = Cli::try_parse_from(["rcu-bench", "--quick"]).unwrap();
        assert_eq!(c.measurement(), Duration::from_secs_f64(QUICK_SECS));
        let c = Cli::try_parse_from(["rcu-bench", "--duration", "0.5"]).unwrap();
        assert_eq!(c.measurement(), Duration::from_millis(500));
        assert!(Cli::try_parse_from(["rcu-bench", "--quick", "--duration", "1"]).is_err());
        assert!(Cli::try_parse_from(["rcu-bench", "--duration", "0"]).is_err());
        assert!(Cli::try_parse_from(["rcu-bench", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["rcu-bench", "--save", "../x"]).is_err());
    }
}
