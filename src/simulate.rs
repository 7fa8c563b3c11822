//! `exchange simulate`: a generator thread feeds a realistic mixed workload through a
//! shared-memory ring into the application loop, which sequences, journals and applies it under
//! the configured durability policy.
//!
//! The workload is a pure function of the seed and the position in the stream, so a simulation
//! killed at any moment and started again on the same data directory resumes exactly where the
//! journal ends: it regenerates the stream, skips what is journaled, and reaches the same final
//! state as an uninterrupted run. The crash tests rely on that.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, InstrumentId, InstrumentSpec, NewOrder,
    OrderId, OrderType, Price, Quantity, SelfTradePrevention, Side, TimeInForce, TransactionId,
};
use sequencer::app_loop::{AppLoop, LoopConfig};
use sequencer::journal::Durability;
use sequencer::record::{encode_command, RECORD_BYTES};
use sequencer::ring::{BackoffConfig, BackoffIdle, IdleConfig, IdleStrategy, Ring};
use sequencer::sequencer::{Sequencer, SequencerConfig, SNAPSHOTS_KEPT};

use crate::config::Config;

/// Where a data directory keeps the configuration it was created with.
pub const CONFIG_FILE: &str = "exchange.toml";
/// Journal segments are pre-allocated at this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// SplitMix64: small, fast and fully determined by its seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        let index = self.below(items.len() as u64);
        items[usize::try_from(index).expect("index below a slice length")]
    }
}

/// The simulated flow: every order type and time in force, amends, cancels, mass cancels,
/// deposits, withdrawals and transfers (some retried), across the configured instruments and
/// accounts. Cancels and amends name recently placed orders, some of which have traded away by
/// then: those are rejected, as they would be for a real client.
#[derive(Debug)]
pub struct Workload {
    rng: Rng,
    instruments: Vec<InstrumentSpec>,
    accounts: Vec<AccountId>,
    next_order: u64,
    recent: Vec<(OrderId, AccountId, InstrumentId)>,
    next_transaction: u128,
    last_transfer: Option<CommandBody>,
}

impl Workload {
    pub fn new(seed: u64, config: &Config) -> anyhow::Result<Workload> {
        let instruments = config
            .instruments
            .iter()
            .map(|instrument| config.instrument_spec(instrument))
            .collect::<Result<Vec<_>, _>>()?;
        let accounts: Vec<AccountId> = config
            .accounts
            .iter()
            .map(|account| AccountId(account.id))
            .filter(|account| account.0 != config.engine.fee_account)
            .collect();
        if instruments.is_empty() || accounts.len() < 2 {
            bail!("simulation needs at least one instrument and two accounts in the config");
        }
        Ok(Workload {
            rng: Rng(seed),
            instruments,
            accounts,
            next_order: 1,
            recent: Vec::with_capacity(512),
            next_transaction: 1,
            last_transfer: None,
        })
    }

    fn remember(&mut self, order: (OrderId, AccountId, InstrumentId)) {
        if self.recent.len() == 512 {
            let index = usize::try_from(self.rng.below(512)).expect("below 512");
            self.recent[index] = order;
        } else {
            self.recent.push(order);
        }
    }

    fn order(&mut self, order_type: OrderType, time_in_force: TimeInForce) -> CommandBody {
        let spec = self.rng.pick(&self.instruments);
        let account = self.rng.pick(&self.accounts);
        let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
        let reference = spec.reference_price.0;
        // Within ±2% of the reference, crossing more often for immediate orders.
        let spread = (reference / 50).max(2);
        let offset = self.rng.below(spread);
        let aggressive = !time_in_force.rests() || self.rng.below(4) == 0;
        let price = match (side, aggressive) {
            (Side::Buy, true) | (Side::Sell, false) => reference + offset,
            (Side::Buy, false) | (Side::Sell, true) => reference.saturating_sub(offset).max(1),
        };
        let quantity = spec.quantity_min.0 * (1 + self.rng.below(20));
        let order_id = OrderId(self.next_order);
        self.next_order += 1;
        let market_buy = order_type == OrderType::Market && side == Side::Buy;
        let budget = if market_buy {
            let value =
                u128::from(reference) * u128::from(quantity) * u128::from(spec.quote_per_tick_lot);
            value + value / 20
        } else {
            0
        };
        let stp = [
            SelfTradePrevention::None,
            SelfTradePrevention::CancelResting,
            SelfTradePrevention::CancelIncoming,
            SelfTradePrevention::CancelBoth,
        ];
        if time_in_force.rests() {
            self.remember((order_id, account, spec.instrument));
        }
        CommandBody::NewOrder(NewOrder {
            order_id,
            account,
            instrument: spec.instrument,
            side,
            order_type,
            time_in_force,
            post_only: order_type == OrderType::Limit
                && time_in_force.rests()
                && self.rng.below(20) == 0,
            self_trade_prevention: self.rng.pick(&stp),
            price: Price(if order_type == OrderType::Market { 0 } else { price }),
            quantity: Quantity(quantity),
            quote_budget: Amount(budget),
        })
    }

    fn wallet(&mut self, roll: u64) -> CommandBody {
        let asset = AssetId(u16::try_from(self.rng.below(2)).expect("below 2"));
        let account = self.rng.pick(&self.accounts);
        let amount = Amount(1 + u128::from(self.rng.below(10_000)));
        self.next_transaction += 1;
        let transaction_id = TransactionId(self.next_transaction);
        match roll {
            0..=5 => {
                if let (Some(retry), true) = (self.last_transfer, self.rng.below(5) == 0) {
                    return retry;
                }
                let mut to = self.rng.pick(&self.accounts);
                if to == account {
                    to = self.accounts[(self
                        .accounts
                        .iter()
                        .position(|&a| a == account)
                        .unwrap_or(0)
                        + 1)
                        % self.accounts.len()];
                }
                let transfer =
                    CommandBody::Transfer { transaction_id, from: account, to, asset, amount };
                self.last_transfer = Some(transfer);
                transfer
            }
            6..=8 => CommandBody::Deposit { transaction_id, account, asset, amount },
            _ => CommandBody::Withdraw { transaction_id, account, asset, amount },
        }
    }

    /// The next command of the stream.
    pub fn next_command(&mut self) -> CommandBody {
        let roll = self.rng.below(100);
        match roll {
            0..=29 => self.order(OrderType::Limit, TimeInForce::Gtc),
            30..=34 => self.order(OrderType::Limit, TimeInForce::Day),
            35..=61 if !self.recent.is_empty() => {
                let (order_id, account, instrument) = self.rng.pick(&self.recent);
                if roll < 50 {
                    let spec = self.instruments.iter().find(|spec| spec.instrument == instrument);
                    let reference = spec.map_or(1, |spec| spec.reference_price.0);
                    let quantity =
                        spec.map_or(1, |spec| spec.quantity_min.0) * (1 + self.rng.below(20));
                    let price =
                        reference - reference / 100 + self.rng.below((reference / 50).max(2));
                    CommandBody::AmendOrder {
                        order_id,
                        account,
                        price: Price(price),
                        quantity: Quantity(quantity),
                    }
                } else {
                    CommandBody::CancelOrder { order_id, account }
                }
            }
            62..=71 => self.order(OrderType::Limit, TimeInForce::Ioc),
            72..=75 => self.order(OrderType::Limit, TimeInForce::Fok),
            76..=83 => self.order(OrderType::Market, TimeInForce::Ioc),
            84..=85 => {
                let account = self.rng.pick(&self.accounts);
                CommandBody::MassCancel { account: Some(account), instrument: None }
            }
            86..=99 => self.wallet(roll - 86),
            _ => self.order(OrderType::Limit, TimeInForce::Gtc),
        }
    }
}

#[derive(Debug)]
pub struct SimulateArgs {
    pub data_dir: PathBuf,
    /// Stream length, genesis excluded; a resumed run stops at the same total.
    pub commands: u64,
    pub seed: u64,
    pub config: Option<PathBuf>,
    pub durability: Durability,
    pub report_every: u64,
    pub idle: IdleConfig,
    /// A snapshot every this many commands; zero for none.
    pub snapshot_every: u64,
}

fn now_ns() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// Loads the data directory's configuration, first copying `source` (or the embedded default)
/// there if the directory is new, so that replay and verification later use the same one.
pub fn data_dir_config(data_dir: &Path, source: Option<&Path>) -> anyhow::Result<Config> {
    let path = data_dir.join(CONFIG_FILE);
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let text = match source {
            Some(source) => std::fs::read_to_string(source)
                .with_context(|| format!("reading {}", source.display()))?,
            None => crate::config::DEFAULT_TOML.to_owned(),
        };
        Config::from_toml(&text)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Config::load(Some(&path))?)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Opens the data directory's sequencer (recovering from its snapshots and journals, and saying
/// on stderr what recovery found) and, on a new directory, sequences the genesis commands of
/// `config`. Returns the sequencer and the number of genesis commands.
pub fn open_sequencer(
    data_dir: &Path,
    config: &Config,
    durability: Durability,
    snapshot_every: u64,
) -> anyhow::Result<(Sequencer, u64)> {
    let sequencer_config = SequencerConfig {
        data_dir: data_dir.to_owned(),
        engine: config.engine_config(),
        durability,
        segment_bytes: SEGMENT_BYTES,
        truncate_corrupt: false,
        snapshot_every_commands: snapshot_every,
        snapshots_kept: SNAPSHOTS_KEPT,
    };
    let (mut sequencer, recovery) = Sequencer::open(&sequencer_config)?;
    if let Some((path, offset, bytes)) = &recovery.commands.torn_tail {
        eprintln!(
            "recovery: torn command tail in {} at {offset}: {bytes} bytes cleared",
            path.display()
        );
    }
    for skipped in &recovery.snapshots_skipped {
        eprintln!("recovery: warning: {skipped}");
    }
    if let Some(seq) = recovery.snapshot_seq {
        eprintln!("recovery: from the snapshot at seq {seq}");
    }
    eprintln!(
        "recovery: {} commands replayed, {} missing events restored",
        recovery.commands_replayed, recovery.events_appended
    );
    let genesis = config.genesis()?;
    let genesis_len = genesis.len() as u64;
    if sequencer.seq() == 0 {
        for body in genesis {
            sequencer.submit(body, now_ns())?;
        }
        sequencer.flush()?;
    } else if sequencer.seq() < genesis_len {
        bail!(
            "data directory holds {} commands, fewer than its genesis ({genesis_len})",
            sequencer.seq()
        );
    }
    Ok((sequencer, genesis_len))
}

/// Runs the simulation; prints `durable seq=N` as the watermark advances and, last,
/// `seq=<n> state_hash=<hex>`.
// tidy: long function, the loop's set-up, duty cycle and shutdown read best in one place.
pub fn simulate(args: &SimulateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let config = data_dir_config(&args.data_dir, args.config.as_deref())?;
    let (sequencer, genesis_len) =
        open_sequencer(&args.data_dir, &config, args.durability, args.snapshot_every)?;
    let done = sequencer.seq() - genesis_len;
    let remaining = args.commands.saturating_sub(done);
    let mut workload = Workload::new(args.seed, &config)?;
    for _ in 0..done {
        workload.next_command();
    }

    let ring_path = args.data_dir.join("input.ring");
    let _ = std::fs::remove_file(&ring_path);
    let (mut producer, consumer) = Ring::create(&ring_path, 4096, RECORD_BYTES)?.split();
    let generator =
        std::thread::Builder::new().name("simulate-generator".to_owned()).spawn(move || {
            let mut idle = BackoffIdle::new(BackoffConfig::default());
            for _ in 0..remaining {
                // Unsequenced: the loop stamps the real sequence number and time.
                let record = encode_command(&Command {
                    seq: 0,
                    timestamp_ns: 0,
                    body: workload.next_command(),
                });
                while producer.try_push(&record).is_err() {
                    idle.idle(0);
                }
                idle.reset();
            }
        })?;

    // The loop's events go out through a second ring to a consumer thread, as they will go to
    // the gateway and market data; here the consumer only counts them.
    let output_path = args.data_dir.join("output.ring");
    let (output_producer, mut output_consumer) =
        Ring::create(&output_path, 1 << 14, RECORD_BYTES)?.split();
    let output_done = Arc::new(AtomicBool::new(false));
    let drain = {
        let output_done = Arc::clone(&output_done);
        std::thread::Builder::new().name("simulate-output".to_owned()).spawn(move || {
            let mut idle = BackoffIdle::new(BackoffConfig::default());
            let mut events = 0u64;
            loop {
                let work = output_consumer.poll(1024, |_| events += 1);
                if work == 0 && output_done.load(Ordering::Acquire) && output_consumer.depth() == 0
                {
                    return events;
                }
                idle.idle(work);
            }
        })?
    };

    let core = core_affinity::get_core_ids().and_then(|cores| cores.last().copied());
    let pinned = core.is_some_and(core_affinity::set_for_current);
    eprintln!(
        "application loop: {}",
        if pinned { "pinned to the last core" } else { "not pinned" }
    );
    let mut app = AppLoop::new(sequencer, consumer, Some(output_producer), LoopConfig::default());
    let mut idle = args.idle.build();
    let mut printed = 0u64;
    while app.stats().commands < remaining {
        let work = app.do_work()?;
        let durable = app.stats().durable_seq;
        if durable >= printed + args.report_every.max(1) {
            writeln!(out, "durable seq={durable}")?;
            out.flush()?;
            printed = durable;
        }
        idle.idle(work);
    }
    generator.join().map_err(|_| anyhow::anyhow!("generator thread panicked"))?;
    let stats = app.run(&mut idle, |_| true)?;
    app.drain_output(&mut idle);
    output_done.store(true, Ordering::Release);
    let released = drain.join().map_err(|_| anyhow::anyhow!("output thread panicked"))?;
    writeln!(out, "durable seq={}", stats.durable_seq)?;
    eprintln!(
        "loop: {} commands in {} busy cycles, longest cycle {} µs; {released} events released",
        stats.commands,
        stats.busy_cycles,
        stats.cycle_ns_max / 1_000,
    );
    let _ = std::fs::remove_file(&ring_path);
    let _ = std::fs::remove_file(&output_path);
    let sequencer = app.into_sequencer();
    writeln!(out, "seq={} state_hash={}", sequencer.seq(), hex(&sequencer.engine().state_hash()))?;
    Ok(())
}
