//! Charts drawn on the server as inline SVG: the daily MME over time (decided points as a solid line,
//! planned taper steps as a dashed step line, the 50 and 90 MME lines marked) and simple bar charts.
//! Every chart carries a text title and a table elsewhere on the page, so nothing depends on seeing it.

use std::fmt::Write;

use chrono::NaiveDate;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 32.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The daily MME chart. `past` are decided values; `planned` are taper steps (date, MME) still ahead.
pub fn mme_chart(title: &str, past: &[(NaiveDate, f64)], planned: &[(NaiveDate, f64)], today: NaiveDate) -> String {
    let mut svg = String::new();
    let all: Vec<&(NaiveDate, f64)> = past.iter().chain(planned.iter()).collect();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}"><title>{}</title>"#,
        escape(title),
        escape(title)
    );
    if all.is_empty() {
        svg.push_str(r#"<text x="360" y="120" text-anchor="middle" class="muted">No MME recorded yet</text></svg>"#);
        return svg;
    }
    // At least 30 days wide, so a single decision does not sit on the axis.
    let first = all.iter().map(|(d, _)| *d).min().unwrap_or(today).min(today - chrono::Days::new(30));
    let last = all.iter().map(|(d, _)| *d).max().unwrap_or(today).max(today + chrono::Days::new(7));
    let span_days = ((last - first).num_days().max(1)) as f64;
    let max_mme = all.iter().map(|(_, m)| *m).fold(100.0_f64, f64::max) * 1.1;
    let x = |date: NaiveDate| LEFT + (date - first).num_days() as f64 / span_days * (WIDTH - LEFT - RIGHT);
    let y = |mme: f64| TOP + (1.0 - mme / max_mme) * (HEIGHT - TOP - BOTTOM);
    // Axes and the 50 / 90 MME guide lines.
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" class="axis"/>"#,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM
    );
    for guide in [50.0, 90.0] {
        if guide < max_mme {
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" class="guide"/><text x="4" y="{ty:.1}" class="label">{guide:.0} MME</text>"#,
                WIDTH - RIGHT,
                y = y(guide),
                ty = y(guide) + 4.0
            );
        }
    }
    let tx = x(today);
    let _ = write!(
        svg,
        r#"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{}" class="today"/><text x="{tx:.1}" y="{}" text-anchor="middle" class="label">today</text>"#,
        HEIGHT - BOTTOM,
        TOP - 4.0
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="{}" class="label">{first}</text><text x="{}" y="{}" text-anchor="end" class="label">{last}</text>"#,
        HEIGHT - 12.0,
        WIDTH - RIGHT,
        HEIGHT - 12.0
    );
    if !past.is_empty() {
        let points: Vec<String> = past.iter().map(|(d, m)| format!("{:.1},{:.1}", x(*d), y(*m))).collect();
        let _ = write!(svg, r#"<polyline points="{}" class="past"/>"#, points.join(" "));
        for (d, m) in past {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" class="past-dot"><title>{d}: {m:.0} MME</title></circle>"#,
                x(*d),
                y(*m)
            );
        }
    }
    if !planned.is_empty() {
        // A taper holds each step until the next one: draw it as steps.
        let mut points = Vec::new();
        let mut previous: Option<f64> = past.last().map(|(_, m)| *m);
        for (d, m) in planned {
            if let Some(prev) = previous {
                points.push(format!("{:.1},{:.1}", x(*d), y(prev)));
            }
            points.push(format!("{:.1},{:.1}", x(*d), y(*m)));
            previous = Some(*m);
        }
        let _ = write!(svg, r#"<polyline points="{}" class="planned"/>"#, points.join(" "));
        for (d, m) in planned {
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="6" height="6" class="planned-dot"><title>planned {d}: {m:.0} MME</title></rect>"#,
                x(*d) - 3.0,
                y(*m) - 3.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A horizontal bar chart of labelled counts.
pub fn bar_chart(title: &str, bars: &[(String, i64)]) -> String {
    let row = 28.0;
    let height = TOP + row * bars.len().max(1) as f64 + 8.0;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart bars" viewBox="0 0 480 {height:.0}" role="img" aria-label="{}"><title>{}</title>"#,
        escape(title),
        escape(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let top = TOP + i as f64 * row;
        let width = (*value as f64 / max) * 260.0;
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.1}" class="label">{}</text><rect x="170" y="{:.1}" width="{width:.1}" height="18" class="bar"/><text x="{:.1}" y="{:.1}" class="label">{value}</text>"#,
            top + 13.0,
            escape(label),
            top,
            174.0 + width,
            top + 13.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_past_and_planned_lines_and_escapes_titles() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 12, day).unwrap();
        let svg = mme_chart("MME <x>", &[(d(1), 120.0), (d(5), 110.0)], &[(d(20), 100.0), (d(27), 90.0)], d(10));
        assert!(svg.contains(r#"class="past""#));
        assert!(svg.contains(r#"class="planned""#));
        assert!(svg.contains("MME &lt;x&gt;"));
        assert!(svg.contains("90 MME"));
    }
}
