//! Where a run's files go.
//!
//! ```text
//! target/rcu-bench/
//!   20261129-153012/          a full run: results.json, .csv, .md, one SVG per group
//!   20261129-153530-partial/  a filtered run, in a folder of its own
//!   latest.txt                the newest run's folder name
//!   latest-full.txt           the newest full run's folder name
//!   baselines/NAME.json       saved with --save NAME, compared with --baseline NAME
//! ```
//!
//! Every run writes to a new folder, so no run overwrites another's files
//! (a filtered run cannot leave a full run's charts next to its own table).
//! The pointers are one-line text files rather than symbolic links: creating
//! a link needs a privilege on Windows, and a copied folder would double the
//! output; a script reads `$(cat target/rcu-bench/latest-full.txt)`.

use crate::report::Results;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The default root: `$CARGO_TARGET_DIR/rcu-bench`, or the workspace's
/// `target/rcu-bench`.
pub fn default_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let benches = Path::new(env!("CARGO_MANIFEST_DIR"));
            benches.parent().unwrap_or(benches).join("target")
        })
        .join("rcu-bench")
}

/// The path of baseline `name` under `root`.
pub fn baseline_path(root: &Path, name: &str) -> PathBuf {
    root.join("baselines").join(format!("{name}.json"))
}

/// Reads baseline `name`.
pub fn load_baseline(root: &Path, name: &str) -> Result<Results, String> {
    let path = baseline_path(root, name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "baseline {name:?}: cannot read {}: {e} (save one with --save {name})",
            path.display()
        )
    })?;
    Results::from_json(&text).map_err(|e| format!("baseline {name:?}: {}: {e}", path.display()))
}

/// Saves `results` as baseline `name`. A partial run updates an existing
/// baseline (its measurements replace theirs, the others are kept); returns
/// a sentence that says what happened.
pub fn save_baseline(root: &Path, name: &str, results: &Results) -> io::Result<String> {
    let path = baseline_path(root, name);
    std::fs::create_dir_all(path.parent().unwrap())?;
    let (saved, what) = match (results.meta.partial(), load_baseline(root, name)) {
        (true, Ok(old)) => {
            let old_id = old.meta.run_id.clone();
            let (merged, kept) = old.merged_with(results);
            let what = format!(
                "updated baseline {name:?} ({}) with {} measurements of this partial run, {kept} kept from run {old_id}",
                path.display(),
                results.len()
            );
            (merged, what)
        }
        (_, old) => {
            let verb = if old.is_ok() { "replaced" } else { "saved" };
            let what = format!(
                "{verb} baseline {name:?} ({}): {} measurements",
                path.display(),
                results.len()
            );
            (results.clone(), what)
        }
    };
    std::fs::write(&path, saved.to_json())?;
    Ok(what)
}

/// Creates the folder of a new run under `root`, named after `stamp`
/// (`-partial` for a filtered run; `-2`, `-3`… if two runs start in the
/// same second). Returns its name and path.
pub fn create_run_dir(root: &Path, stamp: &str, partial: bool) -> io::Result<(String, PathBuf)> {
    std::fs::create_dir_all(root)?;
    let base = if partial {
        format!("{stamp}-partial")
    } else {
        stamp.to_string()
    };
    for n in 1.. {
        let id = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = root.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!()
}

/// Writes `results.json`, `results.csv`, `results.md` and the charts to
/// `dir`, then points `latest.txt` (and, for a full run,
/// `latest-full.txt`) at it. Returns the files written.
pub fn write_run(root: &Path, dir: &Path, results: &Results) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut write = |name: String, text: String| -> io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        files.push(path);
        Ok(())
    };
    write("results.json".into(), results.to_json())?;
    write("results.csv".into(), results.to_csv())?;
    write("results.md".into(), crate::report::markdown(results))?;
    for g in &results.groups {
        let svg = crate::chart::svg(g, &results.meta).map_err(io::Error::other)?;
        write(format!("{}.svg", crate::suites::slug(&g.name)), svg)?;
    }
    let id = &results.meta.run_id;
    std::fs::write(root.join("latest.txt"), format!("{id}\n"))?;
    if !results.meta.partial() {
        std::fs::write(root.join("latest-full.txt"), format!("{id}\n"))?;
    }
    Ok(files)
}

/// The UTC date (`YYYY-MM-DD`), time (`HH:MM:SS`) and a folder stamp
/// (`YYYYMMDD-HHMMSS`) of now.
pub fn utc_now() -> (String, String, String) {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let (hh, mm, ss) = (s / 3600, s / 60 % 60, s % 60);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{hh:02}:{mm:02}:{ss:02}"),
        format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}"),
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The CPU model from `/proc/cpuinfo`, or the architecture.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
    }

    #[test]
    fn run_dirs_never_collide() {
        let root = std::env::temp_dir().join(format!("rcu-bench-dirs-{}", std::process::id()));
        let (a, _) = create_run_dir(&root, "20260101-000000", false).unwrap();
        let (b, _) = create_run_dir(&root, "20260101-000000", false).unwrap();
        let (c, _) = create_run_dir(&root, "20260101-000000", true).unwrap();
        assert_eq!(
            [a.as_str(), b.as_str(), c.as_str()],
            [
                "20260101-000000",
                "20260101-000000-2",
                "20260101-000000-partial"
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
