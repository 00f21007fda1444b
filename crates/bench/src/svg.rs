//! A small SVG line-chart writer: axes, ticks, grid, one polyline with markers per series, and a
//! legend. No dependencies; the output is standalone SVG 1.1 that browsers and GitHub render.
use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base-2 logarithmic (concurrency levels 1, 2, 4, …); values must be positive.
    Log2,
}

/// One line of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub series: Vec<Series>,
}

impl Chart {
    /// The chart as an SVG document. Points that cannot be drawn (non-finite, or ≤ 0 on a log
    /// axis) are left out; a chart without points still has its frame and title.
    pub fn render(&self) -> String {
        let fx = |x: f64| if self.x_scale == Scale::Log2 { x.log2() } else { x };
        let drawable = |&(x, y): &(f64, f64)| {
            x.is_finite() && y.is_finite() && (self.x_scale == Scale::Linear || x > 0.0)
        };
        let points: Vec<(f64, f64)> =
            self.series.iter().flat_map(|s| s.points.iter().copied().filter(drawable)).collect();
        let (x_lo, x_hi) = bounds(points.iter().map(|p| fx(p.0)), false);
        let (_, y_hi) = bounds(points.iter().map(|p| p.1), true);
        let y_ticks = nice_ticks(0.0, y_hi);
        let y_top = y_ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (fx(x) - x_lo) / (x_hi - x_lo) * pw;
        let sy = |y: f64| TOP + ph - y / y_top * ph;

        let mut s = String::new();
        let _ = write!(
            s,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>
<text x="{tx}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>
"#,
            tx = LEFT + pw / 2.0,
            title = escape(&self.title)
        );
        for &t in &y_ticks {
            let y = sy(t);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
                x2 = LEFT + pw,
                tx = LEFT - 6.0,
                ty = y + 4.0,
                label = escape(&tick_label(t))
            );
        }
        for t in self.x_ticks(&points) {
            let x = sx(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{y2:.1}" stroke="#e0e0e0"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle">{label}</text>"##,
                y2 = TOP + ph,
                ty = TOP + ph + 18.0,
                label = escape(&tick_label(t))
            );
        }
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>
<text x="{xl:.1}" y="{xly:.1}" text-anchor="middle">{x_label}</text>
<text x="18" y="{yly:.1}" text-anchor="middle" transform="rotate(-90 18 {yly:.1})">{y_label}</text>"#,
            xl = LEFT + pw / 2.0,
            xly = H - 16.0,
            yly = TOP + ph / 2.0,
            x_label = escape(&self.x_label),
            y_label = escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<String> = series
                .points
                .iter()
                .filter(|p| drawable(p))
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if !pts.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                    pts.join(" ")
                );
                for p in &pts {
                    let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>"#);
                }
            }
            let ly = TOP + 10.0 + i as f64 * 20.0;
            let lx = W - RIGHT + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{x2}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{tx}" y="{ty}">{label}</text>"#,
                x2 = lx + 22.0,
                tx = lx + 28.0,
                ty = ly + 4.0,
                label = escape(&series.label)
            );
        }
        s.push_str("</svg>\n");
        s
    }

    fn x_ticks(&self, points: &[(f64, f64)]) -> Vec<f64> {
        match self.x_scale {
            Scale::Linear => {
                let (lo, hi) = bounds(points.iter().map(|p| p.0), false);
                nice_ticks(lo, hi)
            }
            Scale::Log2 => {
                let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
                xs.sort_by(f64::total_cmp);
                xs.dedup();
                xs
            }
        }
    }
}

/// (min, max) of `values`, widened so the range is never empty; from zero if `from_zero`.
fn bounds(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if (hi - lo).abs() < f64::EPSILON {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// Round tick values (1, 2 or 5 × 10^k apart) covering `lo..=hi`, at most about 8 of them.
pub fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo, lo + 1.0];
    }
    let raw = (hi - lo) / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let first = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    let mut t = first;
    while t < hi + step * 0.999 && ticks.len() < 20 {
        ticks.push(t);
        t += step;
    }
    ticks
}

fn tick_label(t: f64) -> String {
    if t.abs() >= 10_000.0 {
        format!("{}k", crate::record::format_number(t / 1000.0))
    } else if (t - t.round()).abs() < 1e-9 {
        format!("{}", t.round() as i64)
    } else {
        format!("{t:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(scale: Scale, series: Vec<Series>) -> Chart {
        Chart {
            title: "p99 <latency> & co".into(),
            x_label: "connections".into(),
            y_label: "µs".into(),
            x_scale: scale,
            series,
        }
    }

    fn line(label: &str, points: &[(f64, f64)]) -> Series {
        Series { label: label.into(), points: points.to_vec() }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = nice_ticks(0.0, 4583.0);
        assert!(t.first().copied() == Some(0.0) && t.last().copied().unwrap_or(0.0) >= 4583.0);
        assert!(t.len() <= 9);
    }

    #[test]
    fn a_chart_has_one_polyline_per_series_and_escaped_text() {
        let svg = chart(
            Scale::Log2,
            vec![line("agent", &[(1.0, 10.0), (8.0, 20.0), (64.0, 40.0)]), line("IMDS", &[(1.0, 9.0)])],
        )
        .render();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("p99 &lt;latency&gt; &amp; co"));
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn the_svg_is_well_formed() {
        let svg = chart(Scale::Linear, vec![line("a", &[(250.0, 3.0), (2000.0, 37.0)])]).render();
        assert_well_formed(&svg);
        assert_well_formed(&chart(Scale::Log2, vec![]).render());
    }

    #[test]
    fn undrawable_points_are_left_out() {
        let svg = chart(Scale::Log2, vec![line("a", &[(0.0, 1.0), (2.0, f64::NAN), (4.0, 2.0)])]).render();
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    /// Tags balance and nest, attributes are quoted, and no raw `&` or `<` appears in text.
    fn assert_well_formed(svg: &str) {
        let body = svg.split_once("?>").map_or(svg, |(_, b)| b);
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            assert!(!text.contains('&') || text.contains("&amp;") || text.contains("&lt;"), "{text}");
            let end = rest[start..].find('>').map(|e| start + e).unwrap_or_else(|| panic!("unclosed tag"));
            let tag = &rest[start + 1..end];
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or_default().to_string());
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
    }
}
