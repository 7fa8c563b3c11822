//! The engine: state, command handlers (`handle_*`), and the one function that changes state,
//! [`Engine::apply`].
//!
//! Handlers read state, decide, and emit events; every event is applied the moment it is emitted,
//! so a handler always sees the consequences of its own earlier events (a maker removed by a fill
//! is gone before the next one is examined). Handlers never write state directly.
//!
//! Book layout: orders live in a pre-allocated slab and are found by id through an [`IdTable`].
//! Each price level holds an intrusive FIFO list of slab indices; each book side is a vector of
//! `(key, level)` sorted ascending with the best price at the end, so the best level is found in
//! O(1), a fill or cancel touches O(1) orders, and a new level is found by binary search. Each
//! account also threads its live orders on an intrusive list, for mass cancel.

use crate::book::SideLevels;
use crate::command::{Command, CommandBody, InstrumentSpec, NewOrder};
use crate::event::{Bucket, CancelReason, Event, EventSink, LegKind, RejectReason};
use crate::id_table::IdTable;
use crate::types::{
    fee, notional, AccountId, Amount, AssetId, InstrumentId, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

pub(crate) const NONE: u32 = u32::MAX;

/// Capacities, all allocated when the engine is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub assets_max: u16,
    pub instruments_max: u32,
    pub accounts_max: u32,
    /// Live orders across all instruments.
    pub orders_max: u32,
    /// Price levels on one side of one book.
    pub levels_max: u32,
    pub orders_per_account_max: u32,
    /// Wallet transaction ids remembered for idempotency.
    pub transactions_max: u32,
    /// Receives every fee. Exists from genesis.
    pub fee_account: AccountId,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            assets_max: 16,
            instruments_max: 128,
            accounts_max: 16_384,
            orders_max: 1 << 20,
            levels_max: 4_096,
            orders_per_account_max: 1_000,
            transactions_max: 1 << 20,
            fee_account: AccountId(0),
        }
    }
}

/// An account's balance of one asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub available: Amount,
    pub held: Amount,
}

/// Where an order is in its life. Live orders are `New` or `PartiallyFilled`; the others are
/// final and follow from the event that ended the order: a [`Event::Trade`] that left no leaves
/// (`Filled`), an [`Event::OrderCancelled`] (`Cancelled`, or `Expired` for a DAY order at end of
/// day) or an [`Event::Rejected`] (`Rejected`, never live).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderState {
    New = 1,
    PartiallyFilled = 2,
    Filled = 3,
    Cancelled = 4,
    Rejected = 5,
    Expired = 6,
}

/// A read-only copy of a live order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub self_trade_prevention: SelfTradePrevention,
    pub price: Price,
    /// Total quantity, filled part included.
    pub quantity: Quantity,
    pub leaves: Quantity,
    /// What the order still holds, in the quote asset for buys and the base asset for sells.
    pub hold: Amount,
}

impl OrderView {
    /// A live order is new until its first fill.
    pub fn state(&self) -> OrderState {
        if self.leaves == self.quantity {
            OrderState::New
        } else {
            OrderState::PartiallyFilled
        }
    }

    pub fn filled(&self) -> Quantity {
        Quantity(self.quantity.0 - self.leaves.0)
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderSlot {
    pub(crate) id: OrderId,
    pub(crate) hold: Amount,
    pub(crate) price: Price,
    pub(crate) quantity: Quantity,
    pub(crate) leaves: Quantity,
    pub(crate) account: AccountId,
    pub(crate) instrument: InstrumentId,
    /// The level this order rests on, or `NONE` while it is an incoming taker.
    pub(crate) level: u32,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) account_prev: u32,
    pub(crate) account_next: u32,
    pub(crate) side: Side,
    pub(crate) order_type: OrderType,
    pub(crate) time_in_force: TimeInForce,
    pub(crate) post_only: bool,
    pub(crate) self_trade_prevention: SelfTradePrevention,
}

const ORDER_SLOT_EMPTY: OrderSlot = OrderSlot {
    id: OrderId(0),
    hold: Amount(0),
    price: Price(0),
    quantity: Quantity(0),
    leaves: Quantity(0),
    account: AccountId(0),
    instrument: InstrumentId(0),
    level: NONE,
    prev: NONE,
    next: NONE,
    account_prev: NONE,
    account_next: NONE,
    side: Side::Buy,
    order_type: OrderType::Limit,
    time_in_force: TimeInForce::Gtc,
    post_only: false,
    self_trade_prevention: SelfTradePrevention::None,
};

// A slot fits in two cache lines; growing it is a deliberate decision.
const _: () = assert!(size_of::<OrderSlot>() <= 128);

#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub(crate) price: Price,
    pub(crate) quantity: Quantity,
    pub(crate) orders: u32,
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

#[derive(Debug)]
pub(crate) struct InstrumentState {
    pub(crate) live: bool,
    pub(crate) halted: bool,
    pub(crate) spec: InstrumentSpec,
    pub(crate) reference_price: Price,
    /// The price band around `reference_price`, recomputed only when the reference moves, so
    /// that validating an order costs no 128-bit division.
    pub(crate) band: (Price, Price),
    /// `[bids, asks]`, each sorted ascending by [`side_key`], best at the end.
    pub(crate) sides: [SideLevels; 2],
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountState {
    pub(crate) exists: bool,
    pub(crate) open_orders: u32,
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AssetState {
    pub(crate) live: bool,
    pub(crate) scale: u8,
    /// The world account's balance: minus everything deposited and not withdrawn.
    pub(crate) world: i128,
}

/// What the idempotency table remembers of an executed wallet transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransactionRecord {
    pub(crate) id: TransactionId,
    pub(crate) kind: LegKind,
    pub(crate) debit_account: AccountId,
    pub(crate) credit_account: AccountId,
    pub(crate) asset: AssetId,
    pub(crate) amount: Amount,
    pub(crate) seq: u64,
}

const TRANSACTION_RECORD_EMPTY: TransactionRecord = TransactionRecord {
    id: TransactionId(0),
    kind: LegKind::Transfer,
    debit_account: AccountId(0),
    credit_account: AccountId(0),
    asset: AssetId(0),
    amount: Amount(0),
    seq: 0,
};

/// An empty vector whose whole capacity has been written once, so that no page of it faults on
/// the hot path the first time a command uses it (STYLE.md §5: memory is taken once, at start).
pub(crate) fn prefaulted<T: Copy>(capacity: usize, filler: T) -> Vec<T> {
    let mut vector = Vec::with_capacity(capacity);
    for slot in vector.spare_capacity_mut() {
        slot.write(filler);
    }
    vector
}

/// A vector of `len` copies of `value`, written element by element. `vec![zero; n]` would map
/// lazily zeroed pages that fault on first write, in the middle of a command.
fn filled<T: Copy>(len: usize, value: T) -> Vec<T> {
    let mut vector = Vec::with_capacity(len);
    vector.resize(len, value);
    vector
}

/// How matching an incoming order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    /// Nothing left to trade against within the limit; the order still has leaves.
    Open,
    /// No leaves left; the order is gone.
    Filled,
    /// Self-trade prevention stopped the incoming order.
    SelfTrade,
    /// A market buy cannot afford another lot.
    BudgetExhausted,
}

/// Sort key of a price on one side: ascending keys put the best price last on both sides.
#[inline]
pub(crate) fn side_key(side: Side, price: Price) -> u64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => u64::MAX - price.0,
    }
}

#[inline]
pub(crate) fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// Whether an order on `side` with limit `limit` may trade against a resting `price`.
#[inline]
fn crosses(side: Side, limit: Price, price: Price) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

/// What a buy limit order must hold for `leaves` at `price`: the notional plus the larger fee.
#[inline]
pub(crate) fn buy_hold(spec: &InstrumentSpec, price: Price, leaves: Quantity) -> Amount {
    let value = notional(price, leaves, spec.quote_per_tick_lot);
    value.plus(fee(value, spec.maker_fee_bps.max(spec.taker_fee_bps)))
}

/// What a sell order must hold for `leaves`: the base quantity itself.
#[inline]
pub(crate) fn sell_hold(spec: &InstrumentSpec, leaves: Quantity) -> Amount {
    Amount(u128::from(leaves.0) * u128::from(spec.base_per_lot))
}

/// What a resting (or limit) order must hold for `leaves` at `price`.
#[inline]
pub(crate) fn order_hold(
    spec: &InstrumentSpec,
    side: Side,
    price: Price,
    leaves: Quantity,
) -> Amount {
    match side {
        Side::Buy => buy_hold(spec, price, leaves),
        Side::Sell => sell_hold(spec, leaves),
    }
}

/// The most lots, up to `leaves`, that a market buy with `budget` left can take at `price`, fee
/// included. Instrument validation keeps `price × leaves × quote_per_tick_lot` below 2^112, and
/// the budget is clamped to what `leaves` could cost, so no product here can overflow.
fn affordable(spec: &InstrumentSpec, budget: Amount, price: Price, leaves: Quantity) -> Quantity {
    let unit = u128::from(price.0) * u128::from(spec.quote_per_tick_lot);
    let bps = u128::from(spec.taker_fee_bps);
    let budget = budget.0.min(unit * u128::from(leaves.0) * 2);
    let mut lots = budget * 10_000 / (unit * (10_000 + bps));
    // The fee rounds down, so one more lot may still fit; never more than one.
    let cost = |lots: u128| {
        let value = unit * lots;
        value + value * bps / 10_000
    };
    if cost(lots + 1) <= budget {
        lots += 1;
    }
    debug_assert!(cost(lots) <= budget);
    Quantity(u64::try_from(lots).expect("clamped by leaves").min(leaves.0))
}

/// The price band `[lower, upper]` around the reference price; zero `band_bps` means no band.
pub(crate) fn band(spec: &InstrumentSpec, reference: Price) -> (Price, Price) {
    if spec.band_bps == 0 {
        return (Price(0), Price(u64::MAX));
    }
    let reference = u128::from(reference.0);
    let bps = u128::from(spec.band_bps);
    let lower = (reference * (10_000 - bps)).div_ceil(10_000);
    let upper = reference * (10_000 + bps) / 10_000;
    (
        Price(u64::try_from(lower).unwrap_or(u64::MAX)),
        Price(u64::try_from(upper).unwrap_or(u64::MAX)),
    )
}

/// The deterministic exchange core. See the crate documentation.
#[derive(Debug)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) seq: u64,
    pub(crate) timestamp_ns: u64,
    pub(crate) assets: Vec<AssetState>,
    pub(crate) instruments: Vec<InstrumentState>,
    pub(crate) accounts: Vec<AccountState>,
    /// `accounts_max × assets_max`, row per account.
    pub(crate) balances: Vec<Balance>,
    pub(crate) orders: Vec<OrderSlot>,
    pub(crate) orders_free: Vec<u32>,
    pub(crate) order_index: IdTable<u64>,
    pub(crate) levels: Vec<Level>,
    pub(crate) levels_free: Vec<u32>,
    pub(crate) transactions: Vec<TransactionRecord>,
    pub(crate) transaction_index: IdTable<u128>,
    /// The last order id looked up and its slot; order id zero (never live) means none. Not part
    /// of the state: it only saves index probes.
    pub(crate) slot_cache: (u64, u32),
}

impl Engine {
    /// Builds an engine at genesis: no assets, no instruments, and only the fee account.
    /// Every byte the engine will use is allocated here.
    pub fn new(config: EngineConfig) -> Engine {
        assert!(config.assets_max > 0);
        assert!(config.instruments_max > 0);
        assert!(config.accounts_max > 0 && config.accounts_max < AccountId::WORLD.0);
        assert!(config.orders_max > 0 && config.orders_max < NONE);
        assert!(config.levels_max > 0);
        assert!(config.transactions_max < NONE);
        assert!(config.fee_account.0 < config.accounts_max);
        let accounts_max = config.accounts_max as usize;
        let assets_max = usize::from(config.assets_max);
        let orders_max = config.orders_max as usize;
        let levels_max = config.levels_max as usize;
        let empty_spec = InstrumentSpec {
            instrument: InstrumentId(0),
            base_asset: AssetId(0),
            quote_asset: AssetId(0),
            tick_size: Price(0),
            lot_size: Quantity(0),
            quantity_min: Quantity(0),
            quantity_max: Quantity(0),
            base_per_lot: 0,
            quote_per_tick_lot: 0,
            reference_price: Price(0),
            band_bps: 0,
            maker_fee_bps: 0,
            taker_fee_bps: 0,
        };
        let instruments = (0..config.instruments_max)
            .map(|_| InstrumentState {
                live: false,
                halted: false,
                spec: empty_spec,
                reference_price: Price(0),
                band: (Price(0), Price(0)),
                sides: [
                    SideLevels::with_capacity(levels_max),
                    SideLevels::with_capacity(levels_max),
                ],
            })
            .collect();
        let mut accounts =
            vec![
                AccountState { exists: false, open_orders: 0, head: NONE, tail: NONE };
                accounts_max
            ];
        accounts[config.fee_account.0 as usize].exists = true;
        let level_empty =
            Level { price: Price(0), quantity: Quantity(0), orders: 0, head: NONE, tail: NONE };
        Engine {
            config,
            seq: 0,
            timestamp_ns: 0,
            assets: vec![AssetState { live: false, scale: 0, world: 0 }; assets_max],
            instruments,
            accounts,
            balances: filled(accounts_max * assets_max, Balance::default()),
            orders: vec![ORDER_SLOT_EMPTY; orders_max],
            // Popped from the end, so slot 0 is used first.
            orders_free: (0..config.orders_max).rev().collect(),
            order_index: IdTable::with_len_max(orders_max),
            levels: vec![level_empty; orders_max],
            levels_free: (0..config.orders_max).rev().collect(),
            transactions: prefaulted(config.transactions_max as usize, TRANSACTION_RECORD_EMPTY),
            transaction_index: IdTable::with_len_max(config.transactions_max as usize),
            slot_cache: (0, NONE),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Inputs.

    /// Handles one sequenced command, writing its events to `sink`. Sequence numbers must be
    /// gap-free and timestamps must not go backwards: the sequencer guarantees both.
    pub fn handle<S: EventSink>(&mut self, command: &Command, sink: &mut S) {
        assert_eq!(command.seq, self.seq + 1, "sequence gap");
        assert!(command.timestamp_ns >= self.timestamp_ns, "timestamp went backwards");
        self.seq = command.seq;
        self.timestamp_ns = command.timestamp_ns;
        match command.body {
            CommandBody::NewOrder(order) => {
                self.handle_new_order(&order, sink);
                self.assert_not_crossed(order.instrument);
            }
            CommandBody::CancelOrder { order_id, account } => {
                self.handle_cancel(order_id, account, sink);
            }
            CommandBody::AmendOrder { order_id, account, price, quantity } => {
                let instrument = self.handle_amend(order_id, account, price, quantity, sink);
                if let Some(instrument) = instrument {
                    self.assert_not_crossed(instrument);
                }
            }
            CommandBody::MassCancel { account, instrument } => {
                self.handle_mass_cancel(account, instrument, sink);
            }
            CommandBody::Deposit { transaction_id, account, asset, amount } => {
                let kind = LegKind::Deposit;
                self.handle_transaction(
                    kind,
                    transaction_id,
                    AccountId::WORLD,
                    account,
                    asset,
                    amount,
                    sink,
                );
            }
            CommandBody::Withdraw { transaction_id, account, asset, amount } => {
                let kind = LegKind::Withdrawal;
                self.handle_transaction(
                    kind,
                    transaction_id,
                    account,
                    AccountId::WORLD,
                    asset,
                    amount,
                    sink,
                );
            }
            CommandBody::Transfer { transaction_id, from, to, asset, amount } => {
                self.handle_transaction(
                    LegKind::Transfer,
                    transaction_id,
                    from,
                    to,
                    asset,
                    amount,
                    sink,
                );
            }
            CommandBody::CreateAccount { account } => self.handle_create_account(account, sink),
            CommandBody::AddAsset { asset, scale } => self.handle_add_asset(asset, scale, sink),
            CommandBody::AddInstrument(spec) => self.handle_add_instrument(&spec, sink),
            CommandBody::SetInstrumentHalted { instrument, halted } => {
                match self.instrument_live(instrument) {
                    Some(_) => self.emit(Event::InstrumentHalted { instrument, halted }, sink),
                    None => self.reject(RejectReason::UnknownInstrument, 0, sink),
                }
            }
            CommandBody::EndOfDay { instrument } => self.handle_end_of_day(instrument, sink),
        }
    }

    fn handle_new_order<S: EventSink>(&mut self, order: &NewOrder, sink: &mut S) {
        let reference = u128::from(order.order_id.0);
        if let Err(reason) = self.validate_new_order(order) {
            return self.reject(reason, reference, sink);
        }
        let spec = self.instruments[order.instrument.0 as usize].spec;
        let (hold_asset, hold) = match (order.side, order.order_type) {
            (Side::Buy, OrderType::Limit) => {
                (spec.quote_asset, buy_hold(&spec, order.price, order.quantity))
            }
            (Side::Buy, OrderType::Market) => (spec.quote_asset, order.quote_budget),
            (Side::Sell, _) => (spec.base_asset, sell_hold(&spec, order.quantity)),
        };
        if self.balance(order.account, hold_asset).available < hold {
            return self.reject(RejectReason::InsufficientFunds, reference, sink);
        }
        let limit = self.effective_limit(order, &spec);
        let accepted = Event::OrderAccepted {
            order_id: order.order_id,
            account: order.account,
            instrument: order.instrument,
            side: order.side,
            order_type: order.order_type,
            time_in_force: order.time_in_force,
            post_only: order.post_only,
            self_trade_prevention: order.self_trade_prevention,
            price: order.price,
            quantity: order.quantity,
            quote_budget: order.quote_budget,
        };
        if order.time_in_force == TimeInForce::Fok
            && self.fillable(order, limit, &spec) < order.quantity
        {
            self.emit(accepted, sink);
            let cancelled = Event::OrderCancelled {
                order_id: order.order_id,
                leaves: order.quantity,
                reason: CancelReason::FillOrKill,
            };
            return self.emit(cancelled, sink);
        }
        self.emit(accepted, sink);
        self.emit_leg(
            LegKind::OrderHold,
            hold_asset,
            (order.account, Bucket::Available),
            (order.account, Bucket::Held),
            hold,
            order.order_id,
            sink,
        );
        let slot = self.order_index.get(order.order_id.0).expect("accepted order is indexed");
        let end = self.match_incoming(slot, limit, &spec, sink);
        self.finish_incoming(slot, end, sink);
    }

    /// Checks a new order in a fixed order of precedence; the first failure is the reason.
    fn validate_new_order(&self, order: &NewOrder) -> Result<(), RejectReason> {
        if order.order_id.0 == 0 {
            return Err(RejectReason::InvalidOrderId);
        }
        let instrument =
            self.instrument_live(order.instrument).ok_or(RejectReason::UnknownInstrument)?;
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        if !self.account_exists(order.account) {
            return Err(RejectReason::UnknownAccount);
        }
        let spec = &instrument.spec;
        validate_quantity(spec, order.quantity)?;
        let market_buy = order.order_type == OrderType::Market && order.side == Side::Buy;
        if market_buy && order.quote_budget.0 == 0 {
            return Err(RejectReason::MarketBuyNeedsBudget);
        }
        if !market_buy && order.quote_budget.0 != 0 {
            return Err(RejectReason::UnexpectedBudget);
        }
        let best = self.best_level(order.instrument, order.side.opposite());
        match order.order_type {
            OrderType::Market => {
                if order.time_in_force.rests() {
                    return Err(RejectReason::InvalidTimeInForce);
                }
                if order.post_only {
                    return Err(RejectReason::PostOnlyWouldTake);
                }
            }
            OrderType::Limit => {
                validate_price(spec, instrument.band, order.price)?;
                let would_take =
                    best.is_some_and(|(price, _)| crosses(order.side, order.price, price));
                if order.post_only && would_take {
                    return Err(RejectReason::PostOnlyWouldTake);
                }
            }
        }
        if self.order_index.get(order.order_id.0).is_some() {
            return Err(RejectReason::DuplicateOrderId);
        }
        if self.orders_free.is_empty() {
            return Err(RejectReason::OrdersCapacityReached);
        }
        let account = &self.accounts[order.account.0 as usize];
        if account.open_orders >= self.config.orders_per_account_max {
            return Err(RejectReason::AccountOrdersLimitReached);
        }
        // The resting side's level count cannot change while the order matches (matching only
        // empties levels of the other side), so this check is exact.
        let may_rest = order.order_type == OrderType::Limit && order.time_in_force.rests();
        if may_rest && !self.level_available(order.instrument, order.side, order.price) {
            return Err(RejectReason::PriceLevelsCapacityReached);
        }
        Ok(())
    }

    /// Whether an order at `price` could rest: its level exists or there is room for a new one.
    fn level_available(&self, instrument: InstrumentId, side: Side, price: Price) -> bool {
        let levels = &self.instruments[instrument.0 as usize].sides[side_index(side)];
        levels.len() < self.config.levels_max as usize || levels.find(side_key(side, price)).is_ok()
    }

    /// The furthest price an incoming order may trade at.
    fn effective_limit(&self, order: &NewOrder, spec: &InstrumentSpec) -> Price {
        match (order.order_type, order.side) {
            (OrderType::Limit, _) => order.price,
            (OrderType::Market, side) => {
                let (lower, upper) = self.instruments[spec.instrument.0 as usize].band;
                match side {
                    Side::Buy => upper,
                    Side::Sell => lower,
                }
            }
        }
    }

    /// How much of `order` would fill right now, walking the book without changing it and
    /// applying self-trade prevention the way matching would. Used by FOK.
    fn fillable(&self, order: &NewOrder, limit: Price, spec: &InstrumentSpec) -> Quantity {
        let levels =
            &self.instruments[order.instrument.0 as usize].sides[side_index(order.side.opposite())];
        let mut filled = 0u64;
        let mut budget = order.quote_budget;
        let market_buy = order.order_type == OrderType::Market && order.side == Side::Buy;
        for (_, level_index) in levels.best_first() {
            let level = &self.levels[level_index as usize];
            if !crosses(order.side, limit, level.price) {
                break;
            }
            let mut slot = level.head;
            while slot != NONE {
                let maker = &self.orders[slot as usize];
                slot = maker.next;
                if maker.account == order.account {
                    match order.self_trade_prevention {
                        SelfTradePrevention::None => {}
                        SelfTradePrevention::CancelResting => continue,
                        SelfTradePrevention::CancelIncoming | SelfTradePrevention::CancelBoth => {
                            return Quantity(filled);
                        }
                    }
                }
                // Matching may take one maker in several fills: a market buy's fee rounds down
                // per fill, so the budget left after one fill can afford more of the same maker
                // than a single fill could. Walk it the same way, or FOK would kill an order that
                // matching fills entirely.
                let mut maker_leaves = maker.leaves.0;
                while maker_leaves > 0 {
                    let mut take = (order.quantity.0 - filled).min(maker_leaves);
                    if market_buy {
                        take = take.min(affordable(spec, budget, level.price, Quantity(take)).0);
                        let value = notional(level.price, Quantity(take), spec.quote_per_tick_lot);
                        budget = budget.minus(value.plus(fee(value, spec.taker_fee_bps)));
                    }
                    filled += take;
                    maker_leaves -= take;
                    if filled == order.quantity.0 || take == 0 {
                        return Quantity(filled);
                    }
                }
            }
        }
        Quantity(filled)
    }

    /// Trades the live order in `slot` against the opposite side until it is filled, its limit
    /// stops it, or self-trade prevention or its budget ends it.
    fn match_incoming<S: EventSink>(
        &mut self,
        slot: u32,
        limit: Price,
        spec: &InstrumentSpec,
        sink: &mut S,
    ) -> MatchEnd {
        let taker_side = self.orders[slot as usize].side;
        let opposite = side_index(taker_side.opposite());
        let instrument = spec.instrument.0 as usize;
        loop {
            let taker = self.orders[slot as usize];
            if taker.leaves.0 == 0 {
                return MatchEnd::Filled;
            }
            let Some(level_index) = self.instruments[instrument].sides[opposite].best() else {
                return MatchEnd::Open;
            };
            let level = self.levels[level_index as usize];
            if !crosses(taker_side, limit, level.price) {
                return MatchEnd::Open;
            }
            let maker_slot = level.head;
            let maker = self.orders[maker_slot as usize];
            if maker.account == taker.account {
                match taker.self_trade_prevention {
                    SelfTradePrevention::None => {}
                    SelfTradePrevention::CancelResting => {
                        self.cancel_slot(maker_slot, CancelReason::SelfTrade, sink);
                        continue;
                    }
                    SelfTradePrevention::CancelIncoming => return MatchEnd::SelfTrade,
                    SelfTradePrevention::CancelBoth => {
                        self.cancel_slot(maker_slot, CancelReason::SelfTrade, sink);
                        return MatchEnd::SelfTrade;
                    }
                }
            }
            let mut quantity = taker.leaves.min(maker.leaves);
            if taker.order_type == OrderType::Market && taker_side == Side::Buy {
                quantity = affordable(spec, taker.hold, level.price, quantity);
                if quantity.0 == 0 {
                    return MatchEnd::BudgetExhausted;
                }
            }
            self.fill(maker_slot, slot, level.price, quantity, spec, sink);
        }
    }

    /// Settles one fill: value moves first, then the trade closes whatever it filled.
    fn fill<S: EventSink>(
        &mut self,
        maker_slot: u32,
        taker_slot: u32,
        price: Price,
        quantity: Quantity,
        spec: &InstrumentSpec,
        sink: &mut S,
    ) {
        let maker = self.orders[maker_slot as usize];
        let taker = self.orders[taker_slot as usize];
        let (buyer, seller, buyer_fee_bps, seller_fee_bps, buyer_slot) = match taker.side {
            Side::Buy => (taker, maker, spec.taker_fee_bps, spec.maker_fee_bps, taker_slot),
            Side::Sell => (maker, taker, spec.maker_fee_bps, spec.taker_fee_bps, maker_slot),
        };
        let value = notional(price, quantity, spec.quote_per_tick_lot);
        let buyer_fee = fee(value, buyer_fee_bps);
        let seller_fee = fee(value, seller_fee_bps);
        let (quote, base) = (spec.quote_asset, spec.base_asset);
        let held = |order: &OrderSlot| (order.account, Bucket::Held);
        let available = |order: &OrderSlot| (order.account, Bucket::Available);
        let fee_account = (self.config.fee_account, Bucket::Available);
        let settlement = LegKind::TradeSettlement;
        self.emit_leg(settlement, quote, held(&buyer), available(&seller), value, buyer.id, sink);
        let base_amount = sell_hold(spec, quantity);
        self.emit_leg(
            settlement,
            base,
            held(&seller),
            available(&buyer),
            base_amount,
            seller.id,
            sink,
        );
        self.emit_leg(LegKind::Fee, quote, held(&buyer), fee_account, buyer_fee, buyer.id, sink);
        self.emit_leg(
            LegKind::Fee,
            quote,
            available(&seller),
            fee_account,
            seller_fee,
            seller.id,
            sink,
        );
        // A buyer keeps exactly what its remaining quantity needs at its own limit; a market buy
        // keeps its whole remaining budget until it stops.
        let hold_after = self.orders[buyer_slot as usize].hold;
        let leaves_after = Quantity(buyer.leaves.0 - quantity.0);
        let required = if leaves_after.0 == 0 {
            Amount::ZERO
        } else if buyer.order_type == OrderType::Market {
            hold_after
        } else {
            buy_hold(spec, buyer.price, leaves_after)
        };
        let excess = hold_after.minus(required);
        self.emit_leg(
            LegKind::OrderRelease,
            quote,
            held(&buyer),
            available(&buyer),
            excess,
            buyer.id,
            sink,
        );
        let trade = Event::Trade {
            instrument: spec.instrument,
            maker_order_id: maker.id,
            taker_order_id: taker.id,
            taker_side: taker.side,
            price,
            quantity,
            maker_leaves: Quantity(maker.leaves.0 - quantity.0),
            taker_leaves: Quantity(taker.leaves.0 - quantity.0),
        };
        self.emit(trade, sink);
    }

    /// Rests or cancels what is left of an incoming order once matching stops.
    fn finish_incoming<S: EventSink>(&mut self, slot: u32, end: MatchEnd, sink: &mut S) {
        let order = self.orders[slot as usize];
        let reason = match end {
            MatchEnd::Filled => return,
            MatchEnd::Open
                if order.order_type == OrderType::Limit && order.time_in_force.rests() =>
            {
                return self.emit(Event::OrderRested { order_id: order.id }, sink);
            }
            MatchEnd::Open => CancelReason::ImmediateRemainder,
            MatchEnd::SelfTrade => CancelReason::SelfTrade,
            MatchEnd::BudgetExhausted => CancelReason::BudgetExhausted,
        };
        self.cancel_slot(slot, reason, sink);
    }

    /// Releases an order's hold and closes it.
    fn cancel_slot<S: EventSink>(&mut self, slot: u32, reason: CancelReason, sink: &mut S) {
        let order = self.orders[slot as usize];
        let spec = &self.instruments[order.instrument.0 as usize].spec;
        let asset = match order.side {
            Side::Buy => spec.quote_asset,
            Side::Sell => spec.base_asset,
        };
        let (held, available) = ((order.account, Bucket::Held), (order.account, Bucket::Available));
        self.emit_leg(LegKind::OrderRelease, asset, held, available, order.hold, order.id, sink);
        self.emit(Event::OrderCancelled { order_id: order.id, leaves: order.leaves, reason }, sink);
    }

    fn handle_cancel<S: EventSink>(&mut self, order_id: OrderId, account: AccountId, sink: &mut S) {
        match self.owned_slot(order_id, account) {
            Some(slot) => self.cancel_slot(slot, CancelReason::Requested, sink),
            None => self.reject(RejectReason::UnknownOrder, u128::from(order_id.0), sink),
        }
    }

    /// The slot of a live order owned by `account`. Another account's order is indistinguishable
    /// from a missing one, so order ids never leak between accounts.
    fn owned_slot(&self, order_id: OrderId, account: AccountId) -> Option<u32> {
        let slot = self.order_index.get(order_id.0)?;
        (self.orders[slot as usize].account == account).then_some(slot)
    }

    /// Returns the instrument if the amend changed its book.
    fn handle_amend<S: EventSink>(
        &mut self,
        order_id: OrderId,
        account: AccountId,
        price: Price,
        quantity: Quantity,
        sink: &mut S,
    ) -> Option<InstrumentId> {
        let reference = u128::from(order_id.0);
        let Some(slot) = self.owned_slot(order_id, account) else {
            self.reject(RejectReason::UnknownOrder, reference, sink);
            return None;
        };
        let order = self.orders[slot as usize];
        let required = match self.validate_amend(&order, price, quantity) {
            Ok(required) => required,
            Err(reason) => {
                self.reject(reason, reference, sink);
                return None;
            }
        };
        let spec = self.instruments[order.instrument.0 as usize].spec;
        let asset = match order.side {
            Side::Buy => spec.quote_asset,
            Side::Sell => spec.base_asset,
        };
        let leaves = Quantity(quantity.0 - (order.quantity.0 - order.leaves.0));
        let priority_kept = price == order.price && leaves <= order.leaves;
        let amended = Event::OrderAmended { order_id, price, quantity, leaves, priority_kept };
        let (held, available) = ((account, Bucket::Held), (account, Bucket::Available));
        self.emit(amended, sink);
        if required > order.hold {
            let more = required.minus(order.hold);
            self.emit_leg(LegKind::OrderHold, asset, available, held, more, order_id, sink);
        } else {
            let less = order.hold.minus(required);
            self.emit_leg(LegKind::OrderRelease, asset, held, available, less, order_id, sink);
        }
        if !priority_kept {
            let end = self.match_incoming(slot, price, &spec, sink);
            self.finish_incoming(slot, end, sink);
        }
        Some(order.instrument)
    }

    /// Checks an amend of a live `order`; returns the hold the amended order needs.
    fn validate_amend(
        &self,
        order: &OrderSlot,
        price: Price,
        quantity: Quantity,
    ) -> Result<Amount, RejectReason> {
        let instrument = &self.instruments[order.instrument.0 as usize];
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        let spec = &instrument.spec;
        validate_price(spec, instrument.band, price)?;
        validate_quantity(spec, quantity)?;
        let filled = order.quantity.0 - order.leaves.0;
        if quantity.0 <= filled {
            return Err(RejectReason::AmendQuantityNotAboveFilled);
        }
        if price == order.price && quantity == order.quantity {
            return Err(RejectReason::AmendNoChange);
        }
        let leaves = Quantity(quantity.0 - filled);
        let required = order_hold(spec, order.side, price, leaves);
        let priority_kept = price == order.price && leaves <= order.leaves;
        if priority_kept {
            return Ok(required);
        }
        let best = self.best_level(order.instrument, order.side.opposite());
        if order.post_only && best.is_some_and(|(best, _)| crosses(order.side, price, best)) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        // Leaving a level it is alone on frees that level for the new price.
        let alone = self.levels[order.level as usize].orders == 1;
        if !alone && !self.level_available(order.instrument, order.side, price) {
            return Err(RejectReason::PriceLevelsCapacityReached);
        }
        if required > order.hold {
            let asset = match order.side {
                Side::Buy => spec.quote_asset,
                Side::Sell => spec.base_asset,
            };
            if self.balance(order.account, asset).available < required.minus(order.hold) {
                return Err(RejectReason::InsufficientFunds);
            }
        }
        Ok(required)
    }

    fn handle_mass_cancel<S: EventSink>(
        &mut self,
        account: Option<AccountId>,
        instrument: Option<InstrumentId>,
        sink: &mut S,
    ) {
        if let Some(instrument) = instrument {
            if self.instrument_live(instrument).is_none() {
                return self.reject(RejectReason::UnknownInstrument, 0, sink);
            }
        }
        match account {
            Some(account) => {
                if !self.account_exists(account) {
                    return self.reject(RejectReason::UnknownAccount, 0, sink);
                }
                let mut slot = self.accounts[account.0 as usize].head;
                while slot != NONE {
                    let order = self.orders[slot as usize];
                    if instrument.is_none_or(|instrument| order.instrument == instrument) {
                        self.cancel_slot(slot, CancelReason::Requested, sink);
                    }
                    slot = order.account_next;
                }
            }
            None => {
                let all = InstrumentId(0)..InstrumentId(self.config.instruments_max);
                for id in (all.start.0..all.end.0).map(InstrumentId) {
                    if instrument.is_none_or(|instrument| instrument == id) {
                        self.cancel_book(id, CancelReason::Requested, |_| true, sink);
                    }
                }
            }
        }
    }

    fn handle_end_of_day<S: EventSink>(&mut self, instrument: Option<InstrumentId>, sink: &mut S) {
        if let Some(instrument) = instrument {
            if self.instrument_live(instrument).is_none() {
                return self.reject(RejectReason::UnknownInstrument, 0, sink);
            }
        }
        for id in (0..self.config.instruments_max).map(InstrumentId) {
            if instrument.is_none_or(|instrument| instrument == id) {
                let is_day = |order: &OrderSlot| order.time_in_force == TimeInForce::Day;
                self.cancel_book(id, CancelReason::Expired, is_day, sink);
            }
        }
    }

    /// Cancels every resting order of one book that `select` picks: bids then asks, each from
    /// the best level down, each level in time priority.
    fn cancel_book<S: EventSink>(
        &mut self,
        instrument: InstrumentId,
        reason: CancelReason,
        select: impl Fn(&OrderSlot) -> bool,
        sink: &mut S,
    ) {
        for side in [0, 1] {
            // Walking down from the best end keeps indices below the current one valid when a
            // level empties and is removed.
            let mut position = self.instruments[instrument.0 as usize].sides[side].len();
            while position > 0 {
                position -= 1;
                let (_, level_index) =
                    self.instruments[instrument.0 as usize].sides[side].get(position);
                let mut slot = self.levels[level_index as usize].head;
                while slot != NONE {
                    let order = self.orders[slot as usize];
                    if select(&order) {
                        self.cancel_slot(slot, reason, sink);
                    }
                    slot = order.next;
                }
            }
        }
    }

    fn handle_transaction<S: EventSink>(
        &mut self,
        kind: LegKind,
        transaction_id: TransactionId,
        debit: AccountId,
        credit: AccountId,
        asset: AssetId,
        amount: Amount,
        sink: &mut S,
    ) {
        let reference = transaction_id.0;
        match self.validate_transaction(kind, transaction_id, debit, credit, asset, amount) {
            Ok(None) => {}
            Ok(Some(original_seq)) => {
                return self
                    .emit(Event::TransactionDuplicate { transaction_id, original_seq }, sink);
            }
            Err(reason) => return self.reject(reason, reference, sink),
        }
        let leg = Event::Ledger {
            kind,
            asset,
            debit_account: debit,
            debit_bucket: Bucket::Available,
            credit_account: credit,
            credit_bucket: Bucket::Available,
            amount,
            order_id: OrderId(0),
            transaction_id,
        };
        self.emit(leg, sink);
    }

    /// `Ok(Some(seq))` is a retry of the transaction executed at `seq`.
    fn validate_transaction(
        &self,
        kind: LegKind,
        transaction_id: TransactionId,
        debit: AccountId,
        credit: AccountId,
        asset: AssetId,
        amount: Amount,
    ) -> Result<Option<u64>, RejectReason> {
        if transaction_id.0 == 0 {
            return Err(RejectReason::InvalidTransactionId);
        }
        // A retry answers with the first result before anything else is looked at.
        if let Some(index) = self.transaction_index.get(transaction_id.0) {
            let record = &self.transactions[index as usize];
            let same = record.kind == kind
                && record.debit_account == debit
                && record.credit_account == credit
                && record.asset == asset
                && record.amount == amount;
            return if same {
                Ok(Some(record.seq))
            } else {
                Err(RejectReason::TransactionIdReused)
            };
        }
        let outside = |account: AccountId| account == AccountId::WORLD;
        let names_world = match kind {
            LegKind::Deposit => outside(credit),
            LegKind::Withdrawal => outside(debit),
            _ => outside(debit) || outside(credit),
        };
        if names_world {
            return Err(RejectReason::WorldAccount);
        }
        for account in [debit, credit] {
            if !outside(account) && !self.account_exists(account) {
                return Err(RejectReason::UnknownAccount);
            }
        }
        if debit == credit {
            return Err(RejectReason::SameAccount);
        }
        if self.asset_live(asset).is_none() {
            return Err(RejectReason::UnknownAsset);
        }
        if amount.0 == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        if !outside(debit) && self.balance(debit, asset).available < amount {
            return Err(RejectReason::InsufficientFunds);
        }
        if outside(debit) {
            // The world's balance is signed; it must be able to go this far negative.
            let world = self.assets[usize::from(asset.0)].world;
            let fits = i128::try_from(amount.0).ok().and_then(|a| world.checked_sub(a)).is_some();
            if !fits {
                return Err(RejectReason::BalanceOverflow);
            }
        }
        if !outside(credit) {
            let target = self.balance(credit, asset);
            if target
                .available
                .0
                .checked_add(amount.0)
                .and_then(|v| v.checked_add(target.held.0))
                .is_none()
            {
                return Err(RejectReason::BalanceOverflow);
            }
        }
        if self.transactions.len() >= self.config.transactions_max as usize {
            return Err(RejectReason::TransactionsCapacityReached);
        }
        Ok(None)
    }

    fn handle_create_account<S: EventSink>(&mut self, account: AccountId, sink: &mut S) {
        let reference = u128::from(account.0);
        if account.0 >= self.config.accounts_max {
            return self.reject(RejectReason::AccountsCapacityReached, reference, sink);
        }
        if self.accounts[account.0 as usize].exists {
            return self.reject(RejectReason::AccountExists, reference, sink);
        }
        self.emit(Event::AccountCreated { account }, sink);
    }

    fn handle_add_asset<S: EventSink>(&mut self, asset: AssetId, scale: u8, sink: &mut S) {
        let reference = u128::from(asset.0);
        if asset.0 >= self.config.assets_max {
            return self.reject(RejectReason::AssetsCapacityReached, reference, sink);
        }
        if self.assets[usize::from(asset.0)].live {
            return self.reject(RejectReason::AssetExists, reference, sink);
        }
        self.emit(Event::AssetAdded { asset, scale }, sink);
    }

    fn handle_add_instrument<S: EventSink>(&mut self, spec: &InstrumentSpec, sink: &mut S) {
        let reference = u128::from(spec.instrument.0);
        if spec.instrument.0 >= self.config.instruments_max {
            return self.reject(RejectReason::InstrumentsCapacityReached, reference, sink);
        }
        if self.instruments[spec.instrument.0 as usize].live {
            return self.reject(RejectReason::InstrumentExists, reference, sink);
        }
        if self.asset_live(spec.base_asset).is_none() || self.asset_live(spec.quote_asset).is_none()
        {
            return self.reject(RejectReason::UnknownAsset, reference, sink);
        }
        if !spec_is_valid(spec) {
            return self.reject(RejectReason::InvalidInstrument, reference, sink);
        }
        self.emit(Event::InstrumentAdded(*spec), sink);
    }

    // ---------------------------------------------------------------------------------------
    // Emitting and applying events.

    #[inline]
    fn reject<S: EventSink>(&mut self, reason: RejectReason, reference: u128, sink: &mut S) {
        self.emit(Event::Rejected { reason, reference }, sink);
    }

    #[inline]
    fn emit<S: EventSink>(&mut self, event: Event, sink: &mut S) {
        self.apply(&event);
        sink.push(&event);
    }

    /// Emits one ledger leg of an order's life; a zero amount moves nothing and is not emitted.
    #[inline]
    fn emit_leg<S: EventSink>(
        &mut self,
        kind: LegKind,
        asset: AssetId,
        debit: (AccountId, Bucket),
        credit: (AccountId, Bucket),
        amount: Amount,
        order_id: OrderId,
        sink: &mut S,
    ) {
        if amount.0 == 0 {
            return;
        }
        let leg = Event::Ledger {
            kind,
            asset,
            debit_account: debit.0,
            debit_bucket: debit.1,
            credit_account: credit.0,
            credit_bucket: credit.1,
            amount,
            order_id,
            transaction_id: TransactionId(0),
        };
        self.emit(leg, sink);
    }

    /// Applies an event read back from a journal, as command `seq` stamped at `timestamp_ns`
    /// produced it. Replaying a command's events this way reaches the same state as handling it.
    pub fn apply_replayed(&mut self, seq: u64, timestamp_ns: u64, event: &Event) {
        assert!(seq >= self.seq, "replayed events must be in sequence order");
        self.seq = seq;
        self.timestamp_ns = timestamp_ns;
        self.apply(event);
    }

    /// The only function that changes state.
    // tidy: long function, one flat match with an arm per event is easier to audit whole.
    fn apply(&mut self, event: &Event) {
        match *event {
            Event::Rejected { .. } | Event::TransactionDuplicate { .. } => {}
            Event::OrderAccepted {
                order_id,
                account,
                instrument,
                side,
                order_type,
                time_in_force,
                post_only,
                self_trade_prevention,
                price,
                quantity,
                quote_budget: _,
            } => {
                let slot = self.orders_free.pop().expect("order capacity checked before accepting");
                self.orders[slot as usize] = OrderSlot {
                    id: order_id,
                    hold: Amount::ZERO,
                    price,
                    quantity,
                    leaves: quantity,
                    account,
                    instrument,
                    level: NONE,
                    prev: NONE,
                    next: NONE,
                    account_prev: NONE,
                    account_next: NONE,
                    side,
                    order_type,
                    time_in_force,
                    post_only,
                    self_trade_prevention,
                };
                self.order_index.insert(order_id.0, slot);
                self.slot_cache = (order_id.0, slot);
                self.link_account(slot);
            }
            Event::OrderRested { order_id } => {
                let slot = self.slot_of(order_id);
                self.insert_into_level(slot);
            }
            Event::OrderAmended { order_id, price, quantity, leaves, priority_kept } => {
                let slot = self.slot_of(order_id);
                let order = self.orders[slot as usize];
                assert!(order.level != NONE, "only resting orders are amended");
                if priority_kept {
                    assert!(leaves <= order.leaves);
                    let level = &mut self.levels[order.level as usize];
                    level.quantity = Quantity(level.quantity.0 - (order.leaves.0 - leaves.0));
                } else {
                    self.remove_from_level(slot);
                }
                let order = &mut self.orders[slot as usize];
                order.price = price;
                order.quantity = quantity;
                order.leaves = leaves;
            }
            Event::OrderCancelled { order_id, leaves, reason: _ } => {
                let slot = self.slot_of(order_id);
                assert_eq!(self.orders[slot as usize].leaves, leaves);
                self.close_slot(slot);
            }
            Event::Trade {
                instrument, maker_order_id, taker_order_id, price, quantity, ..
            } => {
                assert!(quantity.0 > 0);
                let maker_slot = self.slot_of(maker_order_id);
                let taker_slot = self.slot_of(taker_order_id);
                let maker = &mut self.orders[maker_slot as usize];
                maker.leaves =
                    Quantity(maker.leaves.0.checked_sub(quantity.0).expect("maker overfill"));
                let (maker_leaves, maker_level) = (maker.leaves, maker.level);
                let level = &mut self.levels[maker_level as usize];
                level.quantity = Quantity(level.quantity.0 - quantity.0);
                let taker = &mut self.orders[taker_slot as usize];
                taker.leaves =
                    Quantity(taker.leaves.0.checked_sub(quantity.0).expect("taker overfill"));
                let taker_leaves = taker.leaves;
                if maker_leaves.0 == 0 {
                    self.close_slot(maker_slot);
                }
                if taker_leaves.0 == 0 {
                    self.close_slot(taker_slot);
                }
                let state = &mut self.instruments[instrument.0 as usize];
                if state.reference_price != price {
                    state.reference_price = price;
                    state.band = band(&state.spec, price);
                }
            }
            Event::Ledger {
                kind,
                asset,
                debit_account,
                debit_bucket,
                credit_account,
                credit_bucket,
                amount,
                order_id,
                transaction_id,
            } => {
                self.apply_leg(
                    asset,
                    (debit_account, debit_bucket),
                    (credit_account, credit_bucket),
                    amount,
                );
                if order_id.0 != 0 {
                    let slot = self.slot_of(order_id);
                    let order = &mut self.orders[slot as usize];
                    if debit_bucket == Bucket::Held {
                        assert_eq!(debit_account, order.account);
                        order.hold = order.hold.minus(amount);
                    }
                    if credit_bucket == Bucket::Held {
                        assert_eq!(credit_account, order.account);
                        order.hold = order.hold.plus(amount);
                    }
                }
                if matches!(kind, LegKind::Deposit | LegKind::Withdrawal | LegKind::Transfer) {
                    let index =
                        u32::try_from(self.transactions.len()).expect("transactions_max < 2^32");
                    self.transactions.push(TransactionRecord {
                        id: transaction_id,
                        kind,
                        debit_account,
                        credit_account,
                        asset,
                        amount,
                        seq: self.seq,
                    });
                    self.transaction_index.insert(transaction_id.0, index);
                }
            }
            Event::AccountCreated { account } => {
                let state = &mut self.accounts[account.0 as usize];
                assert!(!state.exists);
                state.exists = true;
            }
            Event::AssetAdded { asset, scale } => {
                let state = &mut self.assets[usize::from(asset.0)];
                assert!(!state.live);
                state.live = true;
                state.scale = scale;
            }
            Event::InstrumentAdded(spec) => {
                let state = &mut self.instruments[spec.instrument.0 as usize];
                assert!(!state.live);
                state.live = true;
                state.spec = spec;
                state.reference_price = spec.reference_price;
                state.band = band(&spec, spec.reference_price);
            }
            Event::InstrumentHalted { instrument, halted } => {
                self.instruments[instrument.0 as usize].halted = halted;
            }
        }
    }

    /// Moves `amount` between two buckets. Underflow panics: a negative balance is a bug.
    #[inline]
    fn apply_leg(
        &mut self,
        asset: AssetId,
        debit: (AccountId, Bucket),
        credit: (AccountId, Bucket),
        amount: Amount,
    ) {
        assert!(amount.0 > 0, "empty ledger leg");
        let signed = i128::try_from(amount.0).expect("amount fits the world's signed balance");
        if debit.0 == AccountId::WORLD {
            let world = &mut self.assets[usize::from(asset.0)].world;
            *world = world.checked_sub(signed).expect("world balance overflow");
        } else {
            let balance = self.balance_mut(debit.0, asset);
            match debit.1 {
                Bucket::Available => balance.available = balance.available.minus(amount),
                Bucket::Held => balance.held = balance.held.minus(amount),
            }
        }
        if credit.0 == AccountId::WORLD {
            let world = &mut self.assets[usize::from(asset.0)].world;
            *world = world.checked_add(signed).expect("world balance overflow");
        } else {
            let balance = self.balance_mut(credit.0, asset);
            match credit.1 {
                Bucket::Available => balance.available = balance.available.plus(amount),
                Bucket::Held => balance.held = balance.held.plus(amount),
            }
        }
    }

    #[inline]
    fn slot_of(&mut self, order_id: OrderId) -> u32 {
        // A command's events name the same order again and again (accepted, held, traded,
        // rested); remembering the last lookup spares the index probe for all but the first.
        if self.slot_cache.0 == order_id.0 {
            return self.slot_cache.1;
        }
        let slot = self.order_index.get(order_id.0).expect("event names a live order");
        self.slot_cache = (order_id.0, slot);
        slot
    }

    /// Takes a finished order off the book (if resting), off its account and out of the index.
    fn close_slot(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        assert_eq!(order.hold, Amount::ZERO, "a closed order must hold nothing");
        if order.level != NONE {
            self.remove_from_level(slot);
        }
        self.unlink_account(slot);
        self.order_index.remove(order.id.0).expect("closed order was indexed");
        if self.slot_cache.0 == order.id.0 {
            self.slot_cache = (0, NONE);
        }
        self.orders[slot as usize] = ORDER_SLOT_EMPTY;
        self.orders_free.push(slot);
    }

    pub(crate) fn link_account(&mut self, slot: u32) {
        let account = self.orders[slot as usize].account.0 as usize;
        let tail = self.accounts[account].tail;
        self.orders[slot as usize].account_prev = tail;
        if tail == NONE {
            self.accounts[account].head = slot;
        } else {
            self.orders[tail as usize].account_next = slot;
        }
        self.accounts[account].tail = slot;
        self.accounts[account].open_orders += 1;
    }

    fn unlink_account(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        let account = &mut self.accounts[order.account.0 as usize];
        if order.account_prev == NONE {
            account.head = order.account_next;
        } else {
            self.orders[order.account_prev as usize].account_next = order.account_next;
        }
        let account = &mut self.accounts[order.account.0 as usize];
        if order.account_next == NONE {
            account.tail = order.account_prev;
        } else {
            self.orders[order.account_next as usize].account_prev = order.account_prev;
        }
        self.accounts[order.account.0 as usize].open_orders -= 1;
    }

    fn insert_into_level(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        assert_eq!(order.level, NONE);
        assert!(order.leaves.0 > 0);
        let key = side_key(order.side, order.price);
        let levels_max = self.config.levels_max as usize;
        let side = &mut self.instruments[order.instrument.0 as usize].sides[side_index(order.side)];
        let level_index = match side.find(key) {
            Ok(position) => side.get(position).1,
            Err(position) => {
                assert!(side.len() < levels_max, "level capacity checked before resting");
                let level_index = self.levels_free.pop().expect("at most one level per order");
                side.insert(position, key, level_index);
                self.levels[level_index as usize] = Level {
                    price: order.price,
                    quantity: Quantity(0),
                    orders: 0,
                    head: NONE,
                    tail: NONE,
                };
                level_index
            }
        };
        let level = &mut self.levels[level_index as usize];
        let tail = level.tail;
        level.tail = slot;
        if tail == NONE {
            level.head = slot;
        }
        level.orders += 1;
        level.quantity = Quantity(level.quantity.0 + order.leaves.0);
        if tail != NONE {
            self.orders[tail as usize].next = slot;
        }
        let order = &mut self.orders[slot as usize];
        order.level = level_index;
        order.prev = tail;
        order.next = NONE;
    }

    fn remove_from_level(&mut self, slot: u32) {
        let order = self.orders[slot as usize];
        let level_index = order.level;
        if order.prev == NONE {
            self.levels[level_index as usize].head = order.next;
        } else {
            self.orders[order.prev as usize].next = order.next;
        }
        if order.next == NONE {
            self.levels[level_index as usize].tail = order.prev;
        } else {
            self.orders[order.next as usize].prev = order.prev;
        }
        let level = &mut self.levels[level_index as usize];
        level.orders -= 1;
        level.quantity = Quantity(level.quantity.0 - order.leaves.0);
        if level.orders == 0 {
            assert_eq!(level.quantity.0, 0);
            let key = side_key(order.side, order.price);
            let side =
                &mut self.instruments[order.instrument.0 as usize].sides[side_index(order.side)];
            let position = side.find(key).expect("level is listed");
            side.remove(position);
            self.levels_free.push(level_index);
        }
        let order = &mut self.orders[slot as usize];
        order.level = NONE;
        order.prev = NONE;
        order.next = NONE;
    }

    // ---------------------------------------------------------------------------------------
    // Getters.

    /// The sequence number of the last command handled (or event replayed).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn account_exists(&self, account: AccountId) -> bool {
        account.0 < self.config.accounts_max && self.accounts[account.0 as usize].exists
    }

    /// An account's balance of an asset; zero for unknown accounts and assets.
    pub fn balance(&self, account: AccountId, asset: AssetId) -> Balance {
        if account.0 >= self.config.accounts_max || asset.0 >= self.config.assets_max {
            return Balance::default();
        }
        let row = account.0 as usize * usize::from(self.config.assets_max);
        self.balances[row + usize::from(asset.0)]
    }

    #[inline]
    fn balance_mut(&mut self, account: AccountId, asset: AssetId) -> &mut Balance {
        let row = account.0 as usize * usize::from(self.config.assets_max);
        &mut self.balances[row + usize::from(asset.0)]
    }

    /// The world account's balance of an asset: minus the net amount deposited.
    pub fn world_balance(&self, asset: AssetId) -> i128 {
        self.assets.get(usize::from(asset.0)).map_or(0, |state| state.world)
    }

    pub fn open_orders(&self, account: AccountId) -> u32 {
        if account.0 >= self.config.accounts_max {
            return 0;
        }
        self.accounts[account.0 as usize].open_orders
    }

    pub fn order(&self, order_id: OrderId) -> Option<OrderView> {
        let slot = self.order_index.get(order_id.0)?;
        let order = &self.orders[slot as usize];
        Some(OrderView {
            order_id: order.id,
            account: order.account,
            instrument: order.instrument,
            side: order.side,
            order_type: order.order_type,
            time_in_force: order.time_in_force,
            post_only: order.post_only,
            self_trade_prevention: order.self_trade_prevention,
            price: order.price,
            quantity: order.quantity,
            leaves: order.leaves,
            hold: order.hold,
        })
    }

    /// Live order ids of an account, oldest first.
    pub fn account_orders(&self, account: AccountId) -> impl Iterator<Item = OrderId> + '_ {
        let mut slot = if account.0 < self.config.accounts_max {
            self.accounts[account.0 as usize].head
        } else {
            NONE
        };
        core::iter::from_fn(move || {
            if slot == NONE {
                return None;
            }
            let order = &self.orders[slot as usize];
            slot = order.account_next;
            Some(order.id)
        })
    }

    fn instrument_live(&self, instrument: InstrumentId) -> Option<&InstrumentState> {
        self.instruments.get(instrument.0 as usize).filter(|state| state.live)
    }

    pub(crate) fn asset_live(&self, asset: AssetId) -> Option<&AssetState> {
        self.assets.get(usize::from(asset.0)).filter(|state| state.live)
    }

    pub fn instrument(&self, instrument: InstrumentId) -> Option<&InstrumentSpec> {
        self.instrument_live(instrument).map(|state| &state.spec)
    }

    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.instrument_live(instrument).is_some_and(|state| state.halted)
    }

    /// The centre of the price band: the last trade price, or the configured one before any.
    pub fn reference_price(&self, instrument: InstrumentId) -> Option<Price> {
        self.instrument_live(instrument).map(|state| state.reference_price)
    }

    /// Best price and its total quantity on one side.
    pub fn best_level(&self, instrument: InstrumentId, side: Side) -> Option<(Price, Quantity)> {
        let state = self.instrument_live(instrument)?;
        let level_index = state.sides[side_index(side)].best()?;
        let level = &self.levels[level_index as usize];
        Some((level.price, level.quantity))
    }

    /// Price levels of one side, best first: `(price, total leaves, order count)`.
    pub fn levels(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = (Price, Quantity, u32)> + '_ {
        let sides = self.instrument_live(instrument).map(|state| &state.sides[side_index(side)]);
        sides.into_iter().flat_map(SideLevels::best_first).map(|(_, level_index)| {
            let level = &self.levels[level_index as usize];
            (level.price, level.quantity, level.orders)
        })
    }

    /// Resting orders at one price, in time priority.
    pub fn level_orders(&self, instrument: InstrumentId, side: Side, price: Price) -> Vec<OrderId> {
        let mut ids = Vec::new();
        let Some(state) = self.instrument_live(instrument) else { return ids };
        let levels = &state.sides[side_index(side)];
        if let Ok(position) = levels.find(side_key(side, price)) {
            let mut slot = self.levels[levels.get(position).1 as usize].head;
            while slot != NONE {
                ids.push(self.orders[slot as usize].id);
                slot = self.orders[slot as usize].next;
            }
        }
        ids
    }

    /// The cheap invariant checked after every order command, in release builds too.
    fn assert_not_crossed(&self, instrument: InstrumentId) {
        if let (Some((bid, _)), Some((ask, _))) =
            (self.best_level(instrument, Side::Buy), self.best_level(instrument, Side::Sell))
        {
            assert!(bid < ask, "book crossed: bid {bid} >= ask {ask}");
        }
    }
}

pub(crate) fn validate_quantity(
    spec: &InstrumentSpec,
    quantity: Quantity,
) -> Result<(), RejectReason> {
    let in_range = quantity >= spec.quantity_min && quantity <= spec.quantity_max;
    if quantity.0 == 0 || !in_range || quantity.0 % spec.lot_size.0 != 0 {
        return Err(RejectReason::InvalidQuantity);
    }
    Ok(())
}

fn validate_price(
    spec: &InstrumentSpec,
    (lower, upper): (Price, Price),
    price: Price,
) -> Result<(), RejectReason> {
    if price.0 == 0 || price.0 % spec.tick_size.0 != 0 {
        return Err(RejectReason::InvalidPrice);
    }
    if price < lower || price > upper {
        return Err(RejectReason::PriceOutsideBand);
    }
    Ok(())
}

/// Whether an instrument's parameters are coherent and bound every product the engine forms:
/// the notional of the largest order at the highest possible price, plus fees, must fit in 127
/// bits so that sums of two such values cannot overflow either.
pub(crate) fn spec_is_valid(spec: &InstrumentSpec) -> bool {
    let positive = spec.tick_size.0 > 0
        && spec.lot_size.0 > 0
        && spec.base_per_lot > 0
        && spec.quote_per_tick_lot > 0
        && spec.reference_price.0 > 0;
    if !positive || spec.base_asset == spec.quote_asset {
        return false;
    }
    let multiples = spec.quantity_min.0 % spec.lot_size.0 == 0
        && spec.quantity_max.0 % spec.lot_size.0 == 0
        && spec.reference_price.0 % spec.tick_size.0 == 0;
    let ordered = spec.quantity_min.0 > 0 && spec.quantity_min <= spec.quantity_max;
    let rates =
        spec.band_bps < 10_000 && spec.maker_fee_bps <= 1_000 && spec.taker_fee_bps <= 1_000;
    // The band moves with the last trade, so bound by the largest representable price. The
    // headroom below 2^128 lets fee arithmetic multiply a notional by 10^4 without overflow.
    let value_max = u128::from(u64::MAX)
        .checked_mul(u128::from(spec.quantity_max.0))
        .and_then(|v| v.checked_mul(u128::from(spec.quote_per_tick_lot)));
    let base_max = u128::from(spec.quantity_max.0).checked_mul(u128::from(spec.base_per_lot));
    multiples && ordered && rates && value_max.is_some_and(|v| v < (1 << 112)) && base_max.is_some()
}
