//! The comparisons, one module per group, registered in [`GROUPS`].
//!
//! A [`Task`] measures one subject doing one operation; the runner puts the
//! tasks of one operation into a row (this project's subject, the row's
//! reference, against each peer) and the rows of one [`GroupDef`] into a
//! table and a chart.
//!
//! # Adding a group
//!
//! A structure crate (`rcu-hashmap`'s "map", `rcu-radix`'s "radix",
//! `rcu-list`'s "list") or any other comparison ("config") adds its group in
//! three steps:
//!
//! 1. Add the crate to `benches/Cargo.toml` (`rcu-hashmap = { path =
//!    "../rcu-hashmap" }`, and its peers, e.g. `dashmap`).
//! 2. Add a module file `benches/src/suites/map.rs` that exposes
//!    `pub const GROUP: GroupDef` (see [`read_side`] for a table of
//!    operations drawn as bars, [`read_scaling`] for rows at 1, 2, … N
//!    threads drawn as lines):
//!
//!    ```ignore
//!    use super::{Chart, GroupDef, Settings, Task};
//!
//!    pub const GROUP: GroupDef = GroupDef {
//!        name: "map",
//!        unit: "ns per operation, lower is better",
//!        chart: Chart::Bars,
//!        tasks,
//!    };
//!
//!    fn tasks(_: &Settings) -> Vec<Task> {
//!        let op = "get, 1 thread, 1 000 keys";
//!        vec![
//!            Task::ours(GROUP.name, op, "rcu-hashmap get", |s| todo!()),
//!            Task::peer(GROUP.name, op, "dashmap get", |s| todo!()),
//!        ]
//!    }
//!    ```
//!
//!    For scaling rows, [`scaling_tasks`] makes one task per thread count of
//!    [`Settings::thread_counts`] from one closure per subject; give them a
//!    group of their own with `chart: Chart::Lines` ("map scaling").
//! 3. Declare the module below (`pub mod map;`) and add its `GROUP` to
//!    [`GROUPS`] (one line).
//!
//! Every operation needs exactly one `Task::ours` (the reference the ratios
//! are computed against); the group's `name` is what `--filter` and the file
//! names (`map.svg`) use. The tests in `benches/tests/runner.rs` check every
//! registered group end to end, so nothing else changes.

use std::rc::Rc;
use std::time::Duration;

pub mod config;
pub mod grace_period;
pub mod list;
pub mod map;
pub mod radix;
pub mod read_scaling;
pub mod read_side;

/// Every group, in run and report order. Add a group here (one line).
pub const GROUPS: &[GroupDef] = &[
    read_side::GROUP,
    grace_period::GROUP,
    read_scaling::GROUP,
    map::GROUP,
    list::GROUP,
    radix::GROUP,
    config::GROUP,
];

/// How a group is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chart {
    /// One bar per subject per operation (log scale).
    Bars,
    /// x = threads, one line per subject; every task needs `threads`.
    Lines,
}

/// One group of comparisons: a table and a chart.
#[derive(Clone, Copy, Debug)]
pub struct GroupDef {
    /// The group's name (unique; `--filter` matches it, its file name is
    /// derived from it).
    pub name: &'static str,
    /// What the numbers mean, with the unit ("ns per …, lower is better").
    pub unit: &'static str,
    /// How the group is drawn.
    pub chart: Chart,
    /// The group's tasks, in run order.
    pub tasks: fn(&Settings) -> Vec<Task>,
}

impl GroupDef {
    /// The name as a file name: `read side` → `read-side`.
    pub fn slug(&self) -> String {
        slug(self.name)
    }
}

/// `name` with everything but ASCII letters and digits turned into `-`.
pub fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// How long each measurement runs, and up to how many threads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Wall-clock time of each measurement.
    pub duration: Duration,
    /// The most threads of the scaling rows (the machine's CPUs unless
    /// `--threads` says otherwise).
    pub threads: usize,
}

impl Settings {
    /// The thread counts of the scaling rows: 1, 2, … `threads` (every
    /// count: on a big machine, pass a smaller `--threads` for a shorter
    /// run).
    pub fn thread_counts(&self) -> Vec<usize> {
        (1..=self.threads.max(1)).collect()
    }
}

/// A measurement: returns nanoseconds (per operation, or a median latency).
pub type Measure = Box<dyn Fn(&Settings) -> f64>;

/// A prepared single-thread measurement: each call runs the operation for
/// the given time and returns nanoseconds per operation.
pub type Sampler = Box<dyn FnMut(Duration) -> f64>;

/// Sets up a [`Sampler`] (builds and fills the structure it measures).
pub type Prepare = Rc<dyn Fn(&Settings) -> Sampler>;

/// One measurement: `subject` doing `operation`.
pub struct Task {
    /// The group's name.
    pub group: &'static str,
    /// The row: what is measured, in words that say how (threads, load, what
    /// the number is: "2 threads at once, idle (per-thread mean)").
    pub operation: String,
    /// Who is measured.
    pub subject: String,
    /// Whether `subject` is this project's (the row's reference).
    pub ours: bool,
    /// Threads of a scaling row (the x coordinate of a line chart).
    pub threads: Option<usize>,
    /// Runs the measurement.
    pub run: Measure,
    /// For a single-thread measurement that may be interleaved with the
    /// other subjects of its row (see [`Task::sampled`]): its set-up.
    pub sampled: Option<Prepare>,
}

impl Task {
    /// This project's measurement of `operation`: the row's reference.
    pub fn ours(
        group: &'static str,
        operation: impl Into<String>,
        subject: impl Into<String>,
        run: impl Fn(&Settings) -> f64 + 'static,
    ) -> Task {
        Task {
            group,
            operation: operation.into(),
            subject: subject.into(),
            ours: true,
            threads: None,
            run: Box::new(run),
            sampled: None,
        }
    }

    /// A single-thread measurement that the runner interleaves with the
    /// other sampled subjects of its row: every subject is set up first,
    /// then each runs one slice in turn, [`SLICES`](crate::harness::SLICES)
    /// rounds, and each reports its fastest slice. On a shared machine
    /// whose speed drifts over seconds, every subject of the row then meets
    /// the same drift. Run alone (its row filtered down to it) it is
    /// [`ns_per_op`](crate::harness::ns_per_op) on the sampler's operation.
    pub fn sampled(
        ours: bool,
        group: &'static str,
        operation: impl Into<String>,
        subject: impl Into<String>,
        prepare: impl Fn(&Settings) -> Sampler + 'static,
    ) -> Task {
        let prepare: Prepare = Rc::new(prepare);
        let alone = Rc::clone(&prepare);
        Task {
            ours,
            sampled: Some(prepare),
            ..Task::ours(group, operation, subject, move |s: &Settings| {
                let mut sampler = alone(s);
                crate::harness::fastest_slice(s.duration, &mut sampler)
            })
        }
    }

    /// A peer's measurement of `operation`.
    pub fn peer(
        group: &'static str,
        operation: impl Into<String>,
        subject: impl Into<String>,
        run: impl Fn(&Settings) -> f64 + 'static,
    ) -> Task {
        Task {
            ours: false,
            ..Task::ours(group, operation, subject, run)
        }
    }

    /// The same task, as the point at `threads` of a scaling row.
    pub fn at_threads(self, threads: usize) -> Task {
        Task {
            threads: Some(threads),
            ..self
        }
    }

    /// `group/operation/subject`.
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.group, self.operation, self.subject)
    }

    /// Whether `filter` (lower case) is part of the group's name (or its
    /// file name), the operation, the subject, or the whole path.
    pub fn matches(&self, filter: &str) -> bool {
        let filter = filter.to_lowercase();
        [
            self.group.to_string(),
            slug(self.group),
            self.operation.clone(),
            self.subject.clone(),
            self.path(),
        ]
        .iter()
        .any(|s| s.to_lowercase().contains(&filter))
    }
}

/// One subject of a scaling group: its name, whether it is ours, and its
/// measurement at a given number of threads.
pub struct ScalingSubject {
    /// Who is measured.
    pub subject: String,
    /// Whether it is this project's (the rows' reference).
    pub ours: bool,
    /// Measures at `threads` threads.
    pub run: fn(&Settings, usize) -> f64,
}

/// One task per subject and thread count of [`Settings::thread_counts`]; the
/// operation of each row is `operation(threads)`.
pub fn scaling_tasks(
    group: &'static str,
    settings: &Settings,
    operation: impl Fn(usize) -> String,
    subjects: &[ScalingSubject],
) -> Vec<Task> {
    let mut tasks = Vec::new();
    for threads in settings.thread_counts() {
        for s in subjects {
            let run = s.run;
            let mut task = Task::ours(group, operation(threads), s.subject.clone(), move |set| {
                run(set, threads)
            })
            .at_threads(threads);
            task.ours = s.ours;
            tasks.push(task);
        }
    }
    tasks
}

/// Every task of every group, in run order.
pub fn all_tasks(settings: &Settings) -> Vec<Task> {
    GROUPS.iter().flat_map(|g| (g.tasks)(settings)).collect()
}

/// The tasks that `filters` select (all of them without a filter). A row
/// with a selected peer also gets its reference (ours), so that a filter on
/// a peer's name still yields ratios. Returns the tasks and how many
/// references were added that way.
pub fn select(tasks: Vec<Task>, filters: &[String]) -> (Vec<Task>, usize) {
    if filters.is_empty() {
        return (tasks, 0);
    }
    let chosen: Vec<bool> = tasks
        .iter()
        .map(|t| filters.iter().any(|f| t.matches(f)))
        .collect();
    let mut added = 0;
    let keep: Vec<bool> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if chosen[i] {
                return true;
            }
            let needed = t.ours
                && tasks
                    .iter()
                    .zip(&chosen)
                    .any(|(o, &c)| c && o.group == t.group && o.operation == t.operation);
            added += usize::from(needed);
            needed
        })
        .collect();
    let tasks = tasks
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect();
    (tasks, added)
}

/// The label of this project's read side in the process-wide domain, which
/// says whether it uses membarrier here.
pub fn ours_label() -> String {
    rcu_core::register_thread();
    if rcu_core::stats().membarrier {
        "rcu-rs read_lock (membarrier)".into()
    } else {
        "rcu-rs read_lock (fence: no membarrier here)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(threads: usize) -> Settings {
        Settings {
            duration: Duration::from_millis(1),
            threads,
        }
    }

    #[test]
    fn thread_counts() {
        assert_eq!(settings(1).thread_counts(), [1]);
        assert_eq!(settings(2).thread_counts(), [1, 2]);
        assert_eq!(settings(8).thread_counts(), (1..=8).collect::<Vec<_>>());
        assert_eq!(settings(12).thread_counts(), (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn group_names_are_unique_and_every_row_has_one_reference() {
        let tasks = all_tasks(&settings(3));
        for (i, g) in GROUPS.iter().enumerate() {
            assert!(GROUPS[..i].iter().all(|o| o.slug() != g.slug()));
            let mine: Vec<&Task> = tasks.iter().filter(|t| t.group == g.name).collect();
            assert!(!mine.is_empty(), "{} has no tasks", g.name);
            for t in &mine {
                let refs = mine
                    .iter()
                    .filter(|o| o.operation == t.operation && o.ours)
                    .count();
                assert_eq!(refs, 1, "{}", t.path());
                assert_eq!(t.threads.is_some(), g.chart == Chart::Lines, "{}", t.path());
            }
        }
    }

    #[test]
    fn a_filter_on_a_peer_brings_the_reference_along() {
        let all = all_tasks(&settings(2));
        let n = all.len();
        let (picked, added) = select(all, &["arc_swap".into()]);
        assert!(added > 0 && picked.len() < n);
        for t in &picked {
            assert!(t.ours || t.matches("arc_swap"), "{}", t.path());
        }
        let (none, _) = select(all_tasks(&settings(2)), &["no such thing".into()]);
        assert!(none.is_empty());
        let (by_group, added) = select(all_tasks(&settings(2)), &["GRACE-periods".into()]);
        assert_eq!(added, 0);
        assert!(!by_group.is_empty() && by_group.iter().all(|t| t.group == "grace periods"));
    }
}
