//! `exchange bench wallet`: in-memory transfers through the engine on one pinned thread,
//! closed-loop throughput and open-loop latency at fixed offered rates.
//!
//! The stream is transfers between funded accounts, each with a fresh transaction id, plus
//! retries: a few resend an earlier transfer unchanged (the engine answers with the first
//! result and moves nothing) and fewer resend an id with a different amount (a reject). Retries
//! aim at recent transfers, as client retries do. Every transfer is remembered for idempotency,
//! so the engine's `transactions_max` is sized for the whole run.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use engine::{AccountId, Amount, AssetId, Command, CommandBody, EngineConfig, TransactionId};

use crate::engine_bench::{DURABILITY, PROBE_NS};
use crate::plot::percentile_plot;
use crate::report::{self, human_ns, human_rate, percentile_table, LatencySummary, Machine};
use crate::rng::SplitMix64;
use crate::runner::{self, ClosedLoop, OpenLoop, Pinning, PlatformNoise};
use crate::BenchError;

const DEPOSIT_MINOR_UNITS: u128 = 1_000_000_000_000_000;
const AMOUNT_MAX_MINOR_UNITS: u64 = 100_000;
/// Retries pick among this many most recent transfers.
const RETRY_WINDOW: usize = 4_096;
const TIMESTAMP_STEP_NS: u64 = 100;

/// Settings of one `exchange bench wallet` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletBenchConfig {
    pub accounts: u32,
    pub measured_commands: usize,
    pub warmup_commands: usize,
    /// Percent of commands that resend an earlier transfer unchanged.
    pub retry_percent: u64,
    /// Percent of commands that reuse an earlier id with a different amount.
    pub conflicting_retry_percent: u64,
    pub rates_per_sec: Vec<u64>,
    pub seed: u64,
    pub out_dir: PathBuf,
}

impl Default for WalletBenchConfig {
    fn default() -> WalletBenchConfig {
        WalletBenchConfig {
            accounts: 10_000,
            measured_commands: 3_000_000,
            warmup_commands: 300_000,
            retry_percent: 4,
            conflicting_retry_percent: 1,
            rates_per_sec: vec![1_000_000, 3_000_000],
            seed: 1,
            out_dir: PathBuf::from("bench-out"),
        }
    }
}

impl WalletBenchConfig {
    pub fn quick() -> WalletBenchConfig {
        WalletBenchConfig {
            accounts: 1_000,
            measured_commands: 50_000,
            warmup_commands: 10_000,
            ..WalletBenchConfig::default()
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let invalid = |message: &str| Err(BenchError::InvalidSetting(message.to_string()));
        if self.accounts < 2 || self.accounts > 10_000_000 {
            return invalid("the wallet bench needs 2..=10000000 accounts");
        }
        if self.rates_per_sec.is_empty() || self.rates_per_sec.contains(&0) {
            return invalid("need at least one positive offered rate");
        }
        if self.measured_commands == 0 {
            return invalid("need at least one measured command");
        }
        if self.retry_percent + self.conflicting_retry_percent > 50 {
            return invalid("retries may be at most half of the stream");
        }
        let transactions = self.accounts as usize + self.warmup_commands + self.measured_commands;
        if transactions >= (1 << 30) {
            return invalid("too many transactions for one engine");
        }
        Ok(())
    }
}

/// What the stream holds, so the run can check the engine's answers against it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalletStreamStats {
    pub transfers: u64,
    pub retries: u64,
    pub conflicting_retries: u64,
}

/// A generated wallet stream: `setup` (asset, accounts, deposits), `warmup`, `measured`.
#[derive(Debug)]
pub struct WalletStream {
    pub config: EngineConfig,
    pub setup: Vec<Command>,
    pub warmup: Vec<Command>,
    pub measured: Vec<Command>,
    pub stats: WalletStreamStats,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    transaction_id: TransactionId,
    from: AccountId,
    to: AccountId,
    amount: Amount,
}

/// Generates the wallet stream; the same settings always yield the same stream.
pub fn generate(config: &WalletBenchConfig) -> WalletStream {
    let mut rng = SplitMix64::new(config.seed);
    let mut seq = 0u64;
    let mut timestamp_ns = 1_700_000_000_000_000_000u64;
    let mut stamp = |body: CommandBody| {
        seq += 1;
        timestamp_ns += TIMESTAMP_STEP_NS;
        Command { seq, timestamp_ns, body }
    };
    let asset = AssetId(0);
    let mut next_transaction_id = 1u128;
    let mut setup = vec![stamp(CommandBody::AddAsset { asset, scale: 2 })];
    for account in 1..=config.accounts {
        setup.push(stamp(CommandBody::CreateAccount { account: AccountId(account) }));
        setup.push(stamp(CommandBody::Deposit {
            transaction_id: TransactionId(next_transaction_id),
            account: AccountId(account),
            asset,
            amount: Amount(DEPOSIT_MINOR_UNITS),
        }));
        next_transaction_id += 1;
    }
    let mut recent: Vec<Sent> = Vec::with_capacity(RETRY_WINDOW);
    let mut recent_next = 0usize;
    let mut stats = WalletStreamStats::default();
    let mut transfer = |rng: &mut SplitMix64, stats: &mut WalletStreamStats| {
        let roll = rng.below(100);
        let retry = (!recent.is_empty()).then(|| recent[rng.index(recent.len())]);
        match retry {
            Some(sent) if roll < config.retry_percent => {
                stats.retries += 1;
                transfer_body(sent)
            }
            Some(sent) if roll < config.retry_percent + config.conflicting_retry_percent => {
                stats.conflicting_retries += 1;
                transfer_body(Sent { amount: Amount(sent.amount.0 + 1), ..sent })
            }
            _ => {
                stats.transfers += 1;
                let from = 1 + rng.below(u64::from(config.accounts));
                // Any other account: shift by 1..accounts-1 around the ring.
                let to = (from - 1 + rng.between(1, u64::from(config.accounts) - 1))
                    % u64::from(config.accounts)
                    + 1;
                let account = |id: u64| AccountId(u32::try_from(id).expect("account fits u32"));
                let sent = Sent {
                    transaction_id: TransactionId(next_transaction_id),
                    from: account(from),
                    to: account(to),
                    amount: Amount(u128::from(rng.between(1, AMOUNT_MAX_MINOR_UNITS))),
                };
                next_transaction_id += 1;
                if recent.len() < RETRY_WINDOW {
                    recent.push(sent);
                } else {
                    recent[recent_next] = sent;
                    recent_next = (recent_next + 1) % RETRY_WINDOW;
                }
                transfer_body(sent)
            }
        }
    };
    let mut warmup_stats = WalletStreamStats::default();
    let warmup: Vec<Command> =
        (0..config.warmup_commands).map(|_| stamp(transfer(&mut rng, &mut warmup_stats))).collect();
    let measured: Vec<Command> =
        (0..config.measured_commands).map(|_| stamp(transfer(&mut rng, &mut stats))).collect();
    let transactions = config.accounts as usize + config.warmup_commands + config.measured_commands;
    let engine_config = EngineConfig {
        assets_max: 1,
        instruments_max: 1,
        accounts_max: config.accounts + 1,
        orders_max: 1,
        levels_max: 1,
        orders_per_account_max: 1,
        transactions_max: u32::try_from(transactions + 16).expect("validated below 2^30"),
        fee_account: AccountId(0),
    };
    WalletStream { config: engine_config, setup, warmup, measured, stats }
}

fn transfer_body(sent: Sent) -> CommandBody {
    CommandBody::Transfer {
        transaction_id: sent.transaction_id,
        from: sent.from,
        to: sent.to,
        asset: AssetId(0),
        amount: sent.amount,
    }
}

/// The wallet run's results. Top-level latency figures are at the first offered rate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WalletBenchReport {
    pub bench: &'static str,
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub ns_per_command: f64,
    pub accounts: u32,
    pub warmup_commands: usize,
    pub measured_commands: usize,
    pub stream: WalletStreamStats,
    pub rejects: u64,
    pub latency: Vec<LatencySummary>,
    pub plot: Option<PathBuf>,
    pub machine: Machine,
    pub pinning: Pinning,
    pub platform_noise: PlatformNoise,
    pub durability: &'static str,
}

impl WalletBenchReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

struct WalletMeasurement {
    stats: WalletStreamStats,
    generate_ns: u64,
    closed: ClosedLoop,
    open: Vec<OpenLoop>,
}

/// Measures on the pinned thread. Every run must answer as the stream says (one ledger leg per
/// new transfer, one duplicate notice per retry, one reject per conflicting retry) and end in the
/// same state.
fn measure(config: &WalletBenchConfig) -> WalletMeasurement {
    let generate_start = Instant::now();
    let stream = generate(config);
    let generate_ns = u64::try_from(generate_start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let prelude: [&[Command]; 2] = [&stream.setup, &stream.warmup];
    let closed = runner::closed_loop(stream.config, &prelude, &stream.measured);
    let stats = stream.stats;
    assert_eq!(closed.sink.rejects, stats.conflicting_retries, "unexpected wallet rejects");
    assert_eq!(closed.sink.events, stream.measured.len() as u64, "one event per transfer");
    let mut open = Vec::with_capacity(config.rates_per_sec.len());
    for &rate in &config.rates_per_sec {
        let run = runner::open_loop(stream.config, &prelude, &stream.measured, rate);
        assert_eq!(run.state_hash, closed.state_hash, "open-loop run diverged");
        open.push(run);
    }
    WalletMeasurement { stats, generate_ns, closed, open }
}

/// Runs the wallet benchmark, writing the human report to `out` and files to the out dir.
// tidy: long function, a report printed top to bottom reads best as one sequence.
pub fn run(
    config: &WalletBenchConfig,
    out: &mut dyn Write,
) -> Result<WalletBenchReport, BenchError> {
    config.validate()?;
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    writeln!(out, "exchange bench wallet")?;
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
        runner::on_pinned_thread("bench-wallet-probe", |_| runner::probe_platform(PROBE_NS))?;
    writeln!(out, "platform noise on the pinned core: {}", platform_noise.describe())?;
    out.flush()?;
    let settings = config.clone();
    let (measurement, pinning) =
        runner::on_pinned_thread("bench-wallet", move |_| measure(&settings))?;
    writeln!(out, "engine thread: {}", pinning.describe())?;
    let WalletMeasurement { stats, generate_ns, closed, open } = measurement;
    let n = config.measured_commands;
    writeln!(
        out,
        "stream: {} measured transfer commands after {} warm-up, {} funded accounts, one asset \
         (seed {}, generated in {})",
        human_rate(n as f64),
        human_rate(config.warmup_commands as f64),
        human_rate(f64::from(config.accounts)),
        config.seed,
        human_ns(generate_ns),
    )?;
    writeln!(
        out,
        "  {} new transfers, {} unchanged retries (answered as duplicates), {} retries with \
         changed fields (rejected)",
        human_rate(stats.transfers as f64),
        human_rate(stats.retries as f64),
        human_rate(stats.conflicting_retries as f64),
    )?;
    let throughput = closed.commands_per_sec();
    writeln!(
        out,
        "closed loop: {} transfer commands/s ({:.1} ns/command; {} page faults while timed)",
        human_rate(throughput),
        1e9 / throughput,
        closed.page_faults,
    )?;
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
        let path = config
            .out_dir
            .join(format!("wallet-transfers-at-{}-per-sec.hgrm", run.offered_per_sec));
        report::write_file(&path, &report::hgrm_text(&run.latency_ns))?;
        writeln!(out, "      written: {}", path.display())?;
        summary.hgrm = Some(path);
        latency.push(summary);
    }
    let path = config.out_dir.join("wallet-transfers.png");
    let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = open
        .iter()
        .map(|run| {
            (
                format!("{} transfers/s offered", human_rate(run.offered_per_sec as f64)),
                &run.latency_ns,
            )
        })
        .collect();
    let outcome = percentile_plot(
        &path,
        "wallet transfer latency, open loop (coordinated omission corrected)",
        &series,
    )?;
    if !outcome.has_text {
        eprintln!(
            "warning: no TrueType font found (install fonts-dejavu-core); {} has no text",
            path.display()
        );
    }
    writeln!(out, "plot: {}", path.display())?;
    let headline = &latency[0];
    Ok(WalletBenchReport {
        bench: "wallet",
        commands_per_sec: throughput,
        offered_per_sec: headline.offered_per_sec,
        p50_ns: headline.p50_ns,
        p99_ns: headline.p99_ns,
        p9999_ns: headline.p9999_ns,
        max_ns: headline.max_ns,
        ns_per_command: 1e9 / throughput,
        accounts: config.accounts,
        warmup_commands: config.warmup_commands,
        measured_commands: n,
        stream: stats,
        rejects: closed.sink.rejects,
        latency: latency.clone(),
        plot: Some(path),
        machine,
        pinning,
        platform_noise,
        durability: DURABILITY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallet_stream_is_deterministic_and_has_retries() {
        let config = WalletBenchConfig {
            accounts: 20,
            measured_commands: 5_000,
            warmup_commands: 100,
            ..WalletBenchConfig::default()
        };
        let a = generate(&config);
        let b = generate(&config);
        assert_eq!(a.measured, b.measured);
        assert_eq!(a.stats, b.stats);
        assert!(a.stats.retries > 0 && a.stats.conflicting_retries > 0);
        assert_eq!(a.stats.transfers + a.stats.retries + a.stats.conflicting_retries, 5_000);
    }
}
