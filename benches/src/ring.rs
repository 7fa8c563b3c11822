//! `exchange bench ring`: one hop through a shared-memory [`sequencer::ring`] between two
//! threads pinned to different cores, as a gateway thread hands commands to the application
//! loop.
//!
//! - Latency, open loop: the producer offers 128-byte records at a fixed rate. Record `i` is due
//!   at `t0 + i / rate`; the producer waits for that time, writes `i` and the due time into the
//!   record and pushes it (spinning while the ring is full). The consumer stamps each record as
//!   it reads it and records `now − due`, so a producer stall or a full ring charges every record
//!   behind it (coordinated omission corrected, as in `runner`). Both threads read the same
//!   `Instant` clock, so the figure includes one clock read and the cache-line transfers of the
//!   slot and the producer position.
//! - Throughput, closed loop: the producer pushes records back to back; the consumer polls in
//!   batches and checks their order. Records per second from the start signal to the last
//!   record read.
//!
//! Both sides busy-spin (STYLE §6's lowest-latency idle strategy); on a 2-core machine that
//! leaves the OS no idle core while a run lasts, which is expected for this benchmark and why
//! runs are short.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use hdrhistogram::Histogram;
use sequencer::ring::{BusySpinIdle, IdleStrategy, Ring, RingConsumer, RingProducer};

use crate::engine_bench::PROBE_NS;
use crate::plot::percentile_plot;
use crate::report::{self, human_ns, human_rate, percentile_table, LatencySummary, Machine};
use crate::runner::{self, Pinning, PlatformNoise};
use crate::BenchError;

/// What this benchmark says about durability.
pub const DURABILITY: &str =
    "none: ring hop only (shared-memory file in tmpfs), no journal, engine or network";
const IDLE: &str = "busy-spin on both sides";
/// The sequencer's record size.
pub const RECORD_BYTES: usize = 128;
/// The producer starts its schedule this long after both threads are ready.
const START_LEAD_NS: u64 = 1_000_000;

/// Settings of one `exchange bench ring` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingBenchConfig {
    /// Measured records per open-loop rate.
    pub records: usize,
    /// Records sent at the same rate before the measured ones, not recorded.
    pub warmup_records: usize,
    /// Records of the closed-loop throughput run.
    pub throughput_records: usize,
    /// Offered rates, records per second; the first is the JSON headline.
    pub rates_per_sec: Vec<u64>,
    /// Ring capacity in slots (a power of two).
    pub slots: usize,
    /// How many records the consumer takes per poll at most.
    pub poll_limit: usize,
    /// Directory of the ring file: `/dev/shm` when present.
    pub ring_dir: PathBuf,
    pub out_dir: PathBuf,
}

impl Default for RingBenchConfig {
    fn default() -> RingBenchConfig {
        let shm = PathBuf::from("/dev/shm");
        RingBenchConfig {
            records: 3_000_000,
            warmup_records: 300_000,
            throughput_records: 20_000_000,
            rates_per_sec: vec![1_000_000],
            slots: 4_096,
            poll_limit: 256,
            ring_dir: if shm.is_dir() { shm } else { std::env::temp_dir() },
            out_dir: PathBuf::from("bench-out"),
        }
    }
}

impl RingBenchConfig {
    pub fn quick() -> RingBenchConfig {
        RingBenchConfig {
            records: 50_000,
            warmup_records: 10_000,
            throughput_records: 500_000,
            ..RingBenchConfig::default()
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: &str| Err(BenchError::InvalidSetting(message.to_string()));
        if self.rates_per_sec.is_empty() || self.rates_per_sec.contains(&0) {
            return invalid("need at least one positive offered rate");
        }
        if self.records == 0 || self.throughput_records == 0 || self.poll_limit == 0 {
            return invalid("need at least one measured record and a positive poll limit");
        }
        if sequencer::ring::ring_bytes(self.slots, RECORD_BYTES).is_err() {
            return invalid("ring slots must be a power of two in 2..=2^30");
        }
        Ok(())
    }

    fn ring_path(&self) -> PathBuf {
        self.ring_dir.join(format!("exchange-bench-ring-{}", std::process::id()))
    }
}

/// The ring run's results. Top-level latency figures are at the first offered rate;
/// `commands_per_sec` is the closed-loop throughput in records per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RingBenchReport {
    pub bench: &'static str,
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub ns_per_record: f64,
    pub record_bytes: usize,
    pub ring_slots: usize,
    pub poll_limit: usize,
    pub records: usize,
    pub warmup_records: usize,
    pub throughput_records: usize,
    /// Pushes refused for a full ring during the throughput run.
    pub throughput_ring_full: u64,
    pub latency: Vec<LatencySummary>,
    pub plot: Option<PathBuf>,
    pub machine: Machine,
    pub producer_pinning: Pinning,
    pub consumer_pinning: Pinning,
    pub platform_noise: PlatformNoise,
    pub idle: &'static str,
    pub ring_file: PathBuf,
    pub durability: &'static str,
}

impl RingBenchReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

/// Pins the calling thread to the first (`last == false`) or the last core the OS reports.
fn pin(last: bool) -> Pinning {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core = if last { cores.last() } else { cores.first() };
    match core {
        Some(&core) => {
            Pinning { core: Some(core.id), pinned: core_affinity::set_for_current(core) }
        }
        None => Pinning { core: None, pinned: false },
    }
}

fn describe(pinning: &Pinning, which: &str) -> String {
    match (pinning.core, pinning.pinned) {
        (Some(core), true) => format!("pinned to core {core} (the {which} core)"),
        (Some(core), false) => format!("NOT pinned (pinning to core {core} failed)"),
        (None, _) => "NOT pinned (no core list available)".to_string(),
    }
}

#[inline]
fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[inline]
fn field(record: &[u8], index: usize) -> u64 {
    u64::from_le_bytes(record[index * 8..index * 8 + 8].try_into().expect("eight bytes"))
}

/// A thread's result and where it ran.
type Pinned<T> = (T, Pinning);

/// Runs `producer_work` on a thread pinned to the first core and `consumer_work` on one pinned
/// to the last, both released together by a barrier, and returns their results.
fn on_two_cores<P, C>(
    producer: RingProducer,
    consumer: RingConsumer,
    producer_work: impl FnOnce(RingProducer, Instant) -> P + Send + 'static,
    consumer_work: impl FnOnce(RingConsumer, Instant) -> C + Send + 'static,
) -> Result<(Pinned<P>, Pinned<C>), BenchError>
where
    P: Send + 'static,
    C: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let start = Instant::now();
    let consumer_barrier = Arc::clone(&barrier);
    let consumer_thread = std::thread::Builder::new()
        .name("bench-ring-consumer".to_string())
        .spawn(move || {
            let pinning = pin(true);
            consumer_barrier.wait();
            (consumer_work(consumer, start), pinning)
        })
        .map_err(BenchError::Report)?;
    let producer_thread = std::thread::Builder::new()
        .name("bench-ring-producer".to_string())
        .spawn(move || {
            let pinning = pin(false);
            barrier.wait();
            (producer_work(producer, start), pinning)
        })
        .map_err(BenchError::Report)?;
    let produced = producer_thread.join().map_err(|_| BenchError::ThreadPanicked)?;
    let consumed = consumer_thread.join().map_err(|_| BenchError::ThreadPanicked)?;
    Ok((produced, consumed))
}

/// One open-loop run: `warmup + records` records offered at `rate`, the last `records` timed.
struct OpenRun {
    offered_per_sec: u64,
    elapsed_ns: u64,
    latency_ns: Histogram<u64>,
    pinnings: (Pinning, Pinning),
}

fn open_loop(config: &RingBenchConfig, rate: u64) -> Result<OpenRun, BenchError> {
    let path = config.ring_path();
    let ring = Ring::create(&path, config.slots, RECORD_BYTES)
        .map_err(|error| BenchError::InvalidSetting(error.to_string()))?;
    let (producer, consumer) = ring.split();
    let total = (config.warmup_records + config.records) as u64;
    let warmup = config.warmup_records as u64;
    let limit = config.poll_limit;
    let produce = move |mut producer: RingProducer, start: Instant| {
        // Due times advance by 1e9 / rate ns, exact with an integer remainder (as `runner`).
        let (step_ns, step_remainder) = (1_000_000_000 / rate, 1_000_000_000 % rate);
        let t0 = nanos_since(start) + START_LEAD_NS;
        let (mut due_ns, mut due_fraction) = (t0, 0u64);
        let mut record = [0u8; RECORD_BYTES];
        for index in 0..total {
            while nanos_since(start) < due_ns {
                std::hint::spin_loop();
            }
            record[..8].copy_from_slice(&index.to_le_bytes());
            record[8..16].copy_from_slice(&due_ns.to_le_bytes());
            while producer.try_push(&record).is_err() {
                std::hint::spin_loop();
            }
            due_ns += step_ns;
            due_fraction += step_remainder;
            if due_fraction >= rate {
                due_fraction -= rate;
                due_ns += 1;
            }
        }
        t0
    };
    let consume = move |mut consumer: RingConsumer, start: Instant| {
        let mut latency_ns = runner::latency_histogram();
        let mut idle = BusySpinIdle;
        let mut expected = 0u64;
        while expected < total {
            let count = consumer.poll(limit, |record| {
                let now_ns = nanos_since(start);
                assert_eq!(field(record, 0), expected, "ring lost or reordered a record");
                if expected >= warmup {
                    latency_ns.saturating_record(now_ns.saturating_sub(field(record, 1)).max(1));
                }
                expected += 1;
            });
            idle.idle(count);
        }
        (latency_ns, nanos_since(start))
    };
    let ((t0, producer_pinning), ((latency_ns, end_ns), consumer_pinning)) =
        on_two_cores(producer, consumer, produce, consume)?;
    let _ = std::fs::remove_file(&path);
    Ok(OpenRun {
        offered_per_sec: rate,
        elapsed_ns: end_ns - t0,
        latency_ns,
        pinnings: (producer_pinning, consumer_pinning),
    })
}

/// The closed-loop run: records per second, and how often the producer found the ring full.
fn closed_loop(config: &RingBenchConfig) -> Result<(f64, u64), BenchError> {
    let path = config.ring_path();
    let ring = Ring::create(&path, config.slots, RECORD_BYTES)
        .map_err(|error| BenchError::InvalidSetting(error.to_string()))?;
    let (producer, consumer) = ring.split();
    let total = config.throughput_records as u64;
    let limit = config.poll_limit;
    let produce = move |mut producer: RingProducer, _start: Instant| {
        let mut record = [0u8; RECORD_BYTES];
        let mut full = 0u64;
        for index in 0..total {
            record[..8].copy_from_slice(&index.to_le_bytes());
            while producer.try_push(&record).is_err() {
                full += 1;
                std::hint::spin_loop();
            }
        }
        full
    };
    let consume = move |mut consumer: RingConsumer, _start: Instant| {
        let begin = Instant::now();
        let mut idle = BusySpinIdle;
        let mut expected = 0u64;
        while expected < total {
            let count = consumer.poll(limit, |record| {
                assert_eq!(field(record, 0), expected, "ring lost or reordered a record");
                expected += 1;
            });
            idle.idle(count);
        }
        nanos_since(begin)
    };
    let ((full, _), (elapsed_ns, _)) = on_two_cores(producer, consumer, produce, consume)?;
    let _ = std::fs::remove_file(&path);
    Ok((runner::per_sec(total, elapsed_ns), full))
}

/// Runs the ring benchmark and prints its report to `out`.
// tidy: long function, a report printed top to bottom reads best as one sequence.
pub fn run(config: &RingBenchConfig, out: &mut dyn Write) -> Result<RingBenchReport, BenchError> {
    config.validate()?;
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    writeln!(out, "exchange bench ring")?;
    writeln!(
        out,
        "machine: {} ({} logical CPUs, {})",
        machine.cpu_model, machine.logical_cpus, machine.os
    )?;
    writeln!(out, "durability: {DURABILITY}")?;
    writeln!(
        out,
        "ring: {} slots of {RECORD_BYTES} bytes in {}; consumer polls at most {} records; {IDLE}",
        config.slots,
        config.ring_dir.display(),
        config.poll_limit
    )?;
    writeln!(
        out,
        "clock: std::time::Instant (CLOCK_MONOTONIC) read on both cores; latency = consumer read \
         − intended send"
    )?;
    let probe_ns = if config.records < 1_000_000 { PROBE_NS / 5 } else { PROBE_NS };
    let (platform_noise, _) =
        runner::on_pinned_thread("bench-ring-probe", move |_| runner::probe_platform(probe_ns))?;
    writeln!(out, "platform noise on the last core: {}", platform_noise.describe())?;
    out.flush()?;
    let (throughput, throughput_ring_full) = closed_loop(config)?;
    writeln!(
        out,
        "closed loop: {} records/s ({:.1} ns/record) over {} records; producer found the ring \
         full {} times",
        human_rate(throughput),
        1e9 / throughput,
        human_rate(config.throughput_records as f64),
        throughput_ring_full,
    )?;
    let mut runs = Vec::with_capacity(config.rates_per_sec.len());
    for &rate in &config.rates_per_sec {
        runs.push(open_loop(config, rate)?);
    }
    let (producer_pinning, consumer_pinning) = runs[0].pinnings.clone();
    writeln!(out, "producer thread: {}", describe(&producer_pinning, "first"))?;
    writeln!(out, "consumer thread: {}", describe(&consumer_pinning, "last"))?;
    let mut latency = Vec::with_capacity(runs.len());
    for run in &runs {
        let achieved =
            runner::per_sec((config.records + config.warmup_records) as u64, run.elapsed_ns);
        let mut summary = LatencySummary::new(run.offered_per_sec, achieved, &run.latency_ns);
        writeln!(
            out,
            "open loop at {} records/s offered (achieved {}/s; {} warm-up records untimed):",
            human_rate(run.offered_per_sec as f64),
            human_rate(achieved),
            human_rate(config.warmup_records as f64),
        )?;
        write!(out, "{}", percentile_table(&run.latency_ns))?;
        let path = config.out_dir.join(format!("ring-hop-at-{}-per-sec.hgrm", run.offered_per_sec));
        report::write_file(&path, &report::hgrm_text(&run.latency_ns))?;
        writeln!(out, "      written: {}", path.display())?;
        summary.hgrm = Some(path);
        latency.push(summary);
    }
    let path = config.out_dir.join("ring-hop.png");
    let series: Vec<(String, &Histogram<u64>)> = runs
        .iter()
        .map(|run| {
            (
                format!("{} records/s offered", human_rate(run.offered_per_sec as f64)),
                &run.latency_ns,
            )
        })
        .collect();
    let outcome = percentile_plot(
        &path,
        "ring hop latency between two pinned threads, open loop (coordinated omission corrected)",
        &series,
    )?;
    if !outcome.has_text {
        eprintln!(
            "warning: no TrueType font found (install fonts-dejavu-core); {} has no text",
            path.display()
        );
    }
    writeln!(out, "plot: {}", path.display())?;
    let headline = latency[0].clone();
    writeln!(
        out,
        "headline: one hop p50 {} at {} records/s offered (target ≤ 150 ns)",
        human_ns(headline.p50_ns),
        human_rate(headline.offered_per_sec as f64)
    )?;
    Ok(RingBenchReport {
        bench: "ring",
        commands_per_sec: throughput,
        offered_per_sec: headline.offered_per_sec,
        p50_ns: headline.p50_ns,
        p99_ns: headline.p99_ns,
        p9999_ns: headline.p9999_ns,
        max_ns: headline.max_ns,
        ns_per_record: 1e9 / throughput,
        record_bytes: RECORD_BYTES,
        ring_slots: config.slots,
        poll_limit: config.poll_limit,
        records: config.records,
        warmup_records: config.warmup_records,
        throughput_records: config.throughput_records,
        throughput_ring_full,
        latency,
        plot: Some(path),
        machine,
        producer_pinning,
        consumer_pinning,
        platform_noise,
        idle: IDLE,
        ring_file: config.ring_path(),
        durability: DURABILITY,
    })
}
