//! Results: rows of "ours against each peer", as a table, Markdown, JSON
//! (serde_json) and CSV (csv), and their comparison with a saved baseline.

use crate::suites::{Chart, GroupDef, Task};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Where, when and how the results were measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The run's folder name (UTC date and time, `-partial` if filtered).
    pub run_id: String,
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// UTC time, `HH:MM:SS`.
    pub time: String,
    /// CPU model, if known.
    pub cpu: String,
    /// Logical CPUs available (`std::thread::available_parallelism`).
    pub cpus: usize,
    /// Whether the process-wide domain used membarrier (read after it
    /// started).
    pub membarrier: bool,
    /// Seconds per measurement.
    pub duration_s: f64,
    /// Most threads of the scaling rows.
    pub threads: usize,
    /// The `--filter`s of a partial run (empty: every measurement ran).
    pub filters: Vec<String>,
    /// The baseline this run was compared with.
    pub baseline: Option<String>,
}

impl Meta {
    /// Whether only part of the suite ran.
    pub fn partial(&self) -> bool {
        !self.filters.is_empty()
    }

    /// "run ID: DATE TIME UTC on CPU (N CPUs, membarrier in use), S s per
    /// measurement, scaling rows up to T threads".
    pub fn summary(&self) -> String {
        format!(
            "run {}: {} {} UTC on {} ({} CPUs, {}), {:.2} s per measurement, scaling rows up to {} threads",
            self.run_id,
            self.date,
            self.time,
            self.cpu,
            self.cpus,
            if self.membarrier {
                "membarrier in use"
            } else {
                "no membarrier: fence fallback"
            },
            self.duration_s,
            self.threads
        )
    }
}

/// One measured subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Who was measured.
    pub subject: String,
    /// Nanoseconds (lower is better).
    pub ns: f64,
    /// Peer time / our time of the row (1 for ours; above 1: we are faster).
    pub ratio: f64,
    /// The same measurement in the baseline, if compared with one.
    pub baseline_ns: Option<f64>,
    /// Change against the baseline in percent (negative: faster now).
    pub change_pct: Option<f64>,
}

impl Measurement {
    fn new(subject: String, ns: f64) -> Self {
        Measurement {
            subject,
            ns,
            ratio: 1.0,
            baseline_ns: None,
            change_pct: None,
        }
    }
}

/// One operation: this project's measurement and each peer's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured.
    pub operation: String,
    /// Threads, for a row of a scaling group.
    pub threads: Option<usize>,
    /// This project (the reference of the ratios).
    pub ours: Measurement,
    /// The peers, in run order.
    pub peers: Vec<Measurement>,
}

impl Row {
    fn measurements_mut(&mut self) -> impl Iterator<Item = &mut Measurement> {
        std::iter::once(&mut self.ours).chain(&mut self.peers)
    }

    /// Ours, then the peers.
    pub fn measurements(&self) -> impl Iterator<Item = &Measurement> {
        std::iter::once(&self.ours).chain(&self.peers)
    }

    fn update_ratios(&mut self) {
        let ours = self.ours.ns;
        self.ours.ratio = 1.0;
        for p in &mut self.peers {
            p.ratio = p.ns / ours;
        }
    }
}

/// A group of rows with a common unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// What the numbers mean.
    pub unit: String,
    /// How it is drawn.
    pub chart: Chart,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// A run: `results.json`, and a saved baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Where and how.
    pub meta: Meta,
    /// The groups that ran, in the registry's order.
    pub groups: Vec<Group>,
}

/// One line of `results.csv`: one measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The group's name.
    pub group: String,
    /// The row's operation.
    pub operation: String,
    /// Threads, for a row of a scaling group.
    pub threads: Option<usize>,
    /// Who was measured.
    pub subject: String,
    /// Whether this is the row's reference (rcu-rs).
    pub ours: bool,
    /// Nanoseconds.
    pub ns: f64,
    /// Peer time / our time (1 for ours).
    pub ratio: f64,
    /// The baseline's nanoseconds, if compared with one.
    pub baseline_ns: Option<f64>,
    /// Change against the baseline, in percent.
    pub change_pct: Option<f64>,
}

impl Results {
    /// Puts measured tasks into rows (ours, then its peers) and groups (in
    /// the order of `defs`). `measured` pairs each task with nanoseconds.
    pub fn assemble(meta: Meta, defs: &[GroupDef], measured: &[(&Task, f64)]) -> Results {
        let mut groups = Vec::new();
        for def in defs {
            let mine: Vec<&(&Task, f64)> = measured
                .iter()
                .filter(|(t, _)| t.group == def.name)
                .collect();
            // The references first, in run order, then each peer in its row
            // ([`crate::suites::select`] keeps a reference for every peer).
            let mut rows: Vec<Row> = mine
                .iter()
                .filter(|(t, _)| t.ours)
                .map(|&&(t, ns)| Row {
                    operation: t.operation.clone(),
                    threads: t.threads,
                    ours: Measurement::new(t.subject.clone(), ns),
                    peers: Vec::new(),
                })
                .collect();
            for &&(t, ns) in mine.iter().filter(|(t, _)| !t.ours) {
                if let Some(r) = rows.iter_mut().find(|r| r.operation == t.operation) {
                    r.peers.push(Measurement::new(t.subject.clone(), ns));
                }
            }
            for r in &mut rows {
                r.update_ratios();
            }
            if !rows.is_empty() {
                groups.push(Group {
                    name: def.name.to_string(),
                    unit: def.unit.to_string(),
                    chart: def.chart,
                    rows,
                });
            }
        }
        Results { meta, groups }
    }

    /// Every measurement as a flat record (the CSV's lines).
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &g.rows {
                for (i, m) in r.measurements().enumerate() {
                    out.push(Record {
                        group: g.name.clone(),
                        operation: r.operation.clone(),
                        threads: r.threads,
                        subject: m.subject.clone(),
                        ours: i == 0,
                        ns: m.ns,
                        ratio: m.ratio,
                        baseline_ns: m.baseline_ns,
                        change_pct: m.change_pct,
                    });
                }
            }
        }
        out
    }

    /// How many measurements.
    pub fn len(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.rows)
            .map(|r| 1 + r.peers.len())
            .sum()
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The results as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("results serialise");
        s.push('\n');
        s
    }

    /// Results read back from [`Results::to_json`].
    pub fn from_json(text: &str) -> serde_json::Result<Results> {
        serde_json::from_str(text)
    }

    /// The results as CSV: a header, then one line per measurement.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in self.records() {
            w.serialize(r).expect("a record serialises");
        }
        String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8")
    }

    /// Compares every measurement with the same one (group, operation,
    /// subject) in `base`; returns how many had a counterpart.
    pub fn compare_with(&mut self, name: &str, base: &Results) -> usize {
        self.meta.baseline = Some(name.to_string());
        let mut found = 0;
        for g in &mut self.groups {
            let bg = base.groups.iter().find(|b| b.name == g.name);
            for r in &mut g.rows {
                let br = bg.and_then(|b| b.rows.iter().find(|b| b.operation == r.operation));
                for m in r.measurements_mut() {
                    let old = br.and_then(|b| b.measurements().find(|o| o.subject == m.subject));
                    m.baseline_ns = old.map(|o| o.ns);
                    m.change_pct = old.map(|o| (m.ns - o.ns) / o.ns * 100.0);
                    found += usize::from(old.is_some());
                }
            }
        }
        found
    }

    /// `self` (an older save) updated with the measurements of `new`: each
    /// measured subject replaces its old value or is added; the rest is kept.
    /// The metadata is the new run's. Returns the merged results and how many
    /// old measurements were kept.
    pub fn merged_with(mut self, new: &Results) -> (Results, usize) {
        let before = self.len();
        let mut replaced = 0;
        for ng in &new.groups {
            let g = match self.groups.iter_mut().position(|g| g.name == ng.name) {
                Some(i) => &mut self.groups[i],
                None => {
                    self.groups.push(Group {
                        rows: Vec::new(),
                        ..ng.clone()
                    });
                    self.groups.last_mut().unwrap()
                }
            };
            for nr in &ng.rows {
                let Some(r) = g.rows.iter_mut().find(|r| r.operation == nr.operation) else {
                    g.rows.push(nr.clone());
                    continue;
                };
                replaced += 1;
                r.ours = nr.ours.clone();
                for np in &nr.peers {
                    match r.peers.iter_mut().find(|p| p.subject == np.subject) {
                        Some(p) => {
                            *p = np.clone();
                            replaced += 1;
                        }
                        None => r.peers.push(np.clone()),
                    }
                }
                r.update_ratios();
            }
        }
        self.meta = new.meta.clone();
        (self, before - replaced)
    }
}

/// Reads `results.csv` back.
pub fn records_from_csv(text: &str) -> csv::Result<Vec<Record>> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect()
}

/// Nanoseconds with a unit that suits their size.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.2} ns")
    }
}

fn fmt_change(m: &Measurement) -> String {
    match m.change_pct {
        Some(c) => format!("{c:+.1}%"),
        None => "new".into(),
    }
}

/// The header lines both the table and the Markdown start with.
fn header(meta: &Meta) -> Vec<String> {
    let mut lines = vec![meta.summary()];
    if meta.partial() {
        lines.push(format!(
            "partial run: only what matches {} (with the rcu-rs reference of each row)",
            meta.filters
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if let Some(b) = &meta.baseline {
        lines.push(format!(
            "change = against baseline {b:?}, in percent of its time (negative: faster now; no significance test)"
        ));
    }
    lines
}

/// The human-readable table.
pub fn table(results: &Results) -> String {
    let meta = &results.meta;
    let cmp = meta.baseline.is_some();
    let mut out = String::new();
    for l in header(meta) {
        let _ = writeln!(out, "rcu-bench {l}");
    }
    for g in &results.groups {
        let _ = writeln!(out, "\n## {} ({})", g.name, g.unit);
        let width = |s: &str| s.chars().count();
        let ow = g
            .rows
            .iter()
            .map(|r| width(&r.operation))
            .fold(9, usize::max);
        let pw = g
            .rows
            .iter()
            .flat_map(|r| &r.peers)
            .map(|p| width(&p.subject))
            .fold(4, usize::max);
        let _ = write!(out, "{:<ow$} {:>11}", "operation", "rcu-rs");
        if cmp {
            let _ = write!(out, " {:>8}", "change");
        }
        let _ = write!(out, "  {:<pw$} {:>11}", "peer", "peer time");
        if cmp {
            let _ = write!(out, " {:>8}", "change");
        }
        let _ = writeln!(out, " {:>8}", "ratio");
        for r in &g.rows {
            let _ = write!(out, "{:<ow$} {:>11}", r.operation, fmt_ns(r.ours.ns));
            if cmp {
                let _ = write!(out, " {:>8}", fmt_change(&r.ours));
            }
            let _ = writeln!(out, "  {}", r.ours.subject);
            for p in &r.peers {
                let _ = write!(out, "{:<ow$} {:>11}", "", "");
                if cmp {
                    let _ = write!(out, " {:>8}", "");
                }
                let _ = write!(out, "  {:<pw$} {:>11}", p.subject, fmt_ns(p.ns));
                if cmp {
                    let _ = write!(out, " {:>8}", fmt_change(p));
                }
                let _ = writeln!(out, " {:>7.2}x", p.ratio);
            }
        }
    }
    out.push_str("\nratio = peer time / rcu-rs time (above 1: rcu-rs is faster)\n");
    out
}

/// The table as Markdown, for the README.
pub fn markdown(results: &Results) -> String {
    let meta = &results.meta;
    let cmp = meta.baseline.is_some();
    let mut out = String::new();
    for l in header(meta) {
        let _ = writeln!(out, "Measured: {l}.\n");
    }
    for g in &results.groups {
        let _ = writeln!(out, "**{}** ({})\n", g.name, g.unit);
        if cmp {
            out.push_str("| operation | rcu-rs | change | peer | peer time | change | ratio |\n|---|---:|---:|---|---:|---:|---:|\n");
        } else {
            out.push_str(
                "| operation | rcu-rs | peer | peer time | ratio |\n|---|---:|---|---:|---:|\n",
            );
        }
        for r in &g.rows {
            for (i, p) in r.peers.iter().enumerate() {
                let first = i == 0;
                let op = if first { r.operation.as_str() } else { "" };
                let ours = if first {
                    fmt_ns(r.ours.ns)
                } else {
                    String::new()
                };
                if cmp {
                    let oc = if first {
                        fmt_change(&r.ours)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "| {op} | {ours} | {oc} | {} | {} | {} | {:.2}x |",
                        p.subject,
                        fmt_ns(p.ns),
                        fmt_change(p),
                        p.ratio
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "| {op} | {ours} | {} | {} | {:.2}x |",
                        p.subject,
                        fmt_ns(p.ns),
                        p.ratio
                    );
                }
            }
        }
        out.push('\n');
    }
    out
}
