//! The `exchange` binary: command-line parsing and wiring only. Every command's logic lives in a
//! workspace crate; this file turns flags into that crate's settings and prints its results.

mod bench_fix;
mod bench_fix_path;
mod config;
mod history;
mod huge_pages;
mod node;
mod simulate;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use benches::{
    EngineBenchConfig, JournalBenchConfig, LoopBenchConfig, Mix, RingBenchConfig, WalletBenchConfig,
};
use clap::{Args, Parser, Subcommand};

/// Large tables get transparent huge pages; see `huge_pages` for why and what it measured.
#[global_allocator]
static ALLOCATOR: huge_pages::HugePageAllocator = huge_pages::HugePageAllocator;

#[derive(Debug, Parser)]
#[command(name = "exchange", version, about = "Low-latency exchange and wallet engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: the application loop, the FIX 4.4 acceptor and the HTTP API, on the
    /// configuration's listen addresses (embedded defaults: FIX 127.0.0.1:9878, HTTP
    /// 127.0.0.1:8080, demo instruments, accounts, sessions and keys). Stops cleanly on SIGTERM
    /// or Ctrl-C; a restart recovers everything.
    Run {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Configuration for a new data directory [default: the embedded ops/exchange.toml].
        /// An existing directory keeps the copy it was started with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// How the application loop waits when idle: busy-spin, yield, or
        /// backoff[:spins=N,yields=N,park-ns-min=N,park-ns-max=N].
        #[arg(long, default_value = "backoff")]
        idle: sequencer::ring::IdleConfig,
        /// How the FIX I/O thread waits when idle [default: as --idle]. On two cores, busy-spin
        /// the loop (`--idle busy-spin`) and let the FIX thread sleep in epoll
        /// (`--gateway-idle backoff`): a spinning FIX thread would take the core that its
        /// clients' traffic and every helper thread share.
        #[arg(long)]
        gateway_idle: Option<sequencer::ring::IdleConfig>,
    },
    /// Run a benchmark (build with --release): engine, wallet, ring, journal or loop.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// Check a configuration: parse it, convert its decimals into engine units, build the
    /// engine and apply genesis; print the instruments and the genesis state hash.
    Config {
        /// A TOML file like ops/exchange.toml [default: the embedded ops/exchange.toml].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Feed a generated mixed workload (every order type, cancels, amends, deposits, transfers)
    /// through a ring into the application loop, journaled under the durability policy. On an
    /// existing data directory it recovers and resumes the same stream. Prints `durable seq=N`
    /// as the watermark advances and, last, `seq=<n> state_hash=<hex>`.
    Simulate {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Commands in the stream, genesis excluded.
        #[arg(long, default_value_t = 100_000)]
        commands: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Configuration for a new data directory [default: the embedded ops/exchange.toml].
        #[arg(long)]
        config: Option<PathBuf>,
        /// page-cache, group-commit, group-commit:MICROS:RECORDS, or sync.
        #[arg(long, default_value = "group-commit")]
        durability: sequencer::journal::Durability,
        /// Print `durable seq=N` each time the watermark advances by this many commands.
        #[arg(long, default_value_t = 10_000)]
        report_every: u64,
        /// How the application loop waits when idle: busy-spin, yield, or
        /// backoff[:spins=N,yields=N,park-ns-min=N,park-ns-max=N]. On two cores, busy-spinning
        /// the loop leaves one core for the generator and everything else.
        #[arg(long, default_value = "backoff")]
        idle: sequencer::ring::IdleConfig,
        /// Snapshot the engine's state to RocksDB every this many commands (0: never); recovery
        /// then replays only the journal after the newest one.
        #[arg(long, default_value_t = sequencer::sequencer::SNAPSHOT_EVERY_COMMANDS)]
        snapshot_every: u64,
    },
    /// Rebuild the state from the newest valid snapshot and the journal after it, and print
    /// `seq=<n> state_hash=<hex>` last. Snapshots that fail their checks are skipped with a
    /// warning.
    Replay {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Stop after this sequence number (starting from a snapshot at or below it).
        #[arg(long)]
        to_seq: Option<u64>,
        /// Replay every command from the first, ignoring snapshots.
        #[arg(long)]
        from_genesis: bool,
    },
    /// Check every checksum, sequence continuity, that replayed events equal the event journal
    /// byte for byte, that every stored snapshot and the newest one plus the journal tail agree
    /// with the replay from genesis, and the invariants. Exit status 0 only if all hold.
    Verify {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Wallet queries over the journal.
    Wallet {
        #[command(subcommand)]
        wallet: Wallet,
    },
}

#[derive(Debug, Subcommand)]
enum Wallet {
    /// An account's balances at a past sequence number (default: now), by replay from the
    /// newest valid snapshot at or below it.
    History {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long)]
        account: u32,
        #[arg(long)]
        at_seq: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Order engine (risk, matching, settlement) on a pinned thread: closed-loop throughput,
    /// open-loop latency at fixed offered rates, and the orderbook-rs peer on the same stream.
    Engine(EngineArgs),
    /// Wallet transfers through the engine on a pinned thread: closed-loop throughput and
    /// open-loop latency at fixed offered rates.
    Wallet(WalletArgs),
    /// One hop through a shared-memory ring between two threads pinned to two cores: open-loop
    /// latency at fixed offered rates and closed-loop throughput, 128-byte records.
    Ring(RingArgs),
    /// 128-byte records appended to real journal files under each durability policy:
    /// closed-loop records/s (a commit every 64) and open-loop append latency.
    Journal(JournalArgs),
    /// Commands through input ring, application loop (sequencer, journals, engine) and output
    /// ring, per durability policy: open-loop latency to the first released event, and
    /// closed-loop throughput.
    Loop(LoopArgs),
    /// FIX 4.4 sessions over loopback TCP against a node started here (or --connect): open-loop
    /// wire-to-wire latency, NewOrderSingle to first ExecutionReport, and closed-loop throughput.
    Fix(bench_fix::FixArgs),
    /// The FIX order path's CPU cost per message, stage by stage, on one thread without
    /// sockets: decode, session, order entry, stores, loop, reports, encode.
    FixPath(bench_fix_path::FixPathArgs),
}

/// Flags shared by both benchmarks. Unset flags take the defaults (or the --quick defaults).
#[derive(Debug, Args)]
struct CommonArgs {
    /// Measured commands per run.
    #[arg(long)]
    commands: Option<usize>,
    /// Untimed warm-up commands replayed before each measured run.
    #[arg(long)]
    warmup: Option<usize>,
    /// Offered rates for the open-loop latency runs, commands per second (repeatable or a comma
    /// list; the first is the JSON headline) [default: 1000000,3000000].
    #[arg(long = "rate", value_delimiter = ',')]
    rates_per_sec: Option<Vec<u64>>,
    /// Funded trading accounts [default: 10000].
    #[arg(long)]
    accounts: Option<u32>,
    /// Seed of the command stream generator [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for .hgrm files and PNG plots [default: ./bench-out].
    #[arg(long = "out")]
    out_dir: Option<PathBuf>,
    /// Small streams for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object with the results as the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EngineArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Instrument counts, one scenario each (repeatable or a comma list) [default: 1,100].
    #[arg(long, value_delimiter = ',')]
    instruments: Option<Vec<u32>>,
    /// Order flows: exchange-core, market-selftrade (repeatable or a comma list)
    /// [default: exchange-core].
    #[arg(long = "mix", value_delimiter = ',')]
    mixes: Option<Vec<Mix>>,
    /// Orders pre-placed on each book before the warm-up; the generator keeps books near this
    /// [default: 1000 on one book, 1000 spread over more books but at least 100 per book].
    #[arg(long)]
    resting: Option<u32>,
    /// Skip the orderbook-rs peer run.
    #[arg(long)]
    no_peer: bool,
}

#[derive(Debug, Args)]
struct WalletArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Percent of commands that resend an earlier transfer unchanged [default: 4].
    #[arg(long)]
    retry_percent: Option<u64>,
    /// Journal every transfer through the sequencer and count it once durable (first rate
    /// only) [default: off].
    #[arg(long)]
    journal: bool,
    /// Durability policy with --journal: page-cache, group-commit, group-commit:MICROS:RECORDS
    /// or sync [default: group-commit, 1 ms or 4096 records].
    #[arg(long)]
    durability: Option<sequencer::journal::Durability>,
    /// Parent directory of the temporary journal with --journal [default: the temp dir].
    #[arg(long)]
    journal_dir: Option<PathBuf>,
}

/// Flags of the durable benchmarks (journal, loop).
#[derive(Debug, Args)]
struct DurableArgs {
    /// Offered rate of the open-loop latency runs, per second [default: 1000000].
    #[arg(long = "rate")]
    rate_per_sec: Option<u64>,
    /// Durability policies, one run each (repeatable or a comma list): page-cache,
    /// group-commit, group-commit:MICROS:RECORDS, sync [default: page-cache,group-commit,sync].
    #[arg(long = "durability", value_delimiter = ',')]
    policies: Option<Vec<sequencer::journal::Durability>>,
    /// Each timed run stops issuing after this many milliseconds [default: 4000].
    #[arg(long)]
    time_limit_ms: Option<u64>,
    /// Parent directory of the temporary journals, on a real file system [default: temp dir].
    #[arg(long)]
    journal_dir: Option<PathBuf>,
    /// Directory for .hgrm files and PNG plots [default: ./bench-out].
    #[arg(long = "out")]
    out_dir: Option<PathBuf>,
    /// Short runs for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object with the results as the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JournalArgs {
    #[command(flatten)]
    durable: DurableArgs,
    /// Measured records of the open-loop run, per policy [default: 2000000].
    #[arg(long)]
    records: Option<usize>,
    /// Records of the closed-loop run, per policy [default: 4000000].
    #[arg(long)]
    throughput_records: Option<usize>,
}

#[derive(Debug, Args)]
struct LoopArgs {
    #[command(flatten)]
    durable: DurableArgs,
    /// Measured commands per run [default: 1000000].
    #[arg(long)]
    commands: Option<usize>,
    /// Warm-up commands through the rings, untimed, after the pre-placed orders
    /// [default: 100000].
    #[arg(long)]
    warmup: Option<usize>,
    /// Instruments (books) [default: 1].
    #[arg(long)]
    instruments: Option<u32>,
}

fn journal_config(args: JournalArgs) -> JournalBenchConfig {
    let durable = args.durable;
    let base =
        if durable.quick { JournalBenchConfig::quick() } else { JournalBenchConfig::default() };
    JournalBenchConfig {
        throughput_records: args.throughput_records.unwrap_or(base.throughput_records),
        records: args.records.unwrap_or(base.records),
        rate_per_sec: durable.rate_per_sec.unwrap_or(base.rate_per_sec),
        policies: durable.policies.unwrap_or(base.policies),
        time_limit_ns: durable.time_limit_ms.map_or(base.time_limit_ns, |ms| ms * 1_000_000),
        dir: durable.journal_dir.unwrap_or(base.dir),
        out_dir: durable.out_dir.unwrap_or(base.out_dir),
        ..base
    }
}

fn loop_config(args: LoopArgs) -> LoopBenchConfig {
    let durable = args.durable;
    let base = if durable.quick { LoopBenchConfig::quick() } else { LoopBenchConfig::default() };
    LoopBenchConfig {
        instruments: args.instruments.unwrap_or(base.instruments),
        warmup_commands: args.warmup.unwrap_or(base.warmup_commands),
        measured_commands: args.commands.unwrap_or(base.measured_commands),
        rate_per_sec: durable.rate_per_sec.unwrap_or(base.rate_per_sec),
        policies: durable.policies.unwrap_or(base.policies),
        time_limit_ns: durable.time_limit_ms.map_or(base.time_limit_ns, |ms| ms * 1_000_000),
        dir: durable.journal_dir.unwrap_or(base.dir),
        out_dir: durable.out_dir.unwrap_or(base.out_dir),
        ..base
    }
}

#[derive(Debug, Args)]
struct RingArgs {
    /// Measured records per offered rate [default: 3000000].
    #[arg(long)]
    records: Option<usize>,
    /// Untimed records sent at the same rate before the measured ones [default: 300000].
    #[arg(long)]
    warmup: Option<usize>,
    /// Records of the closed-loop throughput run [default: 20000000].
    #[arg(long)]
    throughput_records: Option<usize>,
    /// Offered rates, records per second (repeatable or a comma list; the first is the JSON
    /// headline) [default: 1000000].
    #[arg(long = "rate", value_delimiter = ',')]
    rates_per_sec: Option<Vec<u64>>,
    /// Ring capacity in slots, a power of two [default: 4096].
    #[arg(long)]
    slots: Option<usize>,
    /// Most records the consumer takes per poll [default: 256].
    #[arg(long)]
    poll_limit: Option<usize>,
    /// Directory for the ring file [default: /dev/shm, or the temporary directory].
    #[arg(long)]
    ring_dir: Option<PathBuf>,
    /// Directory for .hgrm files and PNG plots [default: ./bench-out].
    #[arg(long = "out")]
    out_dir: Option<PathBuf>,
    /// Short runs for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object with the results as the last line of stdout.
    #[arg(long)]
    json: bool,
}

fn ring_config(args: RingArgs) -> RingBenchConfig {
    let base = if args.quick { RingBenchConfig::quick() } else { RingBenchConfig::default() };
    RingBenchConfig {
        records: args.records.unwrap_or(base.records),
        warmup_records: args.warmup.unwrap_or(base.warmup_records),
        throughput_records: args.throughput_records.unwrap_or(base.throughput_records),
        rates_per_sec: args.rates_per_sec.unwrap_or(base.rates_per_sec),
        slots: args.slots.unwrap_or(base.slots),
        poll_limit: args.poll_limit.unwrap_or(base.poll_limit),
        ring_dir: args.ring_dir.unwrap_or(base.ring_dir),
        out_dir: args.out_dir.unwrap_or(base.out_dir),
    }
}

fn engine_config(args: EngineArgs) -> EngineBenchConfig {
    let common = args.common;
    let base = if common.quick { EngineBenchConfig::quick() } else { EngineBenchConfig::default() };
    EngineBenchConfig {
        mixes: args.mixes.unwrap_or(base.mixes),
        instruments: args.instruments.unwrap_or(base.instruments),
        accounts: common.accounts.unwrap_or(base.accounts),
        resting_per_instrument: args.resting.or(base.resting_per_instrument),
        measured_commands: common.commands.unwrap_or(base.measured_commands),
        warmup_commands: common.warmup.unwrap_or(base.warmup_commands),
        rates_per_sec: common.rates_per_sec.unwrap_or(base.rates_per_sec),
        seed: common.seed.unwrap_or(base.seed),
        out_dir: common.out_dir.unwrap_or(base.out_dir),
        peer: !args.no_peer,
    }
}

fn wallet_config(args: WalletArgs) -> WalletBenchConfig {
    let common = args.common;
    let base = if common.quick { WalletBenchConfig::quick() } else { WalletBenchConfig::default() };
    WalletBenchConfig {
        accounts: common.accounts.unwrap_or(base.accounts),
        measured_commands: common.commands.unwrap_or(base.measured_commands),
        warmup_commands: common.warmup.unwrap_or(base.warmup_commands),
        retry_percent: args.retry_percent.unwrap_or(base.retry_percent),
        rates_per_sec: common.rates_per_sec.unwrap_or(base.rates_per_sec),
        seed: common.seed.unwrap_or(base.seed),
        out_dir: common.out_dir.unwrap_or(base.out_dir),
        ..base
    }
}

fn main() -> anyhow::Result<()> {
    huge_pages::configure();
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Bench { bench: Bench::Engine(args) } => {
            let json = args.common.json;
            let report = benches::engine_bench::run(&engine_config(args), &mut out)
                .context("bench engine")?;
            if json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::Wallet(args) } if args.journal => {
            let json = args.common.json;
            let durability = args.durability.unwrap_or_else(benches::durable::group_commit);
            let dir = args.journal_dir.clone().unwrap_or_else(std::env::temp_dir);
            let report =
                benches::wallet_journal::run(&wallet_config(args), durability, &dir, &mut out)
                    .context("bench wallet --journal")?;
            if json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::Journal(args) } => {
            let json = args.durable.json;
            let report = benches::journal_bench::run(&journal_config(args), &mut out)
                .context("bench journal")?;
            if json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::Loop(args) } => {
            let json = args.durable.json;
            let report =
                benches::loop_bench::run(&loop_config(args), &mut out).context("bench loop")?;
            if json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::Wallet(args) } => {
            let json = args.common.json;
            let report =
                benches::wallet::run(&wallet_config(args), &mut out).context("bench wallet")?;
            if json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::Ring(args) } => {
            let json = args.json;
            let report = benches::ring::run(&ring_config(args), &mut out).context("bench ring")?;
            if json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::Fix(args) } => {
            let report = bench_fix::run(&args, &mut out).context("bench fix")?;
            if args.json {
                writeln!(out, "{}", report.to_json_line()?)?;
            }
        }
        Command::Bench { bench: Bench::FixPath(args) } => bench_fix_path::run(&args, &mut out)?,
        Command::Config { config } => check_config(config.as_deref(), &mut out)?,
        Command::Run { data_dir, config, idle, gateway_idle } => {
            let gateway_idle = gateway_idle.unwrap_or(idle);
            node::run(&node::RunArgs { data_dir, config, idle, gateway_idle }, &mut out)?;
        }
        Command::Simulate {
            data_dir,
            commands,
            seed,
            config,
            durability,
            report_every,
            idle,
            snapshot_every,
        } => {
            let args = simulate::SimulateArgs {
                data_dir,
                commands,
                seed,
                config,
                durability,
                report_every,
                idle,
                snapshot_every,
            };
            simulate::simulate(&args, &mut out)?;
        }
        Command::Replay { data_dir, to_seq, from_genesis } => {
            history::run_replay(&data_dir, to_seq, from_genesis, &mut out)?;
        }
        Command::Verify { data_dir } => history::run_verify(&data_dir, &mut out)?,
        Command::Wallet { wallet: Wallet::History { data_dir, account, at_seq } } => {
            history::run_history(&data_dir, account, at_seq, &mut out)?;
        }
    }
    Ok(())
}

fn check_config(path: Option<&std::path::Path>, out: &mut impl Write) -> anyhow::Result<()> {
    let source =
        path.map_or_else(|| "embedded ops/exchange.toml".to_owned(), |p| p.display().to_string());
    let config = config::Config::load(path)?;
    let engine = config.genesis_engine()?;
    writeln!(out, "config: {source}")?;
    writeln!(out, "{:?}", engine.config())?;
    for instrument in &config.instruments {
        let spec = config.instrument_spec(instrument)?;
        writeln!(
            out,
            "instrument {} ({}): base_per_lot={} quote_per_tick_lot={} reference={} ticks, \
             quantity {}..={} lots, band ±{} bps, fees maker {} / taker {} bps",
            spec.instrument,
            instrument.symbol,
            spec.base_per_lot,
            spec.quote_per_tick_lot,
            spec.reference_price,
            spec.quantity_min,
            spec.quantity_max,
            spec.band_bps,
            spec.maker_fee_bps,
            spec.taker_fee_bps,
        )?;
    }
    let hash: String = engine.state_hash().iter().map(|byte| format!("{byte:02x}")).collect();
    writeln!(out, "genesis: seq={} state_hash={hash}", engine.seq())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequencer::ring::IdleConfig;

    /// `exchange run`'s idle settings: the loop's and the FIX thread's.
    fn run_idle(args: &[&str]) -> (IdleConfig, Option<IdleConfig>) {
        let cli = Cli::try_parse_from([&["exchange", "run"], args].concat()).unwrap();
        match cli.command {
            Command::Run { idle, gateway_idle, .. } => (idle, gateway_idle),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn run_takes_the_gateways_idle_apart_from_the_loops() {
        let (idle, gateway) = run_idle(&["--idle", "busy-spin", "--gateway-idle", "backoff"]);
        assert_eq!(idle, IdleConfig::BusySpin);
        assert!(matches!(gateway, Some(IdleConfig::Backoff(_))));
        // Without it, the FIX thread waits as the loop does, as before the flag existed.
        assert_eq!(run_idle(&["--idle", "yield"]), (IdleConfig::Yield, None));
    }
}
