//! Pieces shared by the benchmarks that write a journal (`exchange bench journal`, `exchange
//! bench loop`, `exchange bench wallet --journal`): the durability policies they run under, a
//! temporary journal directory removed when dropped, the open-loop schedule, pinning to a named
//! core, and the per-policy result every one of them reports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sequencer::journal::Durability;

use crate::runner::Pinning;
use crate::BenchError;

/// Records (or commands) appended between two commits in the closed loops.
pub const COMMIT_EVERY: usize = 64;
/// Frame header bytes the journal adds to each record (length, CRC32C, seq).
pub const FRAME_OVERHEAD_BYTES: u64 = 16;
/// Room for the segment header and a little slack when sizing a segment to a run.
const SEGMENT_SLACK_BYTES: u64 = 1 << 20;

/// The group-commit bounds every durable benchmark uses: a sync at most every millisecond or
/// every 4,096 records, the journal's own default.
pub fn group_commit() -> Durability {
    Durability::GroupCommit { interval: Duration::from_millis(1), records: 4_096 }
}

/// Page cache, group commit, sync each commit: the three policies, in that order.
pub fn all_policies() -> Vec<Durability> {
    vec![Durability::PageCache, group_commit(), Durability::SyncEachCommit]
}

/// The policy as the CLI spells it.
pub fn policy_name(durability: Durability) -> String {
    match durability {
        Durability::PageCache => "page-cache".to_string(),
        Durability::GroupCommit { interval, records } => {
            format!("group-commit:{}:{records}", interval.as_micros())
        }
        Durability::SyncEachCommit => "sync".to_string(),
    }
}

/// A short file-name stem for the policy.
pub fn policy_stem(durability: Durability) -> &'static str {
    match durability {
        Durability::PageCache => "page-cache",
        Durability::GroupCommit { .. } => "group-commit",
        Durability::SyncEachCommit => "sync",
    }
}

/// What the policy promises, for people.
pub fn policy_description(durability: Durability) -> String {
    match durability {
        Durability::PageCache => {
            "page cache only: durable at commit against a process crash, not a power cut"
                .to_string()
        }
        Durability::GroupCommit { interval, records } => format!(
            "group-commit fsync: fdatasync on a flusher thread every {} µs or {records} records",
            interval.as_micros()
        ),
        Durability::SyncEachCommit => {
            "sync each commit: fdatasync on the writer's thread at every commit".to_string()
        }
    }
}

/// A segment size that holds `records` frames of `record_bytes`, so no rollover (which
/// pre-faults and fsyncs a new segment on the appending thread) lands in a timed run.
pub fn segment_bytes_for(records: u64, record_bytes: u64) -> u64 {
    let bytes = records * (record_bytes + FRAME_OVERHEAD_BYTES) + SEGMENT_SLACK_BYTES;
    bytes.div_ceil(1 << 20) << 20
}

/// A directory for one run's journal files, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn create(parent: &Path, name: &str) -> Result<TempDir, BenchError> {
        let path = parent.join(format!("exchange-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        crate::report::create_dir(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[inline]
pub fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Due times of an open loop: `t0 + i / rate`, exact with an integer remainder (as `runner`).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    rate: u64,
    step_ns: u64,
    step_remainder: u64,
    due_ns: u64,
    fraction: u64,
}

impl Schedule {
    pub fn new(t0_ns: u64, rate: u64) -> Schedule {
        assert!(rate > 0, "an open loop needs a positive rate");
        Schedule {
            rate,
            step_ns: 1_000_000_000 / rate,
            step_remainder: 1_000_000_000 % rate,
            due_ns: t0_ns,
            fraction: 0,
        }
    }

    /// When the next operation is due, in nanoseconds since the run's `Instant`.
    pub fn due_ns(&self) -> u64 {
        self.due_ns
    }

    pub fn advance(&mut self) {
        self.due_ns += self.step_ns;
        self.fraction += self.step_remainder;
        if self.fraction >= self.rate {
            self.fraction -= self.rate;
            self.due_ns += 1;
        }
    }
}

/// Pins the calling thread to the first (`last == false`) or the last core the OS reports.
pub fn pin(last: bool) -> Pinning {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core = if last { cores.last() } else { cores.first() };
    match core {
        Some(&core) => {
            Pinning { core: Some(core.id), pinned: core_affinity::set_for_current(core) }
        }
        None => Pinning { core: None, pinned: false },
    }
}

pub fn describe_pinning(pinning: &Pinning, which: &str) -> String {
    match (pinning.core, pinning.pinned) {
        (Some(core), true) => format!("pinned to core {core} (the {which} core)"),
        (Some(core), false) => format!("NOT pinned (pinning to core {core} failed)"),
        (None, _) => "NOT pinned (no core list available)".to_string(),
    }
}

/// One durability policy's results. `commands_per_sec` is the closed-loop throughput (records,
/// commands or durable transfers per second); the latency figures are the open loop's.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub description: String,
    pub commands_per_sec: f64,
    pub closed_loop_count: u64,
    pub closed_loop_elapsed_ns: u64,
    pub offered_per_sec: u64,
    pub achieved_per_sec: f64,
    /// False when the open loop fell behind its schedule (or hit its time limit).
    pub sustained: bool,
    pub measured: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub hgrm: Option<PathBuf>,
}

/// The closed-loop side of a [`PolicyReport`].
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    pub count: u64,
    pub elapsed_ns: u64,
}

/// The open-loop side of a [`PolicyReport`].
#[derive(Debug)]
pub struct OpenRun {
    pub offered_per_sec: u64,
    /// Operations issued in the measured part, and the time from the first due time to the last
    /// completion.
    pub issued: u64,
    pub elapsed_ns: u64,
    /// The run stopped issuing at its time limit.
    pub cut_short: bool,
    pub latency_ns: Histogram<u64>,
}

impl OpenRun {
    pub fn achieved_per_sec(&self) -> f64 {
        crate::runner::per_sec(self.issued, self.elapsed_ns)
    }

    /// Kept up: not cut short and finished within 10% (plus a millisecond) of its schedule.
    pub fn sustained(&self) -> bool {
        let schedule_ns = self.issued.saturating_mul(1_000_000_000) / self.offered_per_sec.max(1);
        !self.cut_short && self.elapsed_ns <= schedule_ns + schedule_ns / 10 + 1_000_000
    }
}

impl PolicyReport {
    pub fn new(durability: Durability, closed: Throughput, open: &OpenRun) -> PolicyReport {
        let latency = &open.latency_ns;
        PolicyReport {
            policy: policy_name(durability),
            description: policy_description(durability),
            commands_per_sec: crate::runner::per_sec(closed.count, closed.elapsed_ns),
            closed_loop_count: closed.count,
            closed_loop_elapsed_ns: closed.elapsed_ns,
            offered_per_sec: open.offered_per_sec,
            achieved_per_sec: open.achieved_per_sec(),
            sustained: open.sustained(),
            measured: latency.len(),
            mean_ns: latency.mean(),
            p50_ns: latency.value_at_quantile(0.50),
            p90_ns: latency.value_at_quantile(0.90),
            p99_ns: latency.value_at_quantile(0.99),
            p999_ns: latency.value_at_quantile(0.999),
            p9999_ns: latency.value_at_quantile(0.9999),
            max_ns: latency.max(),
            hgrm: None,
        }
    }
}

/// Writes one `.hgrm` per policy and a plot with one curve per policy; returns the plot's path.
pub fn write_policy_files(
    out_dir: &Path,
    stem: &str,
    title: &str,
    runs: &[(Durability, &OpenRun)],
    reports: &mut [PolicyReport],
    out: &mut dyn std::io::Write,
) -> Result<PathBuf, BenchError> {
    for ((durability, run), report) in runs.iter().zip(reports.iter_mut()) {
        let path = out_dir.join(format!(
            "{stem}-{}-at-{}-per-sec.hgrm",
            policy_stem(*durability),
            run.offered_per_sec
        ));
        crate::report::write_file(&path, &crate::report::hgrm_text(&run.latency_ns))?;
        writeln!(out, "written: {}", path.display())?;
        report.hgrm = Some(path);
    }
    let path = out_dir.join(format!("{stem}.png"));
    let series: Vec<(String, &Histogram<u64>)> = runs
        .iter()
        .map(|(durability, run)| {
            let rate = crate::report::human_rate(run.offered_per_sec as f64);
            (format!("{}, {rate}/s offered", policy_name(*durability)), &run.latency_ns)
        })
        .collect();
    let outcome = crate::plot::percentile_plot(&path, title, &series)?;
    if !outcome.has_text {
        eprintln!(
            "warning: no TrueType font found (install fonts-dejavu-core); {} has no text",
            path.display()
        );
    }
    writeln!(out, "plot: {}", path.display())?;
    Ok(path)
}
