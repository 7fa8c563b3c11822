//! Results for people (percentile tables), for tools (`.hgrm` percentile distributions) and for
//! scripts (one JSON object), plus a description of the machine the numbers came from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::BenchError;

/// The percentiles printed for people, as quantiles.
pub const TABLE_QUANTILES: [(f64, &str); 6] = [
    (0.50, "p50"),
    (0.90, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
    (1.0, "max"),
];

/// The machine, so a reader can tell whether two reports are comparable.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub os: &'static str,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let logical_cpus = std::thread::available_parallelism().map_or(0, |count| count.get());
        Machine { cpu_model, logical_cpus, os: std::env::consts::OS }
    }
}

/// One open-loop latency result, summarised.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LatencySummary {
    pub offered_per_sec: u64,
    pub achieved_per_sec: f64,
    pub commands: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub hgrm: Option<PathBuf>,
}

impl LatencySummary {
    pub fn new(offered_per_sec: u64, achieved_per_sec: f64, latency_ns: &Histogram<u64>) -> Self {
        LatencySummary {
            offered_per_sec,
            achieved_per_sec,
            commands: latency_ns.len(),
            mean_ns: latency_ns.mean(),
            p50_ns: latency_ns.value_at_quantile(0.50),
            p90_ns: latency_ns.value_at_quantile(0.90),
            p99_ns: latency_ns.value_at_quantile(0.99),
            p999_ns: latency_ns.value_at_quantile(0.999),
            p9999_ns: latency_ns.value_at_quantile(0.9999),
            max_ns: latency_ns.max(),
            hgrm: None,
        }
    }
}

/// The full percentile table for people, one row per percentile, in nanoseconds.
pub fn percentile_table(latency_ns: &Histogram<u64>) -> String {
    let mut table = String::new();
    let _ = writeln!(table, "      {:>8} {:>14}", "percentile", "latency");
    for (quantile, label) in TABLE_QUANTILES {
        let value_ns =
            if quantile >= 1.0 { latency_ns.max() } else { latency_ns.value_at_quantile(quantile) };
        let _ = writeln!(table, "      {label:>10} {:>11} ns  ({})", value_ns, human_ns(value_ns));
    }
    let _ = writeln!(
        table,
        "      {:>10} {:>11.1} ns  over {} samples",
        "mean",
        latency_ns.mean(),
        latency_ns.len()
    );
    table
}

/// A duration in the unit that reads best.
pub fn human_ns(value_ns: u64) -> String {
    // Floats only for display.
    #[allow(clippy::cast_precision_loss)]
    let value = value_ns as f64;
    if value_ns < 1_000 {
        format!("{value_ns} ns")
    } else if value_ns < 1_000_000 {
        format!("{:.2} µs", value / 1e3)
    } else if value_ns < 1_000_000_000 {
        format!("{:.2} ms", value / 1e6)
    } else {
        format!("{:.2} s", value / 1e9)
    }
}

/// A rate with thousands separators, for people.
pub fn human_rate(per_sec: f64) -> String {
    // A rate is non-negative and far below 2^64; rounding to whole commands is the point.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = per_sec.round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// The HdrHistogram percentile distribution text (the `.hgrm` format that HdrHistogram's
/// `outputPercentileDistribution` writes and its plotters read): values in nanoseconds (a value
/// unit scaling ratio of 1), five percentile ticks per half distance.
pub fn hgrm_text(latency_ns: &Histogram<u64>) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total_count = 0u64;
    for step in latency_ns.iter_quantiles(5) {
        total_count += step.count_since_last_iteration();
        // Values are exact integers; the format wants three decimals.
        #[allow(clippy::cast_precision_loss)]
        let value = step.value_iterated_to() as f64;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                text,
                "{value:12.3} {quantile:2.12} {total_count:10} {:14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(text, "{value:12.3} {quantile:2.12} {total_count:10}");
        }
    }
    let buckets = latency_ns.buckets();
    // The counts array holds `(buckets + 1) × sub_buckets / 2` slots.
    let sub_buckets = 2 * latency_ns.distinct_values() / (usize::from(buckets) + 1);
    let _ = writeln!(
        text,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        latency_ns.mean(),
        latency_ns.stdev()
    );
    // Values are exact integers, shown in the format's float notation.
    #[allow(clippy::cast_precision_loss)]
    let max = latency_ns.max() as f64;
    let _ = writeln!(text, "#[Max     = {max:12.3}, Total count    = {:12}]", latency_ns.len());
    let _ = writeln!(text, "#[Buckets = {buckets:12}, SubBuckets     = {sub_buckets:12}]");
    text
}

pub fn write_file(path: &Path, contents: &str) -> Result<(), BenchError> {
    std::fs::write(path, contents)
        .map_err(|source| BenchError::Write { path: path.to_path_buf(), source })
}

pub fn create_dir(path: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(path)
        .map_err(|source| BenchError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_lists_percentiles_up_to_the_maximum() {
        let mut histogram = crate::runner::latency_histogram();
        for value in 1..=10_000u64 {
            histogram.record(value * 10).unwrap();
        }
        let text = hgrm_text(&histogram);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().contains("Value"));
        assert!(text.contains("#[Max     ="));
        let last_row = text.lines().rfind(|line| !line.starts_with('#')).unwrap();
        let columns: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(columns[1], "1.000000000000");
        assert_eq!(columns[2], "10000");
    }

    #[test]
    fn rates_are_grouped() {
        assert_eq!(human_rate(1_234_567.4), "1,234,567");
        assert_eq!(human_rate(999.0), "999");
    }
}
