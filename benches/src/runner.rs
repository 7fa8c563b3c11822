//! Measurement loops: thread pinning, closed-loop throughput and open-loop latency.
//!
//! Every measurement builds a fresh [`Engine`], replays the stream's untimed prelude (setup and
//! warm-up) through it, then times the measured commands. Nothing is skipped: the prelude is the
//! documented warm-up and the measured part is handled command by command, exactly as a
//! sequencer would hand it over. The sink only counts events, so the figures are the engine's
//! own (risk checks, matching, settlement and event application), with no journal or network.
//!
//! Open-loop latency follows the coordinated-omission correction of wrk2 and HdrHistogram:
//! command `i` is due at `t0 + i / rate`; if the loop is ahead it busy-waits until then, and the
//! latency recorded is completion time minus due time, so a stall delays and charges every
//! command queued behind it, as it would a real client sending at that rate.

use std::time::Instant;

use engine::{Command, CountingSink, Engine, EngineConfig};
use hdrhistogram::Histogram;

/// Latencies up to an hour are recorded exactly (to 3 significant digits); an overloaded run
/// can queue far beyond a second, and that must show rather than saturate.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// Where the benchmark thread runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pinning {
    /// The core the thread asked for: the last one the OS reports.
    pub core: Option<usize>,
    pub pinned: bool,
}

impl Pinning {
    pub fn describe(&self) -> String {
        match (self.core, self.pinned) {
            (Some(core), true) => format!("pinned to core {core} (the last core)"),
            (Some(core), false) => format!("NOT pinned (pinning to core {core} failed)"),
            (None, _) => "NOT pinned (no core list available)".to_string(),
        }
    }
}

/// Pins the calling thread to the last core, leaving the others to the OS and the main thread.
pub fn pin_to_last_core() -> Pinning {
    let core = core_affinity::get_core_ids().and_then(|cores| cores.last().copied());
    match core {
        Some(core) => Pinning { core: Some(core.id), pinned: core_affinity::set_for_current(core) },
        None => Pinning { core: None, pinned: false },
    }
}

/// A histogram for latencies in nanoseconds, 3 significant digits. Its counts are written once
/// here, so that first-touch page faults on them do not land in a measured run.
pub fn latency_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
        .expect("static histogram bounds are valid");
    histogram.reset();
    histogram
}

/// How noisy the measuring core is without the engine: what a clock read costs and how often
/// the thread loses the CPU (to interrupts, the hypervisor or other processes). Every latency
/// sample includes one clock read, and every gap here shows up as queueing in open-loop runs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PlatformNoise {
    pub clock_read_ns: f64,
    pub probe_ns: u64,
    /// Gaps between consecutive clock reads longer than 10 µs, and their total.
    pub gaps_over_10us: u64,
    pub gaps_over_10us_total_ns: u64,
    pub gap_p9999_ns: u64,
    pub gap_max_ns: u64,
}

/// Spins reading the clock for `probe_ns` and records the gaps, as jHiccup does.
pub fn probe_platform(probe_ns: u64) -> PlatformNoise {
    const READS: u64 = 1_000_000;
    let start = Instant::now();
    let mut last_ns = 0;
    for _ in 0..READS {
        last_ns = std::hint::black_box(nanos_since(start));
    }
    let clock_read_ns = last_ns as f64 / READS as f64;
    let mut gaps_ns = latency_histogram();
    let (mut gaps_over_10us, mut gaps_over_10us_total_ns) = (0, 0);
    let start = Instant::now();
    let mut previous_ns = 0;
    while previous_ns < probe_ns {
        let now_ns = nanos_since(start);
        let gap_ns = now_ns - previous_ns;
        gaps_ns.saturating_record(gap_ns.max(1));
        if gap_ns > 10_000 {
            gaps_over_10us += 1;
            gaps_over_10us_total_ns += gap_ns;
        }
        previous_ns = now_ns;
    }
    PlatformNoise {
        clock_read_ns,
        probe_ns: previous_ns,
        gaps_over_10us,
        gaps_over_10us_total_ns,
        gap_p9999_ns: gaps_ns.value_at_quantile(0.9999),
        gap_max_ns: gaps_ns.max(),
    }
}

impl PlatformNoise {
    pub fn describe(&self) -> String {
        // Report arithmetic only.
        #[allow(clippy::cast_precision_loss)]
        let stolen_percent =
            100.0 * self.gaps_over_10us_total_ns as f64 / self.probe_ns.max(1) as f64;
        format!(
            "clock read {:.1} ns; idle spin over {} saw {} gaps > 10 µs ({:.2}% of the time), \
             gap p99.99 {}, max {}",
            self.clock_read_ns,
            crate::report::human_ns(self.probe_ns),
            self.gaps_over_10us,
            stolen_percent,
            crate::report::human_ns(self.gap_p9999_ns),
            crate::report::human_ns(self.gap_max_ns),
        )
    }
}

/// Minor page faults of this process so far (Linux; zero elsewhere). Read outside timed code:
/// first-touch faults on memory the engine reserved but never wrote show up here.
pub fn minor_page_faults() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // Fields follow the parenthesised command name; minflt is the 10th field overall.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().nth(7).and_then(|field| field.parse().ok()).unwrap_or(0)
}

#[inline]
fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A closed-loop run: the measured commands back to back.
#[derive(Clone, Copy, Debug)]
pub struct ClosedLoop {
    pub commands: u64,
    pub elapsed_ns: u64,
    /// Minor page faults during the timed part.
    pub page_faults: u64,
    pub sink: CountingSink,
    pub state_hash: [u8; 32],
}

impl ClosedLoop {
    pub fn commands_per_sec(&self) -> f64 {
        per_sec(self.commands, self.elapsed_ns)
    }
}

/// An open-loop run at a fixed offered rate.
#[derive(Debug)]
pub struct OpenLoop {
    pub offered_per_sec: u64,
    pub commands: u64,
    pub elapsed_ns: u64,
    /// Minor page faults during the timed part.
    pub page_faults: u64,
    pub latency_ns: Histogram<u64>,
    pub sink: CountingSink,
    pub state_hash: [u8; 32],
}

impl OpenLoop {
    /// What the engine actually sustained; below the offered rate only if it fell behind.
    pub fn achieved_per_sec(&self) -> f64 {
        per_sec(self.commands, self.elapsed_ns)
    }
}

pub fn per_sec(count: u64, elapsed_ns: u64) -> f64 {
    // Floats only in reports: the count and the time are exact integers until here.
    #[allow(clippy::cast_precision_loss)]
    let rate = count as f64 * 1e9 / elapsed_ns.max(1) as f64;
    rate
}

/// A fresh engine that has handled every prelude command, untimed.
pub fn prepared_engine(config: EngineConfig, prelude: &[&[Command]]) -> Engine {
    let mut engine = Engine::new(config);
    let mut sink = CountingSink::default();
    for part in prelude {
        for command in *part {
            engine.handle(command, &mut sink);
        }
    }
    engine
}

/// Times `measured` back to back on a prepared engine.
pub fn closed_loop(
    config: EngineConfig,
    prelude: &[&[Command]],
    measured: &[Command],
) -> ClosedLoop {
    let mut engine = prepared_engine(config, prelude);
    let mut sink = CountingSink::default();
    let faults_before = minor_page_faults();
    let start = Instant::now();
    for command in measured {
        engine.handle(command, &mut sink);
    }
    let elapsed_ns = nanos_since(start);
    let page_faults = minor_page_faults() - faults_before;
    ClosedLoop {
        commands: measured.len() as u64,
        elapsed_ns,
        page_faults,
        sink,
        state_hash: engine.state_hash(),
    }
}

/// Offers `measured` at `offered_per_sec` to a prepared engine and records each command's
/// latency from its due time (see the module documentation).
pub fn open_loop(
    config: EngineConfig,
    prelude: &[&[Command]],
    measured: &[Command],
    offered_per_sec: u64,
) -> OpenLoop {
    assert!(offered_per_sec > 0, "an open loop needs a positive rate");
    let mut engine = prepared_engine(config, prelude);
    let mut sink = CountingSink::default();
    let mut latency_ns = latency_histogram();
    // Due times advance by 1e9 / rate nanoseconds, kept exact with an integer remainder so that
    // no rounding drift builds up over millions of commands.
    let step_ns = 1_000_000_000 / offered_per_sec;
    let step_remainder = 1_000_000_000 % offered_per_sec;
    let mut due_ns = 0u64;
    let mut due_fraction = 0u64;
    let faults_before = minor_page_faults();
    let start = Instant::now();
    let mut now_ns = 0u64;
    for command in measured {
        while now_ns < due_ns {
            std::hint::spin_loop();
            now_ns = nanos_since(start);
        }
        engine.handle(command, &mut sink);
        now_ns = nanos_since(start);
        latency_ns.saturating_record((now_ns - due_ns).max(1));
        due_ns += step_ns;
        due_fraction += step_remainder;
        if due_fraction >= offered_per_sec {
            due_fraction -= offered_per_sec;
            due_ns += 1;
        }
    }
    let page_faults = minor_page_faults() - faults_before;
    OpenLoop {
        offered_per_sec,
        commands: measured.len() as u64,
        elapsed_ns: now_ns,
        page_faults,
        latency_ns,
        sink,
        state_hash: engine.state_hash(),
    }
}

/// Runs `work` on a new thread pinned to the last core and returns its result with the pinning
/// outcome. The measuring thread owns everything it measures, as the engine thread would.
pub fn on_pinned_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce(&Pinning) -> T + Send + 'static,
) -> Result<(T, Pinning), crate::BenchError> {
    let handle = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let pinning = pin_to_last_core();
            let result = work(&pinning);
            (result, pinning)
        })
        .map_err(crate::BenchError::Report)?;
    handle.join().map_err(|_| crate::BenchError::ThreadPanicked)
}
