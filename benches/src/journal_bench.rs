//! `exchange bench journal`: 128-byte records appended through [`sequencer::journal::Journal`]
//! to real segment files, under each durability policy, on one thread pinned to the last core.
//!
//! - Throughput, closed loop: records appended back to back with a commit every
//!   [`COMMIT_EVERY`] records; for the policies that sync, a final flush is timed too, so
//!   every record counted is durable under the policy. Stops early at a time limit (a slow disk
//!   under `sync` would otherwise take minutes) and says so.
//! - Latency, open loop: record `i` is due at `t0 + i / rate`; the thread waits for that time,
//!   appends, commits when the record completes a group of [`COMMIT_EVERY`], and records
//!   `now − due` (coordinated omission corrected, as in `runner`). The figure is the cost of the
//!   append and of the commit it triggers, not the time until the record is durable.
//!
//! Each policy gets its own journal in a temporary directory, with one segment sized to hold
//! every record of the run: creating a segment (pre-faulting and fsyncing it) happens when the
//! journal opens, untimed, and its cost is printed, because a rollover in a timed run would
//! charge it to one record.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use sequencer::journal::{Durability, Journal, JournalConfig, SeqOrder};

use crate::durable::{
    self, nanos_since, policy_description, policy_name, OpenRun, PolicyReport, Schedule, TempDir,
    Throughput, COMMIT_EVERY,
};
use crate::engine_bench::PROBE_NS;
use crate::report::{self, human_ns, human_rate, percentile_table, Machine};
use crate::runner::{self, Pinning, PlatformNoise};
use crate::BenchError;

pub const RECORD_BYTES: usize = 128;
/// The open loop starts this long after the closed loop ends.
const START_LEAD_NS: u64 = 1_000_000;

/// Settings of one `exchange bench journal` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalBenchConfig {
    /// Records of the closed-loop run, per policy.
    pub throughput_records: usize,
    /// Measured records of the open-loop run, per policy.
    pub records: usize,
    /// Records appended at the same rate before the measured ones, untimed.
    pub warmup_records: usize,
    pub rate_per_sec: u64,
    pub policies: Vec<Durability>,
    /// Each run (closed or open) stops issuing after this long.
    pub time_limit_ns: u64,
    /// Parent of the temporary journal directory: a real file system, not tmpfs.
    pub dir: PathBuf,
    pub out_dir: PathBuf,
}

impl Default for JournalBenchConfig {
    fn default() -> JournalBenchConfig {
        JournalBenchConfig {
            throughput_records: 4_000_000,
            records: 2_000_000,
            warmup_records: 200_000,
            rate_per_sec: 1_000_000,
            policies: durable::all_policies(),
            time_limit_ns: 4_000_000_000,
            dir: std::env::temp_dir(),
            out_dir: PathBuf::from("bench-out"),
        }
    }
}

impl JournalBenchConfig {
    pub fn quick() -> JournalBenchConfig {
        JournalBenchConfig {
            throughput_records: 200_000,
            records: 50_000,
            warmup_records: 5_000,
            time_limit_ns: 300_000_000,
            ..JournalBenchConfig::default()
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: &str| Err(BenchError::InvalidSetting(message.to_string()));
        if self.policies.is_empty() || self.rate_per_sec == 0 {
            return invalid("need at least one durability policy and a positive rate");
        }
        if self.records == 0 || self.throughput_records == 0 || self.time_limit_ns == 0 {
            return invalid("need measured records and a positive time limit");
        }
        Ok(())
    }

    fn total_records(&self) -> u64 {
        (self.throughput_records + self.warmup_records + self.records) as u64
    }
}

/// The journal run's results. Top-level figures are the first policy's.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JournalBenchReport {
    pub bench: &'static str,
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub durability: String,
    pub policies: Vec<PolicyReport>,
    pub record_bytes: usize,
    pub commit_every: usize,
    pub segment_bytes: u64,
    pub journal_dir: PathBuf,
    pub plot: Option<PathBuf>,
    pub machine: Machine,
    pub pinning: Pinning,
    pub platform_noise: PlatformNoise,
}

impl JournalBenchReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

struct PolicyMeasurement {
    open_ns: u64,
    closed: Throughput,
    closed_cut_short: bool,
    closed_page_faults: u64,
    open: OpenRun,
}

fn payload(seq: u64) -> [u8; RECORD_BYTES] {
    let mut record = [0u8; RECORD_BYTES];
    for (index, chunk) in record.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&(seq ^ (index as u64).wrapping_mul(0x9E37_79B9)).to_le_bytes());
    }
    record
}

fn journal_error(error: sequencer::journal::JournalError) -> BenchError {
    BenchError::Sequencer(error.to_string())
}

/// Closed loop then open loop on one fresh journal, on the calling (pinned) thread.
fn measure_policy(
    config: &JournalBenchConfig,
    durability: Durability,
) -> Result<PolicyMeasurement, BenchError> {
    let dir =
        TempDir::create(&config.dir, &format!("journal-{}", durable::policy_stem(durability)))?;
    let open_start = Instant::now();
    let (mut journal, _) = Journal::open(JournalConfig {
        directory: dir.path().to_path_buf(),
        name: "bench".to_string(),
        segment_bytes: durable::segment_bytes_for(config.total_records(), RECORD_BYTES as u64),
        order: SeqOrder::Strict,
        durability,
        truncate_corrupt: false,
        staging: sequencer::staging::default_root(),
        spares: 1,
    })
    .map_err(journal_error)?;
    let open_ns = nanos_since(open_start);
    let mut seq = 0u64;
    let faults_before = runner::minor_page_faults();
    let start = Instant::now();
    let total = config.throughput_records as u64;
    let mut closed_cut_short = false;
    while seq < total {
        let batch_end = (seq + COMMIT_EVERY as u64).min(total);
        while seq < batch_end {
            seq += 1;
            journal.append(seq, &payload(seq)).map_err(journal_error)?;
        }
        journal.commit().map_err(journal_error)?;
        if nanos_since(start) > config.time_limit_ns {
            closed_cut_short = seq < total;
            break;
        }
    }
    if durability != Durability::PageCache {
        journal.flush().map_err(journal_error)?;
    }
    let closed = Throughput { count: seq, elapsed_ns: nanos_since(start) };
    assert_eq!(journal.durable_seq(), seq, "every appended record is durable after the run");
    let closed_page_faults = runner::minor_page_faults() - faults_before;
    let open = open_loop(config, &mut journal, seq)?;
    Ok(PolicyMeasurement { open_ns, closed, closed_cut_short, closed_page_faults, open })
}

fn open_loop(
    config: &JournalBenchConfig,
    journal: &mut Journal,
    mut seq: u64,
) -> Result<OpenRun, BenchError> {
    let mut latency_ns = runner::latency_histogram();
    let mut warmup = config.warmup_records as u64;
    let records = config.records as u64;
    let start = Instant::now();
    let mut schedule = Schedule::new(START_LEAD_NS, config.rate_per_sec);
    let mut measured_t0 = START_LEAD_NS;
    let mut now_ns = 0;
    let mut issued = 0u64;
    let mut cut_short = false;
    let mut index = 0u64;
    while index < warmup + records {
        let due_ns = schedule.due_ns();
        if index == warmup {
            measured_t0 = due_ns;
        }
        while now_ns < due_ns {
            std::hint::spin_loop();
            now_ns = nanos_since(start);
        }
        seq += 1;
        journal.append(seq, &payload(seq)).map_err(journal_error)?;
        if (index + 1) % COMMIT_EVERY as u64 == 0 {
            journal.commit().map_err(journal_error)?;
        }
        now_ns = nanos_since(start);
        if index >= warmup {
            latency_ns.saturating_record((now_ns - due_ns).max(1));
            issued += 1;
        }
        schedule.advance();
        // A warm-up slower than a quarter of the time limit ends early, so that a slow policy
        // still gets a measured part.
        if index < warmup && now_ns > START_LEAD_NS + config.time_limit_ns / 4 {
            warmup = index + 1;
        }
        if index >= warmup && now_ns - measured_t0 > config.time_limit_ns {
            cut_short = index + 1 < warmup + records;
            break;
        }
        index += 1;
    }
    journal.commit().map_err(journal_error)?;
    Ok(OpenRun {
        offered_per_sec: config.rate_per_sec,
        issued,
        elapsed_ns: now_ns.saturating_sub(measured_t0),
        cut_short,
        latency_ns,
    })
}

/// Runs the journal benchmark and prints its report to `out`.
// tidy: long function, a report printed top to bottom reads best as one sequence.
pub fn run(
    config: &JournalBenchConfig,
    out: &mut dyn Write,
) -> Result<JournalBenchReport, BenchError> {
    config.validate()?;
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    let segment_bytes = durable::segment_bytes_for(config.total_records(), RECORD_BYTES as u64);
    writeln!(out, "exchange bench journal")?;
    writeln!(
        out,
        "machine: {} ({} logical CPUs, {})",
        machine.cpu_model, machine.logical_cpus, machine.os
    )?;
    writeln!(
        out,
        "journal: {RECORD_BYTES}-byte records (+16-byte frame: length, CRC32C, seq) through \
         sequencer::journal::Journal in a temporary directory under {}; one {} MiB segment per \
         policy, created (pre-faulted and fsynced) before timing",
        config.dir.display(),
        segment_bytes >> 20
    )?;
    writeln!(
        out,
        "closed loop: commit every {COMMIT_EVERY} records; open loop: {} records/s offered, \
         latency = end of append (and of the commit it triggers) − intended start",
        human_rate(config.rate_per_sec as f64)
    )?;
    let (platform_noise, _) =
        runner::on_pinned_thread("bench-journal-probe", |_| runner::probe_platform(PROBE_NS))?;
    writeln!(out, "platform noise on the pinned core: {}", platform_noise.describe())?;
    out.flush()?;
    let mut runs: Vec<(Durability, OpenRun)> = Vec::with_capacity(config.policies.len());
    let mut reports = Vec::with_capacity(config.policies.len());
    let mut pinning_seen = None;
    for &durability in &config.policies {
        writeln!(out)?;
        writeln!(out, "== {}: {} ==", policy_name(durability), policy_description(durability))?;
        out.flush()?;
        let settings = config.clone();
        let (measurement, pinning) = runner::on_pinned_thread("bench-journal", move |_| {
            measure_policy(&settings, durability)
        })?;
        let measurement = measurement?;
        if pinning_seen.is_none() {
            writeln!(out, "journal thread: {}", pinning.describe())?;
            pinning_seen = Some(pinning);
        }
        let PolicyMeasurement { open_ns, closed, closed_cut_short, closed_page_faults, open } =
            measurement;
        writeln!(out, "segment creation (untimed): {}", human_ns(open_ns))?;
        let rate = runner::per_sec(closed.count, closed.elapsed_ns);
        writeln!(
            out,
            "closed loop: {} records/s ({:.1} ns/record) over {} records{}; {} page faults",
            human_rate(rate),
            1e9 / rate,
            human_rate(closed.count as f64),
            if closed_cut_short { " (stopped at the time limit)" } else { "" },
            closed_page_faults,
        )?;
        writeln!(
            out,
            "open loop at {} records/s offered (achieved {}/s{}; up to {} warm-up records \
             untimed):",
            human_rate(open.offered_per_sec as f64),
            human_rate(open.achieved_per_sec()),
            if open.sustained() { "" } else { ", NOT sustained" },
            human_rate(config.warmup_records as f64),
        )?;
        write!(out, "{}", percentile_table(&open.latency_ns))?;
        reports.push(PolicyReport::new(durability, closed, &open));
        runs.push((durability, open));
    }
    writeln!(out)?;
    let pairs: Vec<(Durability, &OpenRun)> = runs.iter().map(|(d, run)| (*d, run)).collect();
    let plot = durable::write_policy_files(
        &config.out_dir,
        "journal-append",
        "journal append latency per durability policy, open loop (coordinated omission corrected)",
        &pairs,
        &mut reports,
        out,
    )?;
    let first = reports[0].clone();
    writeln!(
        out,
        "headline: {} records/s closed loop under {} (target ≥ 10M/s to page cache)",
        human_rate(first.commands_per_sec),
        first.policy
    )?;
    Ok(JournalBenchReport {
        bench: "journal",
        commands_per_sec: first.commands_per_sec,
        offered_per_sec: first.offered_per_sec,
        p50_ns: first.p50_ns,
        p99_ns: first.p99_ns,
        p9999_ns: first.p9999_ns,
        max_ns: first.max_ns,
        durability: first.policy.clone(),
        policies: reports,
        record_bytes: RECORD_BYTES,
        commit_every: COMMIT_EVERY,
        segment_bytes,
        journal_dir: config.dir.clone(),
        plot: Some(plot),
        machine,
        pinning: pinning_seen.expect("at least one policy ran"),
        platform_noise,
    })
}
