//! What a run did, from goose's request log (one JSON line per request): the figures over
//! time windows and per hold of the plan, the knee of a stress run, and the plots, drawn as
//! SVG by the crate itself. goose's own HTML and JSON reports sit beside them.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::profile::Hold;

/// One line of goose's request log (the fields read here).
#[derive(Debug, Deserialize)]
struct Line {
    /// Milliseconds from the start of the run to the request's start.
    elapsed: u64,
    name: String,
    raw: Raw,
    response_time: u64,
    #[serde(default)]
    response_time_fraction_us: u64,
    success: bool,
    /// A second line for a request already logged, which a journey marked failed afterwards
    /// (a wrong body, an order cancelled).
    #[serde(default)]
    update: bool,
}

#[derive(Debug, Deserialize)]
struct Raw {
    method: String,
}

/// One request as the analysis sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: Duration,
    pub request: String,
    pub latency: Duration,
    pub failed: bool,
}

/// Reads the request log; a marked-failed update turns its request into a failure.
pub fn read_log(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the request log {}", path.display()))?;
    let mut records = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a goose request", path.display(), n + 1))?;
        let request = format!("{} {}", line.raw.method.to_uppercase(), line.name);
        if line.update {
            // The update follows its request; mark the latest such request failed.
            if let Some(r) = records
                .iter_mut()
                .rev()
                .find(|r: &&mut Record| r.request == request && !r.failed)
            {
                r.failed = true;
            }
            continue;
        }
        records.push(Record {
            at: Duration::from_millis(line.elapsed),
            request,
            latency: Duration::from_micros(
                line.response_time * 1000 + line.response_time_fraction_us,
            ),
            failed: !line.success,
        });
    }
    Ok(records)
}

/// Latency percentiles and counts of a set of requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Figures {
    fn of<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        // Microseconds, from 1 µs to an hour (goose gives up on a request long before).
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        let mut figures = Self::default();
        for r in records {
            figures.requests += 1;
            figures.failed += u64::from(r.failed);
            let micros = u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX);
            histogram.saturating_record(micros.max(1));
        }
        if figures.requests > 0 {
            let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
            figures.p50_ms = ms(0.5);
            figures.p90_ms = ms(0.9);
            figures.p99_ms = ms(0.99);
            figures.max_ms = histogram.max() as f64 / 1000.0;
        }
        figures
    }

    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failed as f64 * 100.0 / self.requests as f64
        }
    }
}

/// The requests of one time window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub seconds: f64,
    pub requests_per_s: f64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The requests of one hold of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRow {
    pub users: usize,
    pub requests_per_s: f64,
    /// Throughput per visitor against the first hold's: 1 while throughput follows the
    /// visitors, falling once each visitor waits longer for its answers.
    pub efficiency: f64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Everything the summary and the plots show.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub overall: Figures,
    pub per_request: BTreeMap<String, Figures>,
    pub windows: Vec<Window>,
    pub steps: Vec<StepRow>,
    /// The index in `steps` of the last hold whose efficiency is still at least
    /// `KNEE_EFFICIENCY`, when a later one falls below it.
    pub knee: Option<usize>,
}

/// Below this efficiency a hold is past the knee.
pub const KNEE_EFFICIENCY: f64 = 0.8;

pub fn analyse(records: &[Record], holds: &[Hold], window: Duration) -> Analysis {
    let mut per_request: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        per_request.entry(r.request.clone()).or_default().push(r);
    }
    let end = records.iter().map(|r| r.at).max().unwrap_or_default();
    let mut windows = Vec::new();
    let step = window.max(Duration::from_secs(1));
    let mut from = Duration::ZERO;
    while from <= end {
        let to = from + step;
        let inside: Vec<&Record> = records
            .iter()
            .filter(|r| r.at >= from && r.at < to)
            .collect();
        let figures = Figures::of(inside.iter().copied());
        windows.push(Window {
            from_s: from.as_secs_f64(),
            seconds: step.as_secs_f64(),
            requests_per_s: figures.requests as f64 / step.as_secs_f64(),
            figures,
        });
        from = to;
    }
    let mut steps: Vec<StepRow> = holds
        .iter()
        .map(|h| {
            let figures = Figures::of(records.iter().filter(|r| r.at >= h.from && r.at < h.to));
            let seconds = (h.to - h.from).as_secs_f64();
            StepRow {
                users: h.users,
                requests_per_s: figures.requests as f64 / seconds,
                efficiency: 0.0,
                figures,
            }
        })
        .collect();
    if let Some(first) = steps.first() {
        let per_user = first.requests_per_s / first.users as f64;
        for row in &mut steps {
            row.efficiency = if per_user > 0.0 {
                row.requests_per_s / row.users as f64 / per_user
            } else {
                0.0
            };
        }
    }
    let knee = steps
        .iter()
        .position(|row| row.efficiency < KNEE_EFFICIENCY)
        .and_then(|past| past.checked_sub(1));
    Analysis {
        overall: Figures::of(records),
        per_request: per_request
            .into_iter()
            .map(|(name, rs)| (name, Figures::of(rs)))
            .collect(),
        windows,
        steps,
        knee,
    }
}

/// A window long enough to hold a few hundred requests of a light run: about 40 windows.
pub fn window_for(run: Duration) -> Duration {
    Duration::from_secs(run.as_secs().div_ceil(40).max(2))
}

/// A line of a plot.
struct Series {
    label: &'static str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

fn series(label: &'static str, colour: RGBColor, points: Vec<(f64, f64)>) -> Series {
    Series {
        label,
        colour,
        points,
    }
}

/// Draws `lines` (and their points, when `dots`) into an SVG file.
fn chart(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    lines: &[Series],
    dots: bool,
) -> anyhow::Result<()> {
    let all = || lines.iter().flat_map(|s| s.points.iter());
    let x_max = all().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let y_max = all().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(draw)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(draw)?;
    c.configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .draw()
        .map_err(draw)?;
    for s in lines {
        let colour = s.colour;
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(draw)?
        .label(s.label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        if dots {
            c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(draw)?;
        }
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(())
}

/// The plot files, written into `dir`; returns their names.
pub fn plot(analysis: &Analysis, dir: &Path) -> anyhow::Result<Vec<&'static str>> {
    let busy: Vec<&Window> = analysis
        .windows
        .iter()
        .filter(|w| w.figures.requests > 0)
        .collect();
    let over_time = |f: fn(&Window) -> f64| -> Vec<(f64, f64)> {
        busy.iter().map(|w| (w.from_s, f(w))).collect()
    };
    chart(
        &dir.join("latency.svg"),
        "Latency over time (each window of the run)",
        "seconds from the start",
        "milliseconds",
        &[
            series("p50", BLUE, over_time(|w| w.figures.p50_ms)),
            series("p90", GREEN, over_time(|w| w.figures.p90_ms)),
            series("p99", RED, over_time(|w| w.figures.p99_ms)),
        ],
        false,
    )?;
    chart(
        &dir.join("throughput.svg"),
        "Throughput over time",
        "seconds from the start",
        "requests per second",
        &[series("answered", BLUE, over_time(|w| w.requests_per_s))],
        false,
    )?;
    chart(
        &dir.join("errors.svg"),
        "Failed requests over time",
        "seconds from the start",
        "% of the window's requests",
        &[series(
            "failed",
            RED,
            over_time(|w| w.figures.error_percent()),
        )],
        false,
    )?;
    // Latency against load: per hold of the plan when it has several (stress, spike), else
    // per window; sorted by load, so the line reads left to right.
    let mut points: Vec<(f64, &Figures)> = if analysis.steps.len() > 1 {
        analysis
            .steps
            .iter()
            .map(|s| (s.requests_per_s, &s.figures))
            .collect()
    } else {
        busy.iter()
            .map(|w| (w.requests_per_s, &w.figures))
            .collect()
    };
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let against = |f: fn(&Figures) -> f64| points.iter().map(|(x, fig)| (*x, f(fig))).collect();
    chart(
        &dir.join("latency-vs-load.svg"),
        "Latency against load",
        "requests per second",
        "milliseconds",
        &[
            series("p50", BLUE, against(|f| f.p50_ms)),
            series("p90", GREEN, against(|f| f.p90_ms)),
            series("p99", RED, against(|f| f.p99_ms)),
        ],
        true,
    )?;
    Ok(vec![
        "latency.svg",
        "throughput.svg",
        "errors.svg",
        "latency-vs-load.svg",
    ])
}

/// The per-request and per-hold tables, in Markdown.
pub fn tables(analysis: &Analysis) -> String {
    let mut out = String::from(
        "| request | count | failed | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let row = |name: &str, f: &Figures| {
        format!(
            "| {name} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            f.requests, f.failed, f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms
        )
    };
    for (name, f) in &analysis.per_request {
        out += &row(name, f);
    }
    out += &row("**all**", &analysis.overall);
    if analysis.steps.len() > 1 {
        out += "\n| visitors | requests/s | efficiency | p50 ms | p99 ms | failed % |\n|---:|---:|---:|---:|---:|---:|\n";
        for (i, s) in analysis.steps.iter().enumerate() {
            let mark = if analysis.knee == Some(i) {
                " ← knee"
            } else {
                ""
            };
            out += &format!(
                "| {}{mark} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} |\n",
                s.users,
                s.requests_per_s,
                s.efficiency,
                s.figures.p50_ms,
                s.figures.p99_ms,
                s.figures.error_percent()
            );
        }
        out += &match analysis.knee {
            Some(i) => format!(
                "\nThe knee: {} visitors, {:.1} requests/s (the next step's throughput per visitor fell below {KNEE_EFFICIENCY} of the first's).\n",
                analysis.steps[i].users, analysis.steps[i].requests_per_s
            ),
            None => format!(
                "\nNo knee within the plan: throughput per visitor stayed at or above {KNEE_EFFICIENCY} of the first step's (or fell at once).\n"
            ),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64, request: &str, latency_ms: u64, failed: bool) -> Record {
        Record {
            at: Duration::from_millis(at_ms),
            request: request.to_owned(),
            latency: Duration::from_millis(latency_ms),
            failed,
        }
    }

    #[test]
    fn the_request_log_is_read_with_updates_marking_failures() {
        let dir = tempfile::tempdir().expect("test data");
        let path = dir.path().join("requests.json");
        let line = |elapsed: u64, name: &str, ms: u64, success: bool, update: bool| {
            format!(
                r#"{{"elapsed":{elapsed},"scenario_index":0,"scenario_name":"s","transaction_index":0,"transaction_name":{{"TransactionOnly":""}},"raw":{{"method":"Get","url":"http://x{name}","headers":[],"body":"","custom_method":""}},"name":"{name}","final_url":"http://x{name}","redirected":false,"response_time":{ms},"status_code":200,"success":{success},"update":{update},"user":0,"error":"","coordinated_omission_elapsed":0,"user_cadence":0,"response_time_fraction_us":500}}"#
            )
        };
        let text = [
            line(10, "/v1/cart", 3, true, false),
            line(20, "/v1/orders/{id}", 4, true, false),
            line(20, "/v1/orders/{id}", 4, false, true),
            line(30, "/v1/cart", 1, false, false),
        ]
        .join("\n");
        std::fs::write(&path, text).expect("test data");
        let records = read_log(&path).expect("test data");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].request, "GET /v1/cart");
        assert_eq!(records[0].latency, Duration::from_micros(3500));
        assert!(
            records[1].failed,
            "the update marks the order's read failed"
        );
        assert!(records[2].failed);
        std::fs::write(&path, "not json\n").expect("test data");
        let error = format!("{:#}", read_log(&path).expect_err("an error"));
        assert!(error.contains(":1: not a goose request"), "{error}");
    }

    #[test]
    fn windows_and_requests_have_their_percentiles_and_failures() {
        let mut records = Vec::new();
        for i in 0..100 {
            records.push(record(i * 20, "GET /a", i + 1, i == 99));
        }
        let analysis = analyse(&records, &[], Duration::from_secs(1));
        assert_eq!(analysis.overall.requests, 100);
        assert_eq!(analysis.overall.failed, 1);
        assert!((analysis.overall.p50_ms - 50.0).abs() < 0.1, "{analysis:?}");
        assert!((analysis.overall.p99_ms - 99.0).abs() < 0.1);
        assert_eq!(analysis.windows.len(), 2);
        assert_eq!(analysis.windows[0].figures.requests, 50);
        assert!((analysis.windows[0].requests_per_s - 50.0).abs() < 1e-9);
        assert_eq!(analysis.per_request["GET /a"].requests, 100);
        assert_eq!(analysis.overall.error_percent(), 1.0);
    }

    #[test]
    fn the_knee_is_the_last_hold_whose_throughput_still_follows_the_visitors() {
        // 10 visitors → 100/s, 20 → 200/s, 40 → 380/s, 80 → 400/s (saturated).
        let holds: Vec<Hold> = [10, 20, 40, 80]
            .iter()
            .enumerate()
            .map(|(i, &users)| Hold {
                users,
                from: Duration::from_secs(i as u64 * 10),
                to: Duration::from_secs(i as u64 * 10 + 10),
            })
            .collect();
        let mut records = Vec::new();
        for (i, per_s) in [100u64, 200, 380, 400].iter().enumerate() {
            let n = per_s * 10;
            for k in 0..n {
                let at = i as u64 * 10_000 + k * 10_000 / n;
                records.push(record(at, "GET /a", 5 + i as u64 * 10, false));
            }
        }
        let analysis = analyse(&records, &holds, Duration::from_secs(10));
        let efficiency: Vec<f64> = analysis.steps.iter().map(|s| s.efficiency).collect();
        assert!((efficiency[2] - 0.95).abs() < 0.01, "{efficiency:?}");
        assert!(efficiency[3] < KNEE_EFFICIENCY);
        assert_eq!(analysis.knee, Some(2));
        let text = tables(&analysis);
        assert!(text.contains("| 40 ← knee |"), "{text}");
        assert!(text.contains("The knee: 40 visitors"), "{text}");
    }

    #[test]
    fn the_plots_are_svg_files() {
        let records: Vec<Record> = (0..200)
            .map(|i| record(i * 50, "GET /a", 1 + i % 7, i % 50 == 0))
            .collect();
        let analysis = analyse(&records, &[], Duration::from_secs(1));
        let dir = tempfile::tempdir().expect("test data");
        for name in plot(&analysis, dir.path()).expect("test data") {
            let text = std::fs::read_to_string(dir.path().join(name)).expect("test data");
            assert!(text.starts_with("<svg"), "{name}");
            assert!(text.contains("p99") || text.contains("answered") || text.contains("failed"));
        }
    }

    #[test]
    fn windows_fit_the_run() {
        assert_eq!(window_for(Duration::from_secs(44)), Duration::from_secs(2));
        assert_eq!(
            window_for(Duration::from_secs(3600)),
            Duration::from_secs(90)
        );
    }
}
