//! A small hand-written SVG plot: latency (ms, log scale) by percentile on the usual `1/(1-p)`
//! log scale, one polyline per server, with a legend.

use std::fmt::Write as _;

use crate::result::PercentilePoint;

const W: f64 = 780.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// `log10(1/(1-p))` for a percentile in %; None at 100.
fn nines(percentile: f64) -> Option<f64> {
    let rest = 1.0 - percentile / 100.0;
    (rest > 1e-9).then(|| -rest.log10())
}

fn percentile_label(decade: i32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        d => format!("99.{}%", "9".repeat((d - 2) as usize)),
    }
}

fn ms_label(decade: i32) -> String {
    if decade >= 0 {
        format!("{}", 10f64.powi(decade))
    } else {
        format!("{:.*}", (-decade) as usize, 10f64.powi(decade))
    }
}

/// The opening of a plot: the SVG element, a white background and the title.
fn header(title: &str, pw: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    s
}

/// The `i`-th entry of the legend, right of the plot.
fn legend(s: &mut String, i: usize, label: &str, color: &str, pw: f64) {
    let ly = TOP + 10.0 + i as f64 * 20.0;
    let lx = LEFT + pw + 14.0;
    let _ = writeln!(
        s,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
        lx + 22.0,
        lx + 28.0,
        ly + 4.0,
        escape(label)
    );
}

/// The plot for one scenario. Series without points are left out.
pub fn latency_plot(title: &str, series: &[(String, Vec<PercentilePoint>)]) -> String {
    let series: Vec<&(String, Vec<PercentilePoint>)> =
        series.iter().filter(|(_, p)| !p.is_empty()).collect();
    let finite_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().filter_map(|q| nines(q.percentile)))
        .fold(0.0f64, f64::max);
    let xmax = finite_x.ceil().max(1.0);
    let ms = |us: u64| (us.max(1) as f64) / 1000.0;
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| ms(q.latency_us)))
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (ylo, yhi) = if lo <= hi {
        let a = lo.log10().floor();
        let b = hi.log10().ceil();
        (a, if b > a { b } else { a + 1.0 })
    } else {
        (-1.0, 2.0)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / xmax * pw;
    let py = |v: f64| TOP + ph - (v.log10() - ylo) / (yhi - ylo) * ph;

    let mut s = header(title, pw);
    // Grid and axes.
    for d in 0..=(xmax as i32) {
        let x = px(d as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            percentile_label(d)
        );
    }
    for d in (ylo as i32)..=(yhi as i32) {
        let v = 10f64.powi(d);
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            ms_label(d)
        );
        if d < yhi as i32 {
            for m in [2.0, 5.0] {
                let y = py(v * m);
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
                    LEFT + pw
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // Series.
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = points
            .iter()
            .map(|q| {
                let x = nines(q.percentile).unwrap_or(xmax).min(xmax);
                format!("{:.1},{:.1}", px(x), py(ms(q.latency_us)))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            coords.join(" ")
        );
        legend(&mut s, i, label, color, pw);
    }
    s.push_str("</svg>\n");
    s
}

/// A round step for about `n` grid lines over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A plot of series over linear axes (the soak's memory and p99 over time). The y axis starts at
/// zero so that growth is seen at its true size.
pub fn line_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let series: Vec<&(String, Vec<(f64, f64)>)> =
        series.iter().filter(|(_, p)| !p.is_empty()).collect();
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let xmax = points().map(|p| p.0).fold(0.0f64, f64::max).max(1.0);
    let ymax = points().map(|p| p.1).fold(0.0f64, f64::max).max(1.0) * 1.1;
    let (xstep, ystep) = (nice_step(xmax, 8.0), nice_step(ymax, 6.0));
    let xmax = (xmax / xstep).ceil() * xstep;
    let ymax = (ymax / ystep).ceil() * ystep;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / xmax * pw;
    let py = |y: f64| TOP + ph - y / ymax * ph;
    let mut s = header(title, pw);
    let mut x = 0.0;
    while x <= xmax + xstep / 2.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            px(x),
            TOP + ph,
            TOP + ph + 18.0,
            x
        );
        x += xstep;
    }
    let mut y = 0.0;
    while y <= ymax + ystep / 2.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ccc"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            py(y),
            LEFT + pw,
            LEFT - 6.0,
            py(y) + 4.0,
            y
        );
        y += ystep;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{0:.1}" text-anchor="middle" transform="rotate(-90 16 {0:.1})">{1}</text>"#,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            coords.join(" ")
        );
        legend(&mut s, i, label, color, pw);
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_is_well_formed() {
        let points = vec![
            PercentilePoint {
                percentile: 0.0,
                latency_us: 200,
            },
            PercentilePoint {
                percentile: 99.0,
                latency_us: 2_000,
            },
            PercentilePoint {
                percentile: 100.0,
                latency_us: 9_000,
            },
        ];
        let svg = latency_plot("a <b>", &[("x&y".into(), points), ("empty".into(), vec![])]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains("x&amp;y"));
        assert!(!svg.contains(">empty<"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains(">99%<"));
        assert!(!svg.contains("NaN"));
        let none = latency_plot("none", &[]);
        assert!(!none.contains("NaN") && !none.contains("inf"));
    }

    #[test]
    fn line_plot_is_well_formed() {
        let svg = line_plot(
            "rss",
            "minutes",
            "MiB",
            &[
                ("server".into(), vec![(0.0, 50.0), (30.0, 52.5)]),
                ("none".into(), vec![]),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(!line_plot("empty", "x", "y", &[]).contains("NaN"));
        assert_eq!(nice_step(30.0, 8.0), 5.0);
        assert_eq!(nice_step(57.0, 6.0), 10.0);
    }

    #[test]
    fn labels() {
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(3), "99.9%");
        assert_eq!(ms_label(-2), "0.01");
        assert_eq!(ms_label(2), "100");
    }
}
