//! Results: rows of "ours against each peer", printed as a table and written
//! as JSON, CSV and one SVG chart per group.

use std::fmt::Write as _;

/// One measured subject.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Who was measured.
    pub subject: String,
    /// Nanoseconds (lower is better).
    pub ns: f64,
}

/// One operation: this project's measurement and each peer's.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured.
    pub operation: String,
    /// This project.
    pub ours: Measurement,
    /// The peers, in run order.
    pub peers: Vec<Measurement>,
}

impl Row {
    /// How many times slower the peer is than ours (> 1: we are faster).
    pub fn ratio(&self, peer: &Measurement) -> f64 {
        peer.ns / self.ours.ns
    }
}

/// A group of rows with a common unit.
#[derive(Clone, Debug)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// What the numbers mean.
    pub unit: String,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// Where and when the results were measured.
#[derive(Clone, Debug)]
pub struct Meta {
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// CPU model, if known.
    pub cpu: String,
    /// Logical CPUs available.
    pub cpus: usize,
    /// Whether the process-wide domain uses membarrier.
    pub membarrier: bool,
    /// Seconds per measurement.
    pub duration_s: f64,
    /// Reader threads of the multi-threaded rows.
    pub threads: usize,
}

impl Meta {
    /// "DATE on CPU (N CPUs, MODE), S s per measurement".
    pub fn summary(&self) -> String {
        format!(
            "{} on {} ({} CPUs, {}), {:.2} s per measurement",
            self.date,
            self.cpu,
            self.cpus,
            if self.membarrier {
                "membarrier"
            } else {
                "fence fallback"
            },
            self.duration_s
        )
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.2} ns")
    }
}

/// The human-readable table.
pub fn table(meta: &Meta, groups: &[Group]) -> String {
    let mut out = format!("rcu-bench {}\n", meta.summary());
    for g in groups {
        let _ = writeln!(out, "\n## {} ({})", g.name, g.unit);
        let _ = writeln!(
            out,
            "{:<48} {:>11}  {:<46} {:>11} {:>8}",
            "operation", "rcu-rs", "peer", "peer", "ratio"
        );
        for r in &g.rows {
            let _ = writeln!(
                out,
                "{:<48} {:>11}  {}",
                r.operation,
                fmt_ns(r.ours.ns),
                r.ours.subject
            );
            for p in &r.peers {
                let _ = writeln!(
                    out,
                    "{:<48} {:>11}  {:<46} {:>11} {:>7.2}x",
                    "",
                    "",
                    p.subject,
                    fmt_ns(p.ns),
                    r.ratio(p)
                );
            }
        }
    }
    out.push_str("\nratio = peer time / rcu-rs time (above 1: rcu-rs is faster)\n");
    out
}

/// The table as Markdown, for the README.
pub fn markdown(meta: &Meta, groups: &[Group]) -> String {
    let mut out = format!("Measured {}.\n\n", meta.summary());
    for g in groups {
        let _ = writeln!(out, "**{}** ({})\n", g.name, g.unit);
        out.push_str(
            "| operation | rcu-rs | peer | peer time | ratio |\n|---|---:|---|---:|---:|\n",
        );
        for r in &g.rows {
            for (i, p) in r.peers.iter().enumerate() {
                let (op, ours) = if i == 0 {
                    (r.operation.as_str(), fmt_ns(r.ours.ns))
                } else {
                    ("", String::new())
                };
                let _ = writeln!(
                    out,
                    "| {op} | {ours} | {} | {} | {:.2}x |",
                    p.subject,
                    fmt_ns(p.ns),
                    r.ratio(p)
                );
            }
        }
        out.push('\n');
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number at full precision (a ratio can be far below 0.0001).
fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:e}")
    } else {
        "null".into()
    }
}

/// The results as JSON.
pub fn json(meta: &Meta, groups: &[Group]) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(
        out,
        "  \"date\": {}, \"cpu\": {}, \"cpus\": {}, \"membarrier\": {}, \"duration_s\": {}, \"threads\": {},",
        json_str(&meta.date),
        json_str(&meta.cpu),
        meta.cpus,
        meta.membarrier,
        json_num(meta.duration_s),
        meta.threads
    );
    out.push_str("  \"groups\": [\n");
    for (gi, g) in groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"name\": {}, \"unit\": {}, \"rows\": [",
            json_str(&g.name),
            json_str(&g.unit)
        );
        for (ri, r) in g.rows.iter().enumerate() {
            let peers: Vec<String> = r
                .peers
                .iter()
                .map(|p| {
                    format!(
                        "{{\"subject\": {}, \"ns\": {}, \"ratio\": {}}}",
                        json_str(&p.subject),
                        json_num(p.ns),
                        json_num(r.ratio(p))
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "      {{\"operation\": {}, \"ours\": {{\"subject\": {}, \"ns\": {}}}, \"peers\": [{}]}}{}",
                json_str(&r.operation),
                json_str(&r.ours.subject),
                json_num(r.ours.ns),
                peers.join(", "),
                if ri + 1 < g.rows.len() { "," } else { "" }
            );
        }
        let _ = writeln!(
            out,
            "    ]}}{}",
            if gi + 1 < groups.len() { "," } else { "" }
        );
    }
    out.push_str("  ]\n}\n");
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The results as CSV: one line per measurement.
pub fn csv(groups: &[Group]) -> String {
    let mut out = String::from("group,operation,subject,ours,ns,ratio\n");
    for g in groups {
        for r in &g.rows {
            let _ = writeln!(
                out,
                "{},{},{},true,{:.4},1.0",
                csv_field(&g.name),
                csv_field(&r.operation),
                csv_field(&r.ours.subject),
                r.ours.ns
            );
            for p in &r.peers {
                let _ = writeln!(
                    out,
                    "{},{},{},false,{:.4},{:.4}",
                    csv_field(&g.name),
                    csv_field(&r.operation),
                    csv_field(&p.subject),
                    p.ns,
                    r.ratio(p)
                );
            }
        }
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of one group, log-scaled (values span from
/// fractions of a nanosecond to milliseconds).
pub fn svg(group: &Group) -> String {
    const W: f64 = 980.0;
    const LABEL: f64 = 380.0;
    const BAR_H: f64 = 16.0;
    let bars: usize = group.rows.iter().map(|r| 1 + r.peers.len()).sum();
    let height = 50.0 + bars as f64 * (BAR_H + 4.0) + group.rows.len() as f64 * 26.0;
    let values = group
        .rows
        .iter()
        .flat_map(|r| std::iter::once(&r.ours).chain(&r.peers))
        .map(|m| m.ns);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = ((lo.max(0.01) / 2.0).log10(), (hi.max(0.02) * 2.0).log10());
    let x = |v: f64| (v.max(0.01).log10() - lo) / (hi - lo).max(1e-9) * (W - LABEL - 90.0);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        out,
        "<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{} — {} (log scale)</text>",
        xml(&group.name),
        xml(&group.unit)
    );
    let mut y = 40.0;
    for r in &group.rows {
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{}</text>",
            y + 12.0,
            xml(&r.operation)
        );
        y += 20.0;
        for (m, ours) in std::iter::once((&r.ours, true)).chain(r.peers.iter().map(|p| (p, false)))
        {
            let w = x(m.ns).max(1.0);
            let fill = if ours { "#d9480f" } else { "#868e96" };
            let _ = writeln!(
                out,
                "<text x=\"20\" y=\"{:.0}\">{}</text>",
                y + 12.0,
                xml(&m.subject)
            );
            let _ = writeln!(
                out,
                "<rect x=\"{LABEL}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{fill}\"/>"
            );
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.0}\">{}</text>",
                LABEL + w + 6.0,
                y + 12.0,
                fmt_ns(m.ns)
            );
            y += BAR_H + 4.0;
        }
        y += 6.0;
    }
    out.push_str("</svg>\n");
    out
}
