//! Results: latency summaries from HdrHistogram, the per-run report (text and
//! JSON) and the median table `summarize` prints from many JSON reports.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::error_name;

/// Latencies are recorded in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Replies that carried a ZooKeeper error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub code: i32,
    pub name: String,
    pub count: u64,
    /// Part of the workload (e.g. NODEEXISTS while populating); others are unexpected.
    pub expected: bool,
}

/// Connection-level failures (no reply at all): always unexpected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    pub what: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pid: u32,
    pub cpu_secs: Option<f64>,
    pub ops_per_cpu_sec: Option<f64>,
    pub rss_kb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub label: Option<String>,
    pub servers: Vec<String>,
    pub connections: usize,
    pub outstanding: usize,
    pub value_size: usize,
    pub keys: u64,
    /// Replies received in the measured phase (successes and error replies);
    /// for watch-storm, completed rounds.
    pub ops: u64,
    pub ok: u64,
    pub elapsed_secs: f64,
    pub ops_per_sec: f64,
    pub latency_us: Latency,
    pub errors: Vec<ErrorCount>,
    pub failures: Vec<FailureCount>,
    /// Unexpected error replies plus failures.
    pub unexpected_errors: u64,
    pub server: Option<ServerUsage>,
    pub client_cpu_secs: Option<f64>,
    /// Workload-specific figures (watch-storm: notifications, per-notification latency).
    #[serde(default)]
    pub extra: BTreeMap<String, f64>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Error counts as gathered during a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub errors: BTreeMap<i32, u64>,
    pub failures: BTreeMap<String, u64>,
}

impl Tally {
    pub fn error(&mut self, code: i32) {
        *self.errors.entry(code).or_default() += 1;
    }
    pub fn failure(&mut self, what: impl Into<String>, n: u64) {
        if n > 0 {
            *self.failures.entry(what.into()).or_default() += n;
        }
    }
    pub fn merge(&mut self, other: &Tally) {
        for (k, v) in &other.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
    }
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
    /// (errors, failures, unexpected total) in report form.
    pub fn to_report(&self, expected: impl Fn(i32) -> bool) -> (Vec<ErrorCount>, Vec<FailureCount>, u64) {
        let errors: Vec<ErrorCount> =
            self.errors.iter().map(|(&code, &count)| ErrorCount { code, name: error_name(code).to_owned(), count, expected: expected(code) }).collect();
        let failures: Vec<FailureCount> = self.failures.iter().map(|(what, &count)| FailureCount { what: what.clone(), count }).collect();
        let unexpected = errors.iter().filter(|e| !e.expected).map(|e| e.count).sum::<u64>() + failures.iter().map(|f| f.count).sum::<u64>();
        (errors, failures, unexpected)
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    pub fn from_json(text: &str) -> Result<Report, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let label = self.label.as_deref().map(|l| format!(" [{l}]")).unwrap_or_default();
        let _ = writeln!(s, "workload     {}{label}", self.workload);
        let _ = writeln!(
            s,
            "servers      {} ({} connections x {} outstanding, values {} B, keys {})",
            self.servers.join(","),
            self.connections,
            self.outstanding,
            self.value_size,
            self.keys
        );
        let _ = writeln!(s, "ops          {} ({} ok) in {:.3} s", self.ops, self.ok, self.elapsed_secs);
        let per_cpu = self.server.as_ref().and_then(|u| u.ops_per_cpu_sec).map(|v| format!(", {} ops per server CPU-second", fmt_rate(v))).unwrap_or_default();
        let _ = writeln!(s, "throughput   {} ops/s{per_cpu}", fmt_rate(self.ops_per_sec));
        let l = &self.latency_us;
        let _ = writeln!(s, "latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.0}, min {})", l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.min);
        if let Some(u) = &self.server {
            let cpu = u.cpu_secs.map_or("n/a".to_owned(), |c| format!("{c:.2} CPU-s"));
            let rss = u.rss_kb.map_or("n/a".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
            let _ = writeln!(s, "server       pid {}: {cpu}, RSS {rss}", u.pid);
        }
        if let Some(c) = self.client_cpu_secs {
            let _ = writeln!(s, "client       {c:.2} CPU-s");
        }
        for (k, v) in &self.extra {
            let _ = writeln!(s, "{k:<12} {}", fmt_rate(*v));
        }
        if self.errors.is_empty() && self.failures.is_empty() {
            let _ = writeln!(s, "errors       none");
        } else {
            for e in &self.errors {
                let tag = if e.expected { "expected" } else { "UNEXPECTED" };
                let _ = writeln!(s, "errors       {} {} x{} ({tag})", e.code, e.name, e.count);
            }
            for f in &self.failures {
                let _ = writeln!(s, "failures     {} x{} (UNEXPECTED)", f.what, f.count);
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note         {n}");
        }
        s
    }
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// The figures `summarize` shows, medians over the runs of one workload and label.
#[derive(Debug, Clone, Default)]
struct Row {
    runs: usize,
    ops_per_sec: Option<f64>,
    ops_per_cpu: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    rss_mib: Option<f64>,
    unexpected: u64,
}

impl Row {
    fn cells(&self) -> [Option<f64>; 6] {
        [self.ops_per_sec, self.ops_per_cpu, self.p50, self.p99, self.p999, self.rss_mib]
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// Markdown table of medians per workload (in first-seen order) and label; with
/// `ratio` = ("warden", "zookeeper") a row warden/zookeeper per workload.
pub fn summarize(reports: &[Report], ratio: Option<(&str, &str)>) -> String {
    let mut workloads: Vec<String> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&Report>> = BTreeMap::new();
    let mut labels: Vec<String> = Vec::new();
    for r in reports {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload.clone());
        }
        let label = r.label.clone().unwrap_or_else(|| "-".into());
        if !labels.contains(&label) {
            labels.push(label.clone());
        }
        groups.entry((r.workload.clone(), label)).or_default().push(r);
    }
    let row = |rs: &[&Report]| -> Row {
        let med = |f: &dyn Fn(&Report) -> Option<f64>| {
            let mut v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            median(&mut v)
        };
        Row {
            runs: rs.len(),
            ops_per_sec: med(&|r| Some(r.ops_per_sec)),
            ops_per_cpu: med(&|r| r.server.as_ref().and_then(|s| s.ops_per_cpu_sec)),
            p50: med(&|r| Some(r.latency_us.p50 as f64)),
            p99: med(&|r| Some(r.latency_us.p99 as f64)),
            p999: med(&|r| Some(r.latency_us.p999 as f64)),
            rss_mib: med(&|r| r.server.as_ref().and_then(|s| s.rss_kb).map(|k| k as f64 / 1024.0)),
            unexpected: rs.iter().map(|r| r.unexpected_errors).sum(),
        }
    };
    let mut s = String::new();
    s.push_str("| workload | server | runs | ops/s | ops per server CPU-s | p50 µs | p99 µs | p99.9 µs | server RSS MiB | unexpected errors |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for w in &workloads {
        let mut rows: BTreeMap<&str, Row> = BTreeMap::new();
        for l in &labels {
            if let Some(rs) = groups.get(&(w.clone(), l.clone())) {
                let r = row(rs);
                let c = r.cells();
                let _ = writeln!(
                    s,
                    "| {w} | {l} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.runs,
                    cell(c[0]),
                    cell(c[1]),
                    cell(c[2]),
                    cell(c[3]),
                    cell(c[4]),
                    cell(c[5]),
                    r.unexpected
                );
                rows.insert(l.as_str(), r);
            }
        }
        if let Some((a, b)) = ratio {
            if let (Some(ra), Some(rb)) = (rows.get(a), rows.get(b)) {
                let (ca, cb) = (ra.cells(), rb.cells());
                let mut cells = Vec::new();
                for i in 0..6 {
                    cells.push(match (ca[i], cb[i]) {
                        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
                        _ => "–".into(),
                    });
                }
                let _ = writeln!(s, "| {w} | **{a}/{b}** | | {} | {} | {} | {} | {} | {} | |", cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_inputs() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 1000);
        assert_eq!((l.min, l.p50, l.p90, l.p99, l.p999, l.max), (1, 500, 900, 990, 999, 1000));
        assert!((l.mean - 500.5).abs() < 0.01);

        // One slow outlier in 10,000 shows only at max; large values keep 3 significant digits.
        let mut h = new_histogram();
        h.record_n(100, 9_999).unwrap();
        h.record(2_000_000).unwrap();
        let l = Latency::from_histogram(&h);
        assert_eq!((l.p50, l.p99, l.p999), (100, 100, 100));
        assert!(l.max >= 2_000_000 && l.max <= 2_002_000, "{}", l.max);
        assert_eq!(Latency::from_histogram(&new_histogram()), Latency::default());
    }

    fn sample(label: &str, ops_per_sec: f64, p50: u64) -> Report {
        let mut tally = Tally::default();
        tally.error(-110);
        tally.error(-101);
        tally.failure("server closed the connection", 2);
        let (errors, failures, unexpected_errors) = tally.to_report(|c| c == -110);
        Report {
            workload: "get".into(),
            label: Some(label.into()),
            servers: vec!["127.0.0.1:2181".into()],
            connections: 8,
            outstanding: 32,
            value_size: 100,
            keys: 10_000,
            ops: 1000,
            ok: 998,
            elapsed_secs: 2.0,
            ops_per_sec,
            latency_us: Latency { count: 1000, min: 10, mean: 120.0, p50, p90: 200, p99: 300, p999: 400, max: 500 },
            errors,
            failures,
            unexpected_errors,
            server: Some(ServerUsage { pid: 42, cpu_secs: Some(1.5), ops_per_cpu_sec: Some(666.7), rss_kb: Some(20480) }),
            client_cpu_secs: Some(0.5),
            extra: BTreeMap::new(),
            notes: vec![],
        }
    }

    #[test]
    fn tally_marks_expected_and_counts_unexpected() {
        let r = sample("x", 500.0, 100);
        assert_eq!(r.errors.len(), 2);
        assert!(r.errors.iter().any(|e| e.code == -110 && e.expected && e.name == "NODEEXISTS"));
        assert!(r.errors.iter().any(|e| e.code == -101 && !e.expected));
        assert_eq!(r.unexpected_errors, 3);
    }

    #[test]
    fn text_report_shows_figures_and_errors() {
        let t = sample("warden", 500.0, 100).to_text();
        assert!(t.contains("workload     get [warden]"), "{t}");
        assert!(t.contains("ops          1000 (998 ok) in 2.000 s"), "{t}");
        assert!(t.contains("throughput   500 ops/s, 667 ops per server CPU-second"), "{t}");
        assert!(t.contains("p50 100  p90 200  p99 300  p99.9 400  max 500"), "{t}");
        assert!(t.contains("RSS 20.0 MiB"), "{t}");
        assert!(t.contains("-101 NONODE x1 (UNEXPECTED)"), "{t}");
        assert!(t.contains("-110 NODEEXISTS x1 (expected)"), "{t}");
        assert!(t.contains("server closed the connection x2 (UNEXPECTED)"), "{t}");
    }

    #[test]
    fn json_round_trips_with_stable_field_names() {
        let r = sample("warden", 500.0, 100);
        let j = r.to_json();
        for key in ["\"ops_per_sec\"", "\"latency_us\"", "\"p999\"", "\"ops_per_cpu_sec\"", "\"rss_kb\"", "\"unexpected_errors\""] {
            assert!(j.contains(key), "{key} missing in {j}");
        }
        assert_eq!(Report::from_json(&j).unwrap(), r);
    }

    #[test]
    fn medians_and_ratio_table() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
        let reports = vec![
            sample("zookeeper", 100.0, 200),
            sample("warden", 300.0, 100),
            sample("zookeeper", 300.0, 200),
            sample("warden", 500.0, 50),
            sample("zookeeper", 200.0, 200),
        ];
        let t = summarize(&reports, Some(("warden", "zookeeper")));
        assert!(t.contains("| get | zookeeper | 3 | 200 | 667 | 200 | 300 | 400 | 20.0 | 9 |"), "{t}");
        assert!(t.contains("| get | warden | 2 | 400 | 667 | 75.0 | 300 |"), "{t}");
        assert!(t.contains("| get | **warden/zookeeper** | | 2.00× | 1.00× | 0.38× | 1.00× |"), "{t}");
    }
}
