//! The engine benchmark's command streams, generated up front from a seed.
//!
//! A stream has three parts: `setup` (assets, instruments, accounts and their deposits, which
//! only our engine understands), `warmup` (orders that pre-populate every book, then a stretch of
//! the mix, so the measured phase starts against books of realistic depth and warmed caches) and
//! `measured`. Every part is replayed, never skipped, on a fresh engine before each measurement;
//! only the `measured` part is timed.
//!
//! To aim amends and cancels at orders that really rest, the generator runs every command it
//! emits through a shadow [`Engine`] and follows its events. The engine is deterministic, so the
//! measured engine sees the same book the generator saw, and every amend or cancel finds its
//! order. The shadow's outcome (trades, rejects) is reported with the results so that nobody has
//! to guess how much of the stream was cheap rejects.

use std::collections::HashMap;

use engine::{
    fee, notional, AccountId, Amount, AssetId, Command, CommandBody, Engine, EngineConfig, Event,
    InstrumentId, InstrumentSpec, NewOrder, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

use crate::peer::PeerOp;
use crate::rng::SplitMix64;

/// Resting prices lie this many ticks or fewer behind the touch, denser near it.
const DEPTH_TICKS: u64 = 64;
/// Aggressive prices reach at most this many ticks into the opposite side, touch included.
const CROSS_TICKS_MAX: u64 = 3;
/// How often, in percent, an order crosses when its book holds the target number of orders:
/// moves rarely, new GTC orders sometimes, IOC orders often (the rest of them miss). With
/// exchange-core's mix these rates roughly balance the orders cancels and fills remove against
/// those new orders add, and [`Generator::cross_percent`] corrects the drift.
const CROSS_PERCENT_AMEND: u64 = 2;
const CROSS_PERCENT_GTC: u64 = 10;
const CROSS_PERCENT_IOC: u64 = 30;
/// Every order is for 1..=this many lots.
const LOTS_MAX: u64 = 10;
/// The instruments' price bands, wide enough that the generated prices always fall inside.
const BAND_BPS: u16 = 1_000;
const MAKER_FEE_BPS: u16 = 1;
const TAKER_FEE_BPS: u16 = 2;
const BASE_PER_LOT: u64 = 1_000;
const QUOTE_PER_TICK_LOT: u64 = 10;
/// Each account's deposit of every asset: enough that no order in any run lacks funds, so risk
/// checks run in full and pass, as they do for a real, funded trader.
const DEPOSIT_MINOR_UNITS: u128 = 1_000_000_000_000_000;
/// Base assets are shared between instruments: instrument `i` trades base asset
/// `1 + i % BASE_ASSETS` against quote asset 0.
const BASE_ASSETS: u32 = 8;
/// Simulated nanoseconds between two commands' sequencer timestamps.
const TIMESTAMP_STEP_NS: u64 = 100;

/// Which order flow to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// exchange-core's latency-test mix: 82% move the price of a resting order, 9% new GTC
    /// limit, 6% cancel, 3% IOC limit.
    ExchangeCore,
    /// Taker-heavy flow with self-trades: 55% move, 20% new GTC limit, 10% cancel, 5% IOC limit,
    /// 10% market (for 1..=5 lots; limit orders are for 1..=10). 30% of IOC and market orders
    /// and of crossing GTC orders come from the account that owns the best opposite order,
    /// and every account has a self-trade-prevention mode (none, cancel resting, cancel
    /// incoming, cancel both, by account number).
    MarketSelfTrade,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::ExchangeCore => "exchange-core",
            Mix::MarketSelfTrade => "market-selftrade",
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Mix, String> {
        match text {
            "exchange-core" => Ok(Mix::ExchangeCore),
            "market-selftrade" => Ok(Mix::MarketSelfTrade),
            other => Err(format!("unknown mix {other:?}; use exchange-core or market-selftrade")),
        }
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketShape {
    pub mix: Mix,
    pub instruments: u32,
    /// Trading accounts, numbered from 1 (account 0 collects fees).
    pub accounts: u32,
    /// Orders placed on each book before the warm-up mix; the generator steers the book size
    /// towards this during the run.
    pub resting_per_instrument: u32,
    pub warmup_commands: usize,
    pub measured_commands: usize,
    pub seed: u64,
}

/// What the shadow engine saw while the stream was generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    pub amends: u64,
    pub new_limit_gtc: u64,
    pub cancels: u64,
    pub new_limit_ioc: u64,
    pub new_market: u64,
    /// Orders sent from the account that owns the best opposite order.
    pub self_trade_attempts: u64,
    /// Outcome of the measured part on the shadow engine.
    pub measured_events: u64,
    pub measured_trades: u64,
    pub measured_rejects: u64,
    /// Measured commands that traded at least once.
    pub measured_commands_trading: u64,
    pub measured_self_trade_cancels: u64,
    pub resting_orders_at_start: u64,
    pub resting_orders_at_end: u64,
}

/// A generated engine benchmark stream. See the module documentation.
#[derive(Debug)]
pub struct EngineStream {
    pub config: EngineConfig,
    pub setup: Vec<Command>,
    pub warmup: Vec<Command>,
    pub measured: Vec<Command>,
    /// `warmup` and `measured` translated for the peer order book, command for command.
    pub warmup_peer: Vec<PeerOp>,
    pub measured_peer: Vec<PeerOp>,
    pub stats: StreamStats,
    /// The shadow engine's state hash after the whole stream: every measured run must end there.
    pub final_state_hash: [u8; 32],
}

/// The engine capacities a shape needs, with room to spare so no run hits a limit.
pub fn engine_config(shape: &MarketShape) -> EngineConfig {
    let resting_total = u64::from(shape.instruments) * u64::from(shape.resting_per_instrument);
    let orders_max = (resting_total * 4).next_power_of_two().max(1 << 16);
    EngineConfig {
        assets_max: 16,
        instruments_max: shape.instruments,
        accounts_max: shape.accounts + 1,
        orders_max: u32::try_from(orders_max).expect("order capacity fits u32"),
        levels_max: 4_096,
        orders_per_account_max: 1_000,
        transactions_max: shape.accounts * (BASE_ASSETS + 1) + 16,
        fee_account: AccountId(0),
    }
}

/// Generates a stream; the same shape (seed included) always yields the same stream.
pub fn generate(shape: &MarketShape) -> EngineStream {
    assert!(shape.instruments > 0 && shape.accounts > 0, "need instruments and accounts");
    let config = engine_config(shape);
    let mut generator = Generator {
        rng: SplitMix64::new(shape.seed),
        shape: *shape,
        shadow: Engine::new(config),
        events: Vec::with_capacity(64),
        live: LiveOrders::new(shape.instruments),
        seq: 0,
        timestamp_ns: 1_700_000_000_000_000_000,
        next_order_id: 1,
        next_transaction_id: 1,
        mids: (0..shape.instruments).map(|i| 10_000 + u64::from(i * 37 % 1_000)).collect(),
        stats: StreamStats::default(),
        outcome: Outcome::default(),
    };
    let setup = generator.setup_commands();
    let mut warmup = Vec::with_capacity(
        shape.warmup_commands + (shape.instruments * shape.resting_per_instrument) as usize,
    );
    let mut warmup_peer = Vec::with_capacity(warmup.capacity());
    for instrument in 0..shape.instruments {
        for index in 0..shape.resting_per_instrument {
            let side = if index % 2 == 0 { Side::Buy } else { Side::Sell };
            let body = generator.new_limit(instrument, side, false, TimeInForce::Gtc);
            let command = generator.run(body);
            warmup_peer.push(PeerOp::from_command(&command, instrument));
            warmup.push(command);
        }
    }
    for _ in 0..shape.warmup_commands {
        let (body, instrument) = generator.mix_command();
        let command = generator.run(body);
        warmup_peer.push(PeerOp::from_command(&command, instrument));
        warmup.push(command);
    }
    // Only the measured part's composition and outcome are reported.
    generator.stats =
        StreamStats { resting_orders_at_start: generator.live.len(), ..StreamStats::default() };
    generator.outcome = Outcome::default();
    let mut measured = Vec::with_capacity(shape.measured_commands);
    let mut measured_peer = Vec::with_capacity(shape.measured_commands);
    for _ in 0..shape.measured_commands {
        let (body, instrument) = generator.mix_command();
        let command = generator.run(body);
        measured_peer.push(PeerOp::from_command(&command, instrument));
        measured.push(command);
    }
    let mut stats = generator.stats;
    stats.measured_events = generator.outcome.events;
    stats.measured_trades = generator.outcome.trades;
    stats.measured_rejects = generator.outcome.rejects;
    stats.measured_commands_trading = generator.outcome.commands_trading;
    stats.measured_self_trade_cancels = generator.outcome.self_trade_cancels;
    stats.resting_orders_at_end = generator.live.len();
    EngineStream {
        config,
        setup,
        warmup,
        measured,
        warmup_peer,
        measured_peer,
        stats,
        final_state_hash: generator.shadow.state_hash(),
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    events: u64,
    trades: u64,
    rejects: u64,
    commands_trading: u64,
    self_trade_cancels: u64,
}

/// The resting orders the shadow engine holds, for picking amend and cancel targets uniformly.
/// The map is only looked up, never iterated, so its hash seed cannot shape the stream.
#[derive(Debug)]
struct LiveOrders {
    ids: Vec<u64>,
    /// Order id → (position in `ids`, instrument).
    positions: HashMap<u64, (usize, u32)>,
    per_instrument: Vec<u64>,
}

impl LiveOrders {
    fn new(instruments: u32) -> LiveOrders {
        LiveOrders {
            ids: Vec::new(),
            positions: HashMap::new(),
            per_instrument: vec![0; instruments as usize],
        }
    }

    fn len(&self) -> u64 {
        self.ids.len() as u64
    }

    fn insert(&mut self, id: u64, instrument: u32) {
        if self.positions.contains_key(&id) {
            return;
        }
        self.positions.insert(id, (self.ids.len(), instrument));
        self.ids.push(id);
        self.per_instrument[instrument as usize] += 1;
    }

    fn remove(&mut self, id: u64) {
        let Some((position, instrument)) = self.positions.remove(&id) else { return };
        self.ids.swap_remove(position);
        if let Some(&moved) = self.ids.get(position) {
            self.positions.get_mut(&moved).expect("moved id is live").0 = position;
        }
        self.per_instrument[instrument as usize] -= 1;
    }

    fn pick(&self, rng: &mut SplitMix64) -> Option<u64> {
        (!self.ids.is_empty()).then(|| self.ids[rng.index(self.ids.len())])
    }
}

struct Generator {
    rng: SplitMix64,
    shape: MarketShape,
    shadow: Engine,
    events: Vec<Event>,
    live: LiveOrders,
    seq: u64,
    timestamp_ns: u64,
    next_order_id: u64,
    next_transaction_id: u128,
    mids: Vec<u64>,
    stats: StreamStats,
    outcome: Outcome,
}

impl Generator {
    /// Stamps `body` as the sequencer would, runs it through the shadow engine and follows the
    /// resting orders from its events.
    fn run(&mut self, body: CommandBody) -> Command {
        self.seq += 1;
        self.timestamp_ns += TIMESTAMP_STEP_NS;
        let command = Command { seq: self.seq, timestamp_ns: self.timestamp_ns, body };
        self.events.clear();
        self.shadow.handle(&command, &mut self.events);
        let mut traded = false;
        for index in 0..self.events.len() {
            self.outcome.events += 1;
            match self.events[index] {
                Event::OrderRested { order_id } => {
                    let view = self.shadow.order(order_id).expect("a rested order is live");
                    self.live.insert(order_id.0, view.instrument.0);
                }
                Event::OrderCancelled { order_id, reason, .. } => {
                    if reason == engine::CancelReason::SelfTrade {
                        self.outcome.self_trade_cancels += 1;
                    }
                    self.live.remove(order_id.0);
                }
                Event::Trade {
                    maker_order_id, taker_order_id, maker_leaves, taker_leaves, ..
                } => {
                    traded = true;
                    self.outcome.trades += 1;
                    if maker_leaves.0 == 0 {
                        self.live.remove(maker_order_id.0);
                    }
                    if taker_leaves.0 == 0 {
                        self.live.remove(taker_order_id.0);
                    }
                }
                Event::Rejected { .. } => self.outcome.rejects += 1,
                _ => {}
            }
        }
        self.outcome.commands_trading += u64::from(traded);
        command
    }

    /// Assets, instruments, accounts and deposits. The shadow must accept every one of them.
    fn setup_commands(&mut self) -> Vec<Command> {
        let base_assets = BASE_ASSETS.min(self.shape.instruments);
        let mut bodies = Vec::new();
        for asset in 0..=base_assets {
            let asset = AssetId(u16::try_from(asset).expect("few assets"));
            bodies.push(CommandBody::AddAsset { asset, scale: 2 });
        }
        for instrument in 0..self.shape.instruments {
            let base = u16::try_from(1 + instrument % base_assets).expect("few assets");
            bodies.push(CommandBody::AddInstrument(InstrumentSpec {
                instrument: InstrumentId(instrument),
                base_asset: AssetId(base),
                quote_asset: AssetId(0),
                tick_size: Price(1),
                lot_size: Quantity(1),
                quantity_min: Quantity(1),
                quantity_max: Quantity(1_000_000),
                base_per_lot: BASE_PER_LOT,
                quote_per_tick_lot: QUOTE_PER_TICK_LOT,
                reference_price: Price(self.mids[instrument as usize]),
                band_bps: BAND_BPS,
                maker_fee_bps: MAKER_FEE_BPS,
                taker_fee_bps: TAKER_FEE_BPS,
            }));
        }
        for account in 1..=self.shape.accounts {
            bodies.push(CommandBody::CreateAccount { account: AccountId(account) });
            for asset in 0..=base_assets {
                bodies.push(CommandBody::Deposit {
                    transaction_id: TransactionId(self.next_transaction_id),
                    account: AccountId(account),
                    asset: AssetId(u16::try_from(asset).expect("few assets")),
                    amount: Amount(DEPOSIT_MINOR_UNITS),
                });
                self.next_transaction_id += 1;
            }
        }
        let commands: Vec<Command> = bodies.into_iter().map(|body| self.run(body)).collect();
        assert_eq!(self.outcome.rejects, 0, "the engine rejected part of the benchmark setup");
        commands
    }

    /// One command of the configured mix, with the instrument it concerns (the peer routes by
    /// it, as a FIX gateway routes by Symbol).
    fn mix_command(&mut self) -> (CommandBody, u32) {
        let roll = self.rng.below(100);
        let kind = match self.shape.mix {
            Mix::ExchangeCore => match roll {
                0..82 => Kind::Amend,
                82..91 => Kind::Gtc,
                91..97 => Kind::Cancel,
                _ => Kind::Ioc,
            },
            Mix::MarketSelfTrade => match roll {
                0..55 => Kind::Amend,
                55..75 => Kind::Gtc,
                75..85 => Kind::Cancel,
                85..90 => Kind::Ioc,
                _ => Kind::Market,
            },
        };
        let target = match kind {
            Kind::Amend | Kind::Cancel => self.live.pick(&mut self.rng),
            _ => None,
        };
        let side = if self.rng.percent(50) { Side::Buy } else { Side::Sell };
        let instrument = u32::try_from(self.rng.index(self.shape.instruments as usize))
            .expect("instrument index fits u32");
        match (kind, target) {
            (Kind::Amend, Some(id)) => {
                self.stats.amends += 1;
                self.amend(OrderId(id))
            }
            (Kind::Cancel, Some(id)) => {
                self.stats.cancels += 1;
                let view = self.shadow.order(OrderId(id)).expect("picked order is live");
                let body =
                    CommandBody::CancelOrder { order_id: view.order_id, account: view.account };
                (body, view.instrument.0)
            }
            (Kind::Ioc, _) => {
                self.stats.new_limit_ioc += 1;
                let crossing = self.rng.percent(self.cross_percent(instrument, CROSS_PERCENT_IOC));
                (self.new_limit(instrument, side, crossing, TimeInForce::Ioc), instrument)
            }
            (Kind::Market, _) => {
                self.stats.new_market += 1;
                (self.new_market(instrument, side), instrument)
            }
            // A new GTC order, also when an amend or cancel finds no resting order.
            _ => {
                self.stats.new_limit_gtc += 1;
                let crossing = self.rng.percent(self.cross_percent(instrument, CROSS_PERCENT_GTC));
                (self.new_limit(instrument, side, crossing, TimeInForce::Gtc), instrument)
            }
        }
    }

    /// How often a new or moved order should cross: `base_percent` at the target book size,
    /// less on thinner books and more on thicker ones, so the book size stays near the target
    /// over any stream length instead of draining or growing without bound.
    fn cross_percent(&self, instrument: u32, base_percent: u64) -> u64 {
        let live = self.live.per_instrument[instrument as usize];
        let target = u64::from(self.shape.resting_per_instrument.max(1));
        (base_percent * live / target).min(3 * base_percent)
    }

    /// Moves a resting order to a new price, keeping its quantity: the exchange-core "move".
    fn amend(&mut self, order_id: OrderId) -> (CommandBody, u32) {
        let view = self.shadow.order(order_id).expect("picked order is live");
        let instrument = view.instrument.0;
        let crossing = self.rng.percent(self.cross_percent(instrument, CROSS_PERCENT_AMEND));
        let mut price = self.price(instrument, view.side, crossing);
        if price == view.price {
            // A move must move; step away from the touch.
            price = match view.side {
                Side::Buy => Price(price.0 - 1),
                Side::Sell => Price(price.0 + 1),
            };
        }
        let body = CommandBody::AmendOrder {
            order_id,
            account: view.account,
            price,
            quantity: view.quantity,
        };
        (body, instrument)
    }

    fn new_limit(
        &mut self,
        instrument: u32,
        side: Side,
        crossing: bool,
        time_in_force: TimeInForce,
    ) -> CommandBody {
        let price = self.price(instrument, side, crossing);
        let account = self.account(instrument, side, crossing);
        let quantity = Quantity(self.rng.between(1, LOTS_MAX));
        CommandBody::NewOrder(self.order(
            instrument,
            account,
            side,
            OrderType::Limit,
            time_in_force,
            price,
            quantity,
        ))
    }

    fn new_market(&mut self, instrument: u32, side: Side) -> CommandBody {
        let account = self.account(instrument, side, true);
        let quantity = Quantity(self.rng.between(1, LOTS_MAX / 2));
        let mut order = self.order(
            instrument,
            account,
            side,
            OrderType::Market,
            TimeInForce::Ioc,
            Price(0),
            quantity,
        );
        if side == Side::Buy {
            // Budget for the whole quantity at the band's upper edge, so the quantity and not
            // the budget bounds the order, as it does for the peer, which has no budgets.
            let edge =
                Price(self.mids[instrument as usize] * (10_000 + u64::from(BAND_BPS)) / 10_000);
            let value = notional(edge, quantity, QUOTE_PER_TICK_LOT);
            order.quote_budget = value.plus(fee(value, TAKER_FEE_BPS));
        }
        CommandBody::NewOrder(order)
    }

    fn order(
        &mut self,
        instrument: u32,
        account: AccountId,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: Price,
        quantity: Quantity,
    ) -> NewOrder {
        let order_id = OrderId(self.next_order_id);
        self.next_order_id += 1;
        NewOrder {
            order_id,
            account,
            instrument: InstrumentId(instrument),
            side,
            order_type,
            time_in_force,
            post_only: false,
            self_trade_prevention: self.self_trade_prevention(account),
            price,
            quantity,
            quote_budget: Amount::ZERO,
        }
    }

    fn self_trade_prevention(&self, account: AccountId) -> SelfTradePrevention {
        match (self.shape.mix, account.0 % 4) {
            (Mix::ExchangeCore, _) | (Mix::MarketSelfTrade, 0) => SelfTradePrevention::None,
            (Mix::MarketSelfTrade, 1) => SelfTradePrevention::CancelResting,
            (Mix::MarketSelfTrade, 2) => SelfTradePrevention::CancelIncoming,
            (Mix::MarketSelfTrade, _) => SelfTradePrevention::CancelBoth,
        }
    }

    /// A random trading account, or, for aggressive orders in the self-trade mix, sometimes the
    /// owner of the best opposite order, so the order would trade with itself.
    fn account(&mut self, instrument: u32, side: Side, aggressive: bool) -> AccountId {
        let random = AccountId(
            1 + u32::try_from(self.rng.below(u64::from(self.shape.accounts)))
                .expect("account fits u32"),
        );
        if self.shape.mix != Mix::MarketSelfTrade || !aggressive || !self.rng.percent(30) {
            return random;
        }
        let id = InstrumentId(instrument);
        let opposite = side.opposite();
        let Some((price, _)) = self.shadow.best_level(id, opposite) else { return random };
        let owner = self.shadow.level_orders(id, opposite, price).first().copied();
        match owner.and_then(|order_id| self.shadow.order(order_id)) {
            Some(view) => {
                self.stats.self_trade_attempts += 1;
                view.account
            }
            None => random,
        }
    }

    /// A resting price: behind the mid (denser near it) and never through the opposite touch,
    /// so it does not trade. Or an aggressive price: through the opposite touch by 0..=2 ticks.
    fn price(&mut self, instrument: u32, side: Side, crossing: bool) -> Price {
        let mid = self.mids[instrument as usize];
        let opposite = self.shadow.best_level(InstrumentId(instrument), side.opposite());
        let opposite = opposite.map(|(price, _)| price.0);
        if crossing {
            let through = self.rng.between(1, CROSS_TICKS_MAX);
            return Price(match side {
                Side::Buy => opposite.map_or(mid + through, |ask| ask + through - 1),
                Side::Sell => opposite.map_or(mid - through, |bid| bid + 1 - through),
            });
        }
        // The product of two uniform draws favours small offsets: books are thickest at the
        // touch, as real ones are.
        let a = self.rng.below(DEPTH_TICKS);
        let b = self.rng.below(DEPTH_TICKS);
        let offset = 1 + a * b / DEPTH_TICKS;
        Price(match side {
            Side::Buy => opposite.map_or(mid - offset, |ask| (mid - offset).min(ask - 1)),
            Side::Sell => opposite.map_or(mid + offset, |bid| (mid + offset).max(bid + 1)),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Amend,
    Gtc,
    Cancel,
    Ioc,
    Market,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(mix: Mix) -> MarketShape {
        MarketShape {
            mix,
            instruments: 3,
            accounts: 50,
            resting_per_instrument: 40,
            warmup_commands: 500,
            measured_commands: 2_000,
            seed: 11,
        }
    }

    #[test]
    fn generation_is_deterministic() {
        for mix in [Mix::ExchangeCore, Mix::MarketSelfTrade] {
            let a = generate(&shape(mix));
            let b = generate(&shape(mix));
            assert_eq!(a.setup, b.setup);
            assert_eq!(a.warmup, b.warmup);
            assert_eq!(a.measured, b.measured);
            assert_eq!(a.stats, b.stats);
            assert_eq!(a.final_state_hash, b.final_state_hash);
        }
        let mut other = shape(Mix::ExchangeCore);
        other.seed = 12;
        assert_ne!(generate(&other).measured, generate(&shape(Mix::ExchangeCore)).measured);
    }

    #[test]
    fn stream_is_gap_free_and_mostly_valid() {
        let stream = generate(&shape(Mix::MarketSelfTrade));
        let all = stream.setup.iter().chain(&stream.warmup).chain(&stream.measured);
        for (index, command) in all.enumerate() {
            assert_eq!(command.seq, index as u64 + 1);
        }
        assert_eq!(stream.measured.len(), 2_000);
        assert_eq!(stream.measured_peer.len(), stream.measured.len());
        // Amends and cancels aim at resting orders and every account is funded, so nothing in
        // the measured part should be refused.
        assert_eq!(stream.stats.measured_rejects, 0, "{:?}", stream.stats);
        assert!(stream.stats.measured_trades > 0);
        assert!(stream.stats.self_trade_attempts > 0);
        assert!(stream.stats.new_market > 0);
    }
}
