//! SVG charts of a group, drawn with plotters: horizontal bars (one per
//! subject per operation, log scale) for a table of operations, lines (x =
//! threads, one per subject) for a scaling group.

use crate::report::{Group, Meta, fmt_ns};
use crate::suites::Chart;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 1100;
const FONT: &str = "sans-serif";

/// The group's chart as an SVG document.
pub fn svg(group: &Group, meta: &Meta) -> Result<String, String> {
    let mut out = String::new();
    match group.chart {
        Chart::Bars => bars(group, meta, &mut out),
        Chart::Lines => lines(group, meta, &mut out),
    }
    .map_err(|e| format!("chart of {}: {e}", group.name))?;
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn caption(group: &Group, meta: &Meta) -> String {
    format!(
        "{} — {} CPUs, {}, {:.2} s per measurement, {}",
        group.name,
        meta.cpus,
        if meta.membarrier {
            "membarrier"
        } else {
            "fence fallback"
        },
        meta.duration_s,
        meta.date
    )
}

/// A log-scale range around `values`, a little wider on each side.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.1..10.0;
    }
    (lo / 2.0).max(1e-3)..hi * 3.0
}

/// One bar: a measurement of row `row`.
struct Bar {
    row: usize,
    ours: bool,
    subject: String,
    ns: f64,
}

fn bars(group: &Group, meta: &Meta, out: &mut String) -> DrawResult {
    // One bar per measurement, top to bottom in table order.
    let mut bars: Vec<Bar> = Vec::new();
    for (row, r) in group.rows.iter().enumerate() {
        for (i, m) in r.measurements().enumerate() {
            bars.push(Bar {
                row,
                ours: i == 0,
                subject: m.subject.clone(),
                ns: m.ns,
            });
        }
    }
    let n = bars.len();
    // Empty slots below the bars hold the legend (one line per operation).
    let total = n + group.rows.len() + 1;
    let height = 150 + 26 * total as u32;
    {
        let root = SVGBackend::with_string(out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_range = log_range(bars.iter().map(|b| b.ns));
        // Integer coordinates (plotters formats their labels): bar `i` from
        // the top spans 10 units, its label sits at the middle.
        let slot = |i: usize| 10 * (total - 1 - i) as i32;
        let y_keys: Vec<i32> = (0..n).map(|i| slot(i) + 5).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(caption(group, meta), (FONT, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(330)
            .build_cartesian_2d(
                x_range.log_scale(),
                (0..10 * total as i32).with_key_points(y_keys),
            )?;
        let label_of = |y: &i32| {
            let i = (*y / 10) as usize;
            bars.get(total.wrapping_sub(1).wrapping_sub(i))
                .map(|b| b.subject.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(format!("{} (log scale)", group.unit))
            .y_desc("subject (solid: rcu-rs, the row's reference; pale: its peers)")
            .y_label_formatter(&label_of)
            .x_label_formatter(&|x| fmt_ns(*x))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .draw()?;
        let floor = chart.x_range().start;
        for (op, row) in group.rows.iter().enumerate() {
            let color = Palette99::pick(op).to_rgba();
            let mine: Vec<(usize, &Bar)> = bars
                .iter()
                .enumerate()
                .filter(|(_, b)| b.row == op)
                .collect();
            chart
                .draw_series(mine.iter().map(|&(i, b)| {
                    let y = slot(i);
                    // Solid: rcu-rs, the row's reference; pale: its peers.
                    let style = if b.ours {
                        color.filled()
                    } else {
                        color.mix(0.45).filled()
                    };
                    Rectangle::new([(floor, y + 2), (b.ns, y + 8)], style)
                }))?
                .label(row.operation.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
            let style =
                TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series(mine.iter().map(|&(i, b)| {
                let y = slot(i) + 5;
                Text::new(format!(" {}", fmt_ns(b.ns)), (b.ns, y), style.clone())
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        root.present()?;
    }
    Ok(())
}

fn lines(group: &Group, meta: &Meta, out: &mut String) -> DrawResult {
    // One series per subject, in the order they first appear.
    let mut series: Vec<(String, Vec<(i32, f64)>)> = Vec::new();
    for r in &group.rows {
        let x = r.threads.unwrap_or(1) as i32;
        for m in r.measurements() {
            match series.iter_mut().find(|s| s.0 == m.subject) {
                Some(s) => s.1.push((x, m.ns)),
                None => series.push((m.subject.clone(), vec![(x, m.ns)])),
            }
        }
    }
    let mut xs: Vec<i32> = group
        .rows
        .iter()
        .map(|r| r.threads.unwrap_or(1) as i32)
        .collect();
    xs.sort_unstable();
    xs.dedup();
    let x_max = xs.last().copied().unwrap_or(1);
    {
        let root = SVGBackend::with_string(out, (WIDTH, 620)).into_drawing_area();
        root.fill(&WHITE)?;
        let y_range = log_range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
        let mut chart = ChartBuilder::on(&root)
            .caption(caption(group, meta), (FONT, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (0..x_max + 1).with_key_points(xs.clone()),
                y_range.log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("threads reading at once")
            .y_desc(format!("{} (log scale)", group.unit))
            .y_label_formatter(&|y| fmt_ns(*y))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()?;
        for (i, (subject, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let width = if i == 0 { 3 } else { 2 };
            chart
                .draw_series(
                    LineSeries::new(points.iter().copied(), color.stroke_width(width))
                        .point_size(4),
                )?
                .label(subject.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(width))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()?;
        root.present()?;
    }
    Ok(())
}
