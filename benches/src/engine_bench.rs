//! `exchange bench engine`: the order engine (risk checks, matching, settlement, event
//! application) on one pinned thread, closed-loop throughput, open-loop latency at fixed offered
//! rates, and the same stream through the `orderbook-rs` peer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::market::{self, EngineStream, MarketShape, Mix, StreamStats};
use crate::peer::{PeerBooks, PeerOp, PeerOutcome};
use crate::plot::percentile_plot;
use crate::report::{self, human_ns, human_rate, percentile_table, LatencySummary, Machine};
use crate::runner::{self, ClosedLoop, OpenLoop, Pinning, PlatformNoise};
use crate::BenchError;

/// What every report says about durability, because the design requires every benchmark to.
pub const DURABILITY: &str =
    "none: in-memory engine only, no sequencer, journal or network; events go to a counting sink";

/// How long the platform noise probe spins before the measurements.
pub const PROBE_NS: u64 = 500_000_000;

/// Settings of one `exchange bench engine` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineBenchConfig {
    pub mixes: Vec<Mix>,
    /// One scenario per entry (and per mix).
    pub instruments: Vec<u32>,
    pub accounts: u32,
    /// Orders pre-placed on each book; `None` picks [`default_resting_per_instrument`].
    pub resting_per_instrument: Option<u32>,
    pub measured_commands: usize,
    pub warmup_commands: usize,
    /// Offered rates for the open-loop runs; the first is the JSON headline.
    pub rates_per_sec: Vec<u64>,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub peer: bool,
}

impl Default for EngineBenchConfig {
    /// The main scenario: exchange-core mix on 1 and on 100 instruments, 10,000 funded
    /// accounts, 3M measured commands, 1M/s and 3M/s offered, with the peer.
    fn default() -> EngineBenchConfig {
        EngineBenchConfig {
            mixes: vec![Mix::ExchangeCore],
            instruments: vec![1, 100],
            accounts: 10_000,
            resting_per_instrument: None,
            measured_commands: 3_000_000,
            warmup_commands: 500_000,
            rates_per_sec: vec![1_000_000, 3_000_000],
            seed: 1,
            out_dir: PathBuf::from("bench-out"),
            peer: true,
        }
    }
}

impl EngineBenchConfig {
    /// A smoke test: small books and streams, same scenarios.
    pub fn quick() -> EngineBenchConfig {
        EngineBenchConfig {
            accounts: 1_000,
            resting_per_instrument: Some(100),
            measured_commands: 50_000,
            warmup_commands: 10_000,
            ..EngineBenchConfig::default()
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: &str| Err(BenchError::InvalidSetting(message.to_string()));
        if self.mixes.is_empty() || self.instruments.is_empty() || self.rates_per_sec.is_empty() {
            return invalid("need at least one mix, one instrument count and one rate");
        }
        if self.instruments.iter().any(|&count| count == 0 || count > 100_000) {
            return invalid("instrument counts must be in 1..=100000");
        }
        if self.accounts == 0 || self.accounts > 10_000_000 {
            return invalid("accounts must be in 1..=10000000");
        }
        if self.rates_per_sec.contains(&0) {
            return invalid("offered rates must be positive");
        }
        if self.measured_commands == 0 {
            return invalid("need at least one measured command");
        }
        Ok(())
    }
}

/// Book depth when none is given: 1,000 orders on a single book, spread over more books down to
/// 100 per book (100 instruments: 10,000 resting orders in all), the shapes of exchange-core's
/// single- and multi-symbol tests.
pub fn default_resting_per_instrument(instruments: u32) -> u32 {
    (1_000 / instruments.max(1)).max(100)
}

/// One scenario's results.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineScenarioReport {
    pub mix: String,
    pub instruments: u32,
    pub accounts: u32,
    pub resting_per_instrument: u32,
    pub warmup_commands: usize,
    pub measured_commands: usize,
    pub commands_per_sec: f64,
    pub ns_per_command: f64,
    pub peer_commands_per_sec: Option<f64>,
    /// Ours divided by the peer's throughput.
    pub engine_over_peer: Option<f64>,
    pub events: u64,
    pub trades: u64,
    pub rejects: u64,
    pub stream: StreamStats,
    pub latency: Vec<LatencySummary>,
    pub plot: Option<PathBuf>,
}

/// The whole run. The top-level figures are the first scenario's throughput and its latency at
/// the first offered rate (by default: exchange-core mix, 1 instrument, 1M/s).
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineBenchReport {
    pub bench: &'static str,
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub peer_commands_per_sec: Option<f64>,
    pub machine: Machine,
    pub pinning: Pinning,
    pub platform_noise: PlatformNoise,
    pub durability: &'static str,
    pub scenarios: Vec<EngineScenarioReport>,
}

impl EngineBenchReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

/// Everything measured for one scenario, on the pinned thread.
struct ScenarioMeasurement {
    stats: StreamStats,
    generate_ns: u64,
    closed: ClosedLoop,
    open: Vec<OpenLoop>,
    peer: Option<PeerRun>,
    resting_ours: u64,
}

struct PeerRun {
    commands: u64,
    elapsed_ns: u64,
    outcome: PeerOutcome,
    resting_after_warmup: usize,
}

/// Runs every scenario, writing the human report to `out` and result files to the out dir.
pub fn run(
    config: &EngineBenchConfig,
    out: &mut dyn Write,
) -> Result<EngineBenchReport, BenchError> {
    config.validate()?;
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    writeln!(out, "exchange bench engine")?;
    writeln!(
        out,
        "machine: {} ({} logical CPUs, {})",
        machine.cpu_model, machine.logical_cpus, machine.os
    )?;
    writeln!(out, "durability: {DURABILITY}")?;
    writeln!(
        out,
        "clock: std::time::Instant (CLOCK_MONOTONIC); latency = completion − intended start"
    )?;
    let (platform_noise, _) =
        runner::on_pinned_thread("bench-engine-probe", |_| runner::probe_platform(PROBE_NS))?;
    writeln!(out, "platform noise on the pinned core: {}", platform_noise.describe())?;
    let mut scenarios = Vec::new();
    let mut pinning_seen = None;
    for &mix in &config.mixes {
        for &instruments in &config.instruments {
            let shape = MarketShape {
                mix,
                instruments,
                accounts: config.accounts,
                resting_per_instrument: config
                    .resting_per_instrument
                    .unwrap_or_else(|| default_resting_per_instrument(instruments)),
                warmup_commands: config.warmup_commands,
                measured_commands: config.measured_commands,
                seed: config.seed,
            };
            writeln!(out)?;
            writeln!(
                out,
                "== {mix} mix, {instruments} instrument(s), {} funded accounts ==",
                human_rate(f64::from(config.accounts))
            )?;
            out.flush()?;
            let rates = config.rates_per_sec.clone();
            let with_peer = config.peer;
            let (measurement, pinning) = runner::on_pinned_thread("bench-engine", move |_| {
                measure_scenario(&shape, &rates, with_peer)
            })?;
            if pinning_seen.is_none() {
                writeln!(out, "engine thread: {}", pinning.describe())?;
                pinning_seen = Some(pinning);
            }
            scenarios.push(report_scenario(config, &shape, measurement, out)?);
        }
    }
    let pinning = pinning_seen.expect("at least one scenario ran");
    let first = &scenarios[0];
    let headline = &first.latency[0];
    Ok(EngineBenchReport {
        bench: "engine",
        commands_per_sec: first.commands_per_sec,
        offered_per_sec: headline.offered_per_sec,
        p50_ns: headline.p50_ns,
        p99_ns: headline.p99_ns,
        p9999_ns: headline.p9999_ns,
        max_ns: headline.max_ns,
        peer_commands_per_sec: first.peer_commands_per_sec,
        machine,
        pinning,
        platform_noise,
        durability: DURABILITY,
        scenarios,
    })
}

/// Generates the stream and measures it: closed loop, each open-loop rate, then the peer. Each
/// engine run must end in the state the generator's shadow engine reached: the same stream was
/// handled in full, every time.
fn measure_scenario(shape: &MarketShape, rates: &[u64], with_peer: bool) -> ScenarioMeasurement {
    let generate_start = Instant::now();
    let stream = market::generate(shape);
    let generate_ns = u64::try_from(generate_start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let EngineStream {
        config,
        setup,
        warmup,
        measured,
        warmup_peer,
        measured_peer,
        stats,
        final_state_hash,
    } = stream;
    let prelude: [&[engine::Command]; 2] = [&setup, &warmup];
    let closed = runner::closed_loop(config, &prelude, &measured);
    assert_eq!(closed.state_hash, final_state_hash, "closed-loop run diverged from the stream");
    let mut open = Vec::with_capacity(rates.len());
    for &rate in rates {
        let run = runner::open_loop(config, &prelude, &measured, rate);
        assert_eq!(run.state_hash, final_state_hash, "open-loop run diverged from the stream");
        open.push(run);
    }
    let peer = with_peer.then(|| {
        let self_trade_prevention = shape.mix == Mix::MarketSelfTrade;
        peer_closed_loop(shape.instruments, self_trade_prevention, &warmup_peer, &measured_peer)
    });
    ScenarioMeasurement {
        stats,
        generate_ns,
        closed,
        open,
        peer,
        resting_ours: stats.resting_orders_at_start,
    }
}

fn peer_closed_loop(
    instruments: u32,
    stp: bool,
    warmup: &[PeerOp],
    measured: &[PeerOp],
) -> PeerRun {
    let books = PeerBooks::new(instruments, stp);
    books.apply_all(warmup);
    let resting_after_warmup = books.resting_orders();
    let start = Instant::now();
    let outcome = books.apply_all(measured);
    let elapsed_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    PeerRun { commands: measured.len() as u64, elapsed_ns, outcome, resting_after_warmup }
}

fn percent(part: u64, whole: usize) -> f64 {
    // Report arithmetic only.
    #[allow(clippy::cast_precision_loss)]
    let share = 100.0 * part as f64 / whole.max(1) as f64;
    share
}

fn file_stem(shape: &MarketShape) -> String {
    format!("engine-{}-{}instr", shape.mix, shape.instruments)
}

/// Prints one scenario for people and writes its `.hgrm` files and plot.
// tidy: long function, a report printed top to bottom reads best as one sequence.
fn report_scenario(
    config: &EngineBenchConfig,
    shape: &MarketShape,
    measurement: ScenarioMeasurement,
    out: &mut dyn Write,
) -> Result<EngineScenarioReport, BenchError> {
    let ScenarioMeasurement { stats, generate_ns, closed, open, peer, resting_ours } = measurement;
    let n = shape.measured_commands;
    writeln!(
        out,
        "stream: {} measured commands after {} warm-up commands and {} orders pre-placed per book \
         (seed {}, generated in {})",
        human_rate(n as f64),
        human_rate(shape.warmup_commands as f64),
        shape.resting_per_instrument,
        shape.seed,
        human_ns(generate_ns)
    )?;
    writeln!(
        out,
        "  mix: {:.1}% amend (price move), {:.1}% new GTC limit, {:.1}% cancel, {:.1}% IOC limit, \
         {:.1}% market; {:.1}% self-trade attempts",
        percent(stats.amends, n),
        percent(stats.new_limit_gtc, n),
        percent(stats.cancels, n),
        percent(stats.new_limit_ioc, n),
        percent(stats.new_market, n),
        percent(stats.self_trade_attempts, n),
    )?;
    writeln!(
        out,
        "  outcome: {:.1}% of commands trade ({} trades), {} self-trade-prevention cancels, {} \
         rejects; resting orders {} at start, {} at end",
        percent(stats.measured_commands_trading, n),
        human_rate(stats.measured_trades as f64),
        stats.measured_self_trade_cancels,
        stats.measured_rejects,
        human_rate(resting_ours as f64),
        human_rate(stats.resting_orders_at_end as f64),
    )?;
    let throughput = closed.commands_per_sec();
    writeln!(
        out,
        "closed loop: {} commands/s ({:.1} ns/command; {} events; {} page faults while timed)",
        human_rate(throughput),
        1e9 / throughput,
        human_rate(closed.sink.events as f64),
        closed.page_faults,
    )?;
    let (peer_commands_per_sec, engine_over_peer) = match &peer {
        Some(peer) => {
            let peer_rate = runner::per_sec(peer.commands, peer.elapsed_ns);
            writeln!(
                out,
                "peer orderbook-rs 0.15 (same stream, same thread; no wallet, risk or settlement): \
                 {} commands/s -> engine/peer throughput ratio {:.2}x",
                human_rate(peer_rate),
                throughput / peer_rate
            )?;
            writeln!(
                out,
                "  peer accepted {}, answered errors for {} (nothing to fill, order gone, \
                 self-trade); resting orders after warm-up: peer {}, ours {}",
                human_rate(peer.outcome.ok as f64),
                human_rate(peer.outcome.errors as f64),
                human_rate(peer.resting_after_warmup as f64),
                human_rate(resting_ours as f64),
            )?;
            (Some(peer_rate), Some(throughput / peer_rate))
        }
        None => (None, None),
    };
    let stem = file_stem(shape);
    let mut latency = Vec::with_capacity(open.len());
    for run in &open {
        let mut summary =
            LatencySummary::new(run.offered_per_sec, run.achieved_per_sec(), &run.latency_ns);
        writeln!(
            out,
            "open loop at {} commands/s offered (achieved {}/s; {} page faults while timed):",
            human_rate(run.offered_per_sec as f64),
            human_rate(summary.achieved_per_sec),
            run.page_faults,
        )?;
        write!(out, "{}", percentile_table(&run.latency_ns))?;
        let path = config.out_dir.join(format!("{stem}-at-{}-per-sec.hgrm", run.offered_per_sec));
        report::write_file(&path, &report::hgrm_text(&run.latency_ns))?;
        writeln!(out, "      written: {}", path.display())?;
        summary.hgrm = Some(path);
        latency.push(summary);
    }
    let plot = write_plot(&config.out_dir, &stem, shape, &open, out)?;
    Ok(EngineScenarioReport {
        mix: shape.mix.to_string(),
        instruments: shape.instruments,
        accounts: shape.accounts,
        resting_per_instrument: shape.resting_per_instrument,
        warmup_commands: shape.warmup_commands,
        measured_commands: n,
        commands_per_sec: throughput,
        ns_per_command: 1e9 / throughput,
        peer_commands_per_sec,
        engine_over_peer,
        events: closed.sink.events,
        trades: closed.sink.trades,
        rejects: closed.sink.rejects,
        stream: stats,
        latency,
        plot,
    })
}

fn write_plot(
    out_dir: &Path,
    stem: &str,
    shape: &MarketShape,
    open: &[OpenLoop],
    out: &mut dyn Write,
) -> Result<Option<PathBuf>, BenchError> {
    let path = out_dir.join(format!("{stem}.png"));
    let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = open
        .iter()
        .map(|run| {
            (
                format!("{} commands/s offered", human_rate(run.offered_per_sec as f64)),
                &run.latency_ns,
            )
        })
        .collect();
    let title = format!(
        "engine latency, {} mix, {} instrument(s), open loop (coordinated omission corrected)",
        shape.mix, shape.instruments
    );
    let outcome = percentile_plot(&path, &title, &series)?;
    if !outcome.has_text {
        eprintln!(
            "warning: no TrueType font found (install fonts-dejavu-core); {} has no text",
            path.display()
        );
    }
    writeln!(out, "plot: {}", path.display())?;
    Ok(Some(path))
}
