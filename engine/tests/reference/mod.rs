//! A slow, obviously-correct reference exchange: the oracle the differential tests hold the fast
//! engine against.
//!
//! It implements the semantics documented in `engine::command` and `engine::event` in the most
//! direct way available: live orders sit in one plain `Vec` that is scanned linearly for the best
//! price and the earliest time stamp, balances live in a `BTreeMap` keyed by account and asset,
//! and wallet transactions in a `BTreeMap` keyed by id. It shares no data structure and no helper
//! with the engine (only the public types and the `Event` enum it must reproduce), and it changes
//! its state directly instead of by applying its own events, so an error in the engine's
//! event-application path cannot be mirrored here by construction.
//!
//! Fill-or-kill is decided by running the order against a clone of the whole state and keeping the
//! clone only if the order filled completely: the definition of "executes entirely at once or not
//! at all", with no separate look-ahead to get wrong.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use engine::{
    AccountId, Amount, AssetId, Bucket, CancelReason, Command, CommandBody, EngineConfig, Event,
    InstrumentId, InstrumentSpec, LegKind, NewOrder, OrderId, OrderType, OrderView, Price,
    Quantity, RejectReason, SelfTradePrevention, Side, TimeInForce, TransactionId,
};

/// A live order. Between commands every live order rests on its book.
#[derive(Clone, Debug)]
pub struct RefOrder {
    pub id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub self_trade_prevention: SelfTradePrevention,
    pub price: Price,
    pub quantity: Quantity,
    pub leaves: Quantity,
    /// What the order holds: quote for buys, base for sells.
    pub hold: u128,
    /// Time priority within a price: smaller is earlier. Renewed whenever the order (re)rests.
    pub priority: u64,
    /// When the order was accepted: orders an account's orders for mass cancel. Never renewed.
    pub accepted: u64,
}

#[derive(Clone, Debug)]
pub struct RefInstrument {
    pub spec: InstrumentSpec,
    pub halted: bool,
    /// The band's centre: the configured price until the first trade, then the last trade price.
    pub reference_price: Price,
}

/// A remembered wallet transaction: every field a retry must match, and where it executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefTransaction {
    pub kind: LegKind,
    pub debit: AccountId,
    pub credit: AccountId,
    pub asset: AssetId,
    pub amount: Amount,
    pub seq: u64,
}

#[derive(Clone, Debug)]
pub struct Reference {
    pub config: EngineConfig,
    pub seq: u64,
    pub assets: BTreeMap<AssetId, u8>,
    /// The world account's signed balance per asset.
    pub world: BTreeMap<AssetId, i128>,
    pub instruments: BTreeMap<InstrumentId, RefInstrument>,
    pub accounts: BTreeSet<AccountId>,
    /// `(available, held)` per account and asset; a missing entry is zero.
    pub balances: BTreeMap<(AccountId, AssetId), (u128, u128)>,
    pub orders: Vec<RefOrder>,
    pub transactions: BTreeMap<TransactionId, RefTransaction>,
    /// Hands out priority and acceptance stamps.
    clock: u64,
}

/// How matching an incoming order stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Filled,
    NothingToTrade,
    SelfTrade,
    BudgetExhausted,
}

fn crosses(side: Side, limit: Price, resting: Price) -> bool {
    match side {
        Side::Buy => resting <= limit,
        Side::Sell => resting >= limit,
    }
}

fn notional(spec: &InstrumentSpec, price: Price, quantity: Quantity) -> u128 {
    u128::from(price.0) * u128::from(quantity.0) * u128::from(spec.quote_per_tick_lot)
}

/// Fees round down, in the payer's favour.
fn fee(value: u128, bps: u16) -> u128 {
    value * u128::from(bps) / 10_000
}

/// A limit buy holds its notional at its limit plus the larger of the two fees.
fn buy_hold(spec: &InstrumentSpec, price: Price, leaves: Quantity) -> u128 {
    let value = notional(spec, price, leaves);
    value + fee(value, spec.maker_fee_bps.max(spec.taker_fee_bps))
}

/// A sell holds its base quantity.
fn sell_hold(spec: &InstrumentSpec, leaves: Quantity) -> u128 {
    u128::from(leaves.0) * u128::from(spec.base_per_lot)
}

fn limit_hold(spec: &InstrumentSpec, side: Side, price: Price, leaves: Quantity) -> u128 {
    match side {
        Side::Buy => buy_hold(spec, price, leaves),
        Side::Sell => sell_hold(spec, leaves),
    }
}

/// What a taker buy pays for `lots` at `price`: the notional plus the taker fee.
fn taker_buy_cost(spec: &InstrumentSpec, price: Price, lots: u64) -> u128 {
    let value = notional(spec, price, Quantity(lots));
    value + fee(value, spec.taker_fee_bps)
}

/// The largest number of lots, at most `leaves`, whose cost fits `budget`. The cost grows with
/// the lot count, so a binary search over `0..=leaves` finds it.
fn affordable(spec: &InstrumentSpec, budget: u128, price: Price, leaves: u64) -> u64 {
    let (mut low, mut high) = (0u64, leaves);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if taker_buy_cost(spec, price, middle) <= budget {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    low
}

/// The band `[lower, upper]` around `reference`; zero basis points means no band. The lower
/// edge rounds up and the upper edge down, so both lie inside the band.
fn band(spec: &InstrumentSpec, reference: Price) -> (Price, Price) {
    if spec.band_bps == 0 {
        return (Price(0), Price(u64::MAX));
    }
    let reference = u128::from(reference.0);
    let lower = (reference * u128::from(10_000 - spec.band_bps)).div_ceil(10_000);
    let upper = reference * u128::from(10_000 + spec.band_bps) / 10_000;
    (
        Price(u64::try_from(lower).unwrap_or(u64::MAX)),
        Price(u64::try_from(upper).unwrap_or(u64::MAX)),
    )
}

fn check_quantity(spec: &InstrumentSpec, quantity: Quantity) -> Result<(), RejectReason> {
    let valid = quantity.0 > 0
        && quantity >= spec.quantity_min
        && quantity <= spec.quantity_max
        && quantity.0 % spec.lot_size.0 == 0;
    if valid {
        Ok(())
    } else {
        Err(RejectReason::InvalidQuantity)
    }
}

fn check_price(instrument: &RefInstrument, price: Price) -> Result<(), RejectReason> {
    if price.0 == 0 || price.0 % instrument.spec.tick_size.0 != 0 {
        return Err(RejectReason::InvalidPrice);
    }
    let (lower, upper) = band(&instrument.spec, instrument.reference_price);
    if price < lower || price > upper {
        return Err(RejectReason::PriceOutsideBand);
    }
    Ok(())
}

/// The instrument-specification rules: coherent, and small enough that no product overflows.
fn spec_is_valid(spec: &InstrumentSpec) -> bool {
    let positive = spec.tick_size.0 > 0
        && spec.lot_size.0 > 0
        && spec.base_per_lot > 0
        && spec.quote_per_tick_lot > 0
        && spec.reference_price.0 > 0
        && spec.quantity_min.0 > 0;
    if !positive || spec.base_asset == spec.quote_asset {
        return false;
    }
    let multiples = spec.quantity_min.0 % spec.lot_size.0 == 0
        && spec.quantity_max.0 % spec.lot_size.0 == 0
        && spec.reference_price.0 % spec.tick_size.0 == 0;
    let rates =
        spec.band_bps < 10_000 && spec.maker_fee_bps <= 1_000 && spec.taker_fee_bps <= 1_000;
    let value_max = u128::from(u64::MAX)
        .checked_mul(u128::from(spec.quantity_max.0))
        .and_then(|v| v.checked_mul(u128::from(spec.quote_per_tick_lot)));
    let base_max = u128::from(spec.quantity_max.0).checked_mul(u128::from(spec.base_per_lot));
    multiples
        && spec.quantity_min <= spec.quantity_max
        && rates
        && value_max.is_some_and(|v| v < (1 << 112))
        && base_max.is_some()
}

impl Reference {
    pub fn new(config: EngineConfig) -> Reference {
        Reference {
            config,
            seq: 0,
            assets: BTreeMap::new(),
            world: BTreeMap::new(),
            instruments: BTreeMap::new(),
            accounts: BTreeSet::from([config.fee_account]),
            balances: BTreeMap::new(),
            orders: Vec::new(),
            transactions: BTreeMap::new(),
            clock: 0,
        }
    }

    // -------------------------------------------------------------------------------------
    // Queries, in the engine's shapes so tests can compare them directly.

    pub fn balance(&self, account: AccountId, asset: AssetId) -> (u128, u128) {
        self.balances.get(&(account, asset)).copied().unwrap_or((0, 0))
    }

    pub fn world_balance(&self, asset: AssetId) -> i128 {
        self.world.get(&asset).copied().unwrap_or(0)
    }

    pub fn order(&self, order_id: OrderId) -> Option<OrderView> {
        let order = self.orders.iter().find(|order| order.id == order_id)?;
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
            hold: Amount(order.hold),
        })
    }

    pub fn reference_price(&self, instrument: InstrumentId) -> Option<Price> {
        self.instruments.get(&instrument).map(|state| state.reference_price)
    }

    pub fn is_halted(&self, instrument: InstrumentId) -> bool {
        self.instruments.get(&instrument).is_some_and(|state| state.halted)
    }

    /// Resting orders of one side of one book in matching order: best price, then earliest.
    pub fn book_side(&self, instrument: InstrumentId, side: Side) -> Vec<&RefOrder> {
        let mut orders: Vec<&RefOrder> = self
            .orders
            .iter()
            .filter(|order| order.instrument == instrument && order.side == side)
            .collect();
        orders.sort_by_key(|order| {
            let price_rank = match side {
                Side::Buy => u64::MAX - order.price.0,
                Side::Sell => order.price.0,
            };
            (price_rank, order.priority)
        });
        orders
    }

    /// Price levels, best first: `(price, total leaves, order count)`, like `Engine::levels`.
    pub fn levels(&self, instrument: InstrumentId, side: Side) -> Vec<(Price, Quantity, u32)> {
        let mut levels: Vec<(Price, Quantity, u32)> = Vec::new();
        for order in self.book_side(instrument, side) {
            match levels.last_mut() {
                Some(level) if level.0 == order.price => {
                    level.1 = Quantity(level.1 .0 + order.leaves.0);
                    level.2 += 1;
                }
                _ => levels.push((order.price, order.leaves, 1)),
            }
        }
        levels
    }

    /// Live order ids of an account, oldest accepted first, like `Engine::account_orders`.
    pub fn account_orders(&self, account: AccountId) -> Vec<OrderId> {
        let mut orders: Vec<&RefOrder> =
            self.orders.iter().filter(|order| order.account == account).collect();
        orders.sort_by_key(|order| order.accepted);
        orders.iter().map(|order| order.id).collect()
    }

    pub fn live_order_ids(&self) -> Vec<OrderId> {
        self.orders.iter().map(|order| order.id).collect()
    }

    fn best_opposite(&self, instrument: InstrumentId, side: Side) -> Option<Price> {
        self.book_side(instrument, side.opposite()).first().map(|order| order.price)
    }

    fn distinct_prices(&self, instrument: InstrumentId, side: Side, except: OrderId) -> Vec<Price> {
        let mut prices: Vec<Price> = self
            .orders
            .iter()
            .filter(|o| o.instrument == instrument && o.side == side && o.id != except)
            .map(|o| o.price)
            .collect();
        prices.sort_unstable();
        prices.dedup();
        prices
    }

    /// Whether an order at `price` could rest without creating a level beyond `levels_max`,
    /// counting the levels formed by every other order (`except` is the order being moved).
    fn level_room(
        &self,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        except: OrderId,
    ) -> bool {
        let prices = self.distinct_prices(instrument, side, except);
        prices.contains(&price) || prices.len() < self.config.levels_max as usize
    }

    // -------------------------------------------------------------------------------------
    // Value movement: each helper changes balances and records the leg as an event.

    fn bucket_mut(&mut self, account: AccountId, asset: AssetId, bucket: Bucket) -> &mut u128 {
        let entry = self.balances.entry((account, asset)).or_insert((0, 0));
        match bucket {
            Bucket::Available => &mut entry.0,
            Bucket::Held => &mut entry.1,
        }
    }

    /// Moves `amount` between two buckets and records the leg; a zero amount records nothing.
    fn leg(
        &mut self,
        events: &mut Vec<Event>,
        kind: LegKind,
        asset: AssetId,
        debit: (AccountId, Bucket),
        credit: (AccountId, Bucket),
        amount: u128,
        order_id: OrderId,
        transaction_id: TransactionId,
    ) {
        if amount == 0 {
            return;
        }
        let signed = i128::try_from(amount).unwrap();
        if debit.0 == AccountId::WORLD {
            *self.world.entry(asset).or_insert(0) -= signed;
        } else {
            let bucket = self.bucket_mut(debit.0, asset, debit.1);
            *bucket = bucket.checked_sub(amount).expect("reference: negative balance");
        }
        if credit.0 == AccountId::WORLD {
            *self.world.entry(asset).or_insert(0) += signed;
        } else {
            *self.bucket_mut(credit.0, asset, credit.1) += amount;
        }
        events.push(Event::Ledger {
            kind,
            asset,
            debit_account: debit.0,
            debit_bucket: debit.1,
            credit_account: credit.0,
            credit_bucket: credit.1,
            amount: Amount(amount),
            order_id,
            transaction_id,
        });
    }

    fn hold_asset(&self, order: &RefOrder) -> AssetId {
        let spec = &self.instruments[&order.instrument].spec;
        match order.side {
            Side::Buy => spec.quote_asset,
            Side::Sell => spec.base_asset,
        }
    }

    /// Releases an order's whole hold, then closes it: the release comes first so that a closed
    /// order provably holds nothing.
    fn close_cancelled(
        &mut self,
        events: &mut Vec<Event>,
        order: &mut RefOrder,
        reason: CancelReason,
    ) {
        let asset = self.hold_asset(order);
        let owner = order.account;
        let hold = order.hold;
        self.leg(
            events,
            LegKind::OrderRelease,
            asset,
            (owner, Bucket::Held),
            (owner, Bucket::Available),
            hold,
            order.id,
            TransactionId(0),
        );
        order.hold = 0;
        events.push(Event::OrderCancelled { order_id: order.id, leaves: order.leaves, reason });
    }

    /// Takes a resting order off its book and cancels it.
    fn cancel_resting(&mut self, events: &mut Vec<Event>, order_id: OrderId, reason: CancelReason) {
        let position = self.orders.iter().position(|order| order.id == order_id).unwrap();
        let mut order = self.orders.remove(position);
        self.close_cancelled(events, &mut order, reason);
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    // -------------------------------------------------------------------------------------
    // Commands.

    pub fn handle(&mut self, command: &Command) -> Vec<Event> {
        assert_eq!(command.seq, self.seq + 1, "reference: sequence gap");
        self.seq = command.seq;
        let mut events = Vec::new();
        match command.body {
            CommandBody::NewOrder(order) => self.new_order(&mut events, &order),
            CommandBody::CancelOrder { order_id, account } => {
                match self.orders.iter().find(|o| o.id == order_id && o.account == account) {
                    Some(_) => self.cancel_resting(&mut events, order_id, CancelReason::Requested),
                    None => events.push(reject(RejectReason::UnknownOrder, order_id.0.into())),
                }
            }
            CommandBody::AmendOrder { order_id, account, price, quantity } => {
                self.amend(&mut events, order_id, account, price, quantity);
            }
            CommandBody::MassCancel { account, instrument } => {
                self.mass_cancel(&mut events, account, instrument);
            }
            CommandBody::Deposit { transaction_id, account, asset, amount } => {
                let kind = LegKind::Deposit;
                let legs = (AccountId::WORLD, account);
                self.transaction(&mut events, kind, transaction_id, legs, asset, amount);
            }
            CommandBody::Withdraw { transaction_id, account, asset, amount } => {
                let kind = LegKind::Withdrawal;
                let legs = (account, AccountId::WORLD);
                self.transaction(&mut events, kind, transaction_id, legs, asset, amount);
            }
            CommandBody::Transfer { transaction_id, from, to, asset, amount } => {
                let kind = LegKind::Transfer;
                self.transaction(&mut events, kind, transaction_id, (from, to), asset, amount);
            }
            CommandBody::CreateAccount { account } => {
                let reference = u128::from(account.0);
                if account.0 >= self.config.accounts_max {
                    events.push(reject(RejectReason::AccountsCapacityReached, reference));
                } else if !self.accounts.insert(account) {
                    events.push(reject(RejectReason::AccountExists, reference));
                } else {
                    events.push(Event::AccountCreated { account });
                }
            }
            CommandBody::AddAsset { asset, scale } => {
                let reference = u128::from(asset.0);
                if asset.0 >= self.config.assets_max {
                    events.push(reject(RejectReason::AssetsCapacityReached, reference));
                } else if let std::collections::btree_map::Entry::Vacant(entry) =
                    self.assets.entry(asset)
                {
                    entry.insert(scale);
                    events.push(Event::AssetAdded { asset, scale });
                } else {
                    events.push(reject(RejectReason::AssetExists, reference));
                }
            }
            CommandBody::AddInstrument(spec) => {
                let reference = u128::from(spec.instrument.0);
                if spec.instrument.0 >= self.config.instruments_max {
                    events.push(reject(RejectReason::InstrumentsCapacityReached, reference));
                } else if self.instruments.contains_key(&spec.instrument) {
                    events.push(reject(RejectReason::InstrumentExists, reference));
                } else if !self.assets.contains_key(&spec.base_asset)
                    || !self.assets.contains_key(&spec.quote_asset)
                {
                    events.push(reject(RejectReason::UnknownAsset, reference));
                } else if !spec_is_valid(&spec) {
                    events.push(reject(RejectReason::InvalidInstrument, reference));
                } else {
                    let state = RefInstrument {
                        spec,
                        halted: false,
                        reference_price: spec.reference_price,
                    };
                    self.instruments.insert(spec.instrument, state);
                    events.push(Event::InstrumentAdded(spec));
                }
            }
            CommandBody::SetInstrumentHalted { instrument, halted } => {
                match self.instruments.get_mut(&instrument) {
                    Some(state) => {
                        state.halted = halted;
                        events.push(Event::InstrumentHalted { instrument, halted });
                    }
                    None => events.push(reject(RejectReason::UnknownInstrument, 0)),
                }
            }
            CommandBody::EndOfDay { instrument } => {
                if instrument.is_some_and(|id| !self.instruments.contains_key(&id)) {
                    events.push(reject(RejectReason::UnknownInstrument, 0));
                } else {
                    let is_day = |order: &RefOrder| order.time_in_force == TimeInForce::Day;
                    self.cancel_books(&mut events, instrument, CancelReason::Expired, is_day);
                }
            }
        }
        events
    }

    /// Checks a new order; the first failing rule, in the documented precedence, is the reason.
    fn validate_new_order(&self, order: &NewOrder) -> Result<(), RejectReason> {
        if order.order_id.0 == 0 {
            return Err(RejectReason::InvalidOrderId);
        }
        let instrument =
            self.instruments.get(&order.instrument).ok_or(RejectReason::UnknownInstrument)?;
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        if !self.accounts.contains(&order.account) {
            return Err(RejectReason::UnknownAccount);
        }
        check_quantity(&instrument.spec, order.quantity)?;
        let market_buy = order.order_type == OrderType::Market && order.side == Side::Buy;
        if market_buy && order.quote_budget.0 == 0 {
            return Err(RejectReason::MarketBuyNeedsBudget);
        }
        if !market_buy && order.quote_budget.0 != 0 {
            return Err(RejectReason::UnexpectedBudget);
        }
        if order.order_type == OrderType::Market {
            if matches!(order.time_in_force, TimeInForce::Gtc | TimeInForce::Day) {
                return Err(RejectReason::InvalidTimeInForce);
            }
            if order.post_only {
                return Err(RejectReason::PostOnlyWouldTake);
            }
        } else {
            check_price(instrument, order.price)?;
            let best = self.best_opposite(order.instrument, order.side);
            if order.post_only && best.is_some_and(|best| crosses(order.side, order.price, best)) {
                return Err(RejectReason::PostOnlyWouldTake);
            }
        }
        if self.orders.iter().any(|live| live.id == order.order_id) {
            return Err(RejectReason::DuplicateOrderId);
        }
        if self.orders.len() >= self.config.orders_max as usize {
            return Err(RejectReason::OrdersCapacityReached);
        }
        let open = self.orders.iter().filter(|live| live.account == order.account).count();
        if open >= self.config.orders_per_account_max as usize {
            return Err(RejectReason::AccountOrdersLimitReached);
        }
        let may_rest = order.order_type == OrderType::Limit
            && matches!(order.time_in_force, TimeInForce::Gtc | TimeInForce::Day);
        if may_rest && !self.level_room(order.instrument, order.side, order.price, OrderId(0)) {
            return Err(RejectReason::PriceLevelsCapacityReached);
        }
        Ok(())
    }

    fn new_order(&mut self, events: &mut Vec<Event>, order: &NewOrder) {
        let reference = u128::from(order.order_id.0);
        if let Err(reason) = self.validate_new_order(order) {
            events.push(reject(reason, reference));
            return;
        }
        let instrument = &self.instruments[&order.instrument];
        let spec = instrument.spec;
        let (hold_asset, hold) = match (order.side, order.order_type) {
            (Side::Buy, OrderType::Limit) => {
                (spec.quote_asset, buy_hold(&spec, order.price, order.quantity))
            }
            (Side::Buy, OrderType::Market) => (spec.quote_asset, order.quote_budget.0),
            (Side::Sell, _) => (spec.base_asset, sell_hold(&spec, order.quantity)),
        };
        if self.balance(order.account, hold_asset).0 < hold {
            events.push(reject(RejectReason::InsufficientFunds, reference));
            return;
        }
        // A market order may trade as far as the band edge, measured before it trades.
        let limit = match (order.order_type, order.side) {
            (OrderType::Limit, _) => order.price,
            (OrderType::Market, Side::Buy) => band(&spec, instrument.reference_price).1,
            (OrderType::Market, Side::Sell) => band(&spec, instrument.reference_price).0,
        };
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
        let accepted_stamp = self.tick();
        let taker = RefOrder {
            id: order.order_id,
            account: order.account,
            instrument: order.instrument,
            side: order.side,
            order_type: order.order_type,
            time_in_force: order.time_in_force,
            post_only: order.post_only,
            self_trade_prevention: order.self_trade_prevention,
            price: order.price,
            quantity: order.quantity,
            leaves: order.quantity,
            hold: 0,
            priority: 0,
            accepted: accepted_stamp,
        };
        if order.time_in_force == TimeInForce::Fok {
            // Try it for real on a copy of the world; keep the copy only if nothing is left.
            let mut trial = self.clone();
            let mut trial_events = vec![accepted];
            let filled = trial.enter(&mut trial_events, taker, hold_asset, hold, limit);
            if filled {
                *self = trial;
                events.extend(trial_events);
            } else {
                events.push(accepted);
                let leaves = order.quantity;
                let reason = CancelReason::FillOrKill;
                events.push(Event::OrderCancelled { order_id: order.order_id, leaves, reason });
            }
            return;
        }
        events.push(accepted);
        self.enter(events, taker, hold_asset, hold, limit);
    }

    /// Holds, matches and then rests or cancels an accepted order. Returns whether it filled
    /// completely.
    fn enter(
        &mut self,
        events: &mut Vec<Event>,
        mut taker: RefOrder,
        hold_asset: AssetId,
        hold: u128,
        limit: Price,
    ) -> bool {
        let owner = taker.account;
        let (available, held) = ((owner, Bucket::Available), (owner, Bucket::Held));
        let none = TransactionId(0);
        self.leg(events, LegKind::OrderHold, hold_asset, available, held, hold, taker.id, none);
        taker.hold += hold;
        let stop = self.match_taker(events, &mut taker, limit);
        self.finish_taker(events, taker, stop)
    }

    /// Trades `taker` against the opposite side, best price first and earliest first within a
    /// price, at the makers' prices, until something stops it.
    fn match_taker(&mut self, events: &mut Vec<Event>, taker: &mut RefOrder, limit: Price) -> Stop {
        let spec = self.instruments[&taker.instrument].spec;
        loop {
            if taker.leaves.0 == 0 {
                return Stop::Filled;
            }
            let opposite = self.book_side(taker.instrument, taker.side.opposite());
            let maker = opposite.first().map(|&maker| maker.clone());
            let Some(maker) = maker else { return Stop::NothingToTrade };
            if !crosses(taker.side, limit, maker.price) {
                return Stop::NothingToTrade;
            }
            if maker.account == taker.account {
                match taker.self_trade_prevention {
                    SelfTradePrevention::None => {}
                    SelfTradePrevention::CancelResting => {
                        self.cancel_resting(events, maker.id, CancelReason::SelfTrade);
                        continue;
                    }
                    SelfTradePrevention::CancelIncoming => return Stop::SelfTrade,
                    SelfTradePrevention::CancelBoth => {
                        self.cancel_resting(events, maker.id, CancelReason::SelfTrade);
                        return Stop::SelfTrade;
                    }
                }
            }
            let mut quantity = taker.leaves.0.min(maker.leaves.0);
            if taker.order_type == OrderType::Market && taker.side == Side::Buy {
                // A market buy's hold is its remaining budget.
                quantity = affordable(&spec, taker.hold, maker.price, quantity);
                if quantity == 0 {
                    return Stop::BudgetExhausted;
                }
            }
            self.fill(events, &spec, maker.id, taker, maker.price, Quantity(quantity));
        }
    }

    /// One fill: quote to the seller, base to the buyer, the buyer's fee, the seller's fee, the
    /// buyer's no-longer-needed hold, and then the trade itself.
    fn fill(
        &mut self,
        events: &mut Vec<Event>,
        spec: &InstrumentSpec,
        maker_id: OrderId,
        taker: &mut RefOrder,
        price: Price,
        quantity: Quantity,
    ) {
        let position = self.orders.iter().position(|order| order.id == maker_id).unwrap();
        let mut maker = self.orders[position].clone();
        // The taker pays the taker fee and the maker the maker fee, whichever side each is on.
        let (buyer_bps, seller_bps) = match taker.side {
            Side::Buy => (spec.taker_fee_bps, spec.maker_fee_bps),
            Side::Sell => (spec.maker_fee_bps, spec.taker_fee_bps),
        };
        let (buyer, seller) = match taker.side {
            Side::Buy => (&mut *taker, &mut maker),
            Side::Sell => (&mut maker, &mut *taker),
        };
        let value = notional(spec, price, quantity);
        let base = sell_hold(spec, quantity);
        let buyer_fee = fee(value, buyer_bps);
        let seller_fee = fee(value, seller_bps);
        let (quote_asset, base_asset) = (spec.quote_asset, spec.base_asset);
        let fees = (self.config.fee_account, Bucket::Available);
        let none = TransactionId(0);
        let (b, s) = (buyer.account, seller.account);
        let (buyer_id, seller_id) = (buyer.id, seller.id);
        let settle = LegKind::TradeSettlement;
        let (b_held, b_avail) = ((b, Bucket::Held), (b, Bucket::Available));
        let (s_held, s_avail) = ((s, Bucket::Held), (s, Bucket::Available));
        self.leg(events, settle, quote_asset, b_held, s_avail, value, buyer_id, none);
        self.leg(events, settle, base_asset, s_held, b_avail, base, seller_id, none);
        self.leg(events, LegKind::Fee, quote_asset, b_held, fees, buyer_fee, buyer_id, none);
        self.leg(events, LegKind::Fee, quote_asset, s_avail, fees, seller_fee, seller_id, none);
        buyer.hold -= value + buyer_fee;
        seller.hold -= base;
        buyer.leaves = Quantity(buyer.leaves.0 - quantity.0);
        seller.leaves = Quantity(seller.leaves.0 - quantity.0);
        // A limit buyer keeps what its leaves need at its own limit; a market buyer keeps its
        // remaining budget until it stops; a finished buyer keeps nothing.
        let needed = if buyer.leaves.0 == 0 {
            0
        } else if buyer.order_type == OrderType::Market {
            buyer.hold
        } else {
            buy_hold(spec, buyer.price, buyer.leaves)
        };
        let excess = buyer.hold - needed;
        buyer.hold = needed;
        let release = LegKind::OrderRelease;
        self.leg(events, release, quote_asset, b_held, b_avail, excess, buyer_id, none);
        events.push(Event::Trade {
            instrument: spec.instrument,
            maker_order_id: maker.id,
            taker_order_id: taker.id,
            taker_side: taker.side,
            price,
            quantity,
            maker_leaves: maker.leaves,
            taker_leaves: taker.leaves,
        });
        if maker.leaves.0 == 0 {
            assert_eq!(maker.hold, 0, "reference: a filled maker holds nothing");
            self.orders.remove(position);
        } else {
            self.orders[position] = maker;
        }
        if taker.leaves.0 == 0 {
            assert_eq!(taker.hold, 0, "reference: a filled taker holds nothing");
        }
        self.instruments.get_mut(&spec.instrument).unwrap().reference_price = price;
    }

    /// Rests what is left of a limit GTC or DAY order, and cancels what is left of anything else.
    /// Returns whether the order filled completely.
    fn finish_taker(&mut self, events: &mut Vec<Event>, mut taker: RefOrder, stop: Stop) -> bool {
        let reason = match stop {
            Stop::Filled => return true,
            Stop::NothingToTrade
                if taker.order_type == OrderType::Limit
                    && matches!(taker.time_in_force, TimeInForce::Gtc | TimeInForce::Day) =>
            {
                events.push(Event::OrderRested { order_id: taker.id });
                taker.priority = self.tick();
                self.orders.push(taker);
                return false;
            }
            Stop::NothingToTrade => CancelReason::ImmediateRemainder,
            Stop::SelfTrade => CancelReason::SelfTrade,
            Stop::BudgetExhausted => CancelReason::BudgetExhausted,
        };
        self.close_cancelled(events, &mut taker, reason);
        false
    }

    fn amend(
        &mut self,
        events: &mut Vec<Event>,
        order_id: OrderId,
        account: AccountId,
        price: Price,
        quantity: Quantity,
    ) {
        let reference = u128::from(order_id.0);
        let Some(position) =
            self.orders.iter().position(|o| o.id == order_id && o.account == account)
        else {
            events.push(reject(RejectReason::UnknownOrder, reference));
            return;
        };
        let order = self.orders[position].clone();
        let decision = self.validate_amend(&order, price, quantity);
        let (leaves, needed, keeps_priority) = match decision {
            Ok(decision) => decision,
            Err(reason) => {
                events.push(reject(reason, reference));
                return;
            }
        };
        events.push(Event::OrderAmended {
            order_id,
            price,
            quantity,
            leaves,
            priority_kept: keeps_priority,
        });
        let asset = self.hold_asset(&order);
        let (available, held) = ((account, Bucket::Available), (account, Bucket::Held));
        let none = TransactionId(0);
        if needed > order.hold {
            let more = needed - order.hold;
            self.leg(events, LegKind::OrderHold, asset, available, held, more, order_id, none);
        } else {
            let less = order.hold - needed;
            self.leg(events, LegKind::OrderRelease, asset, held, available, less, order_id, none);
        }
        let mut amended = self.orders.remove(position);
        amended.price = price;
        amended.quantity = quantity;
        amended.leaves = leaves;
        amended.hold = needed;
        if keeps_priority {
            // Back in the same place: its priority stamp is unchanged.
            self.orders.insert(position, amended);
        } else {
            let mut taker = amended;
            let stop = self.match_taker(events, &mut taker, price);
            self.finish_taker(events, taker, stop);
        }
    }

    /// Checks an amend; returns the new leaves, the hold they need and whether priority is kept.
    fn validate_amend(
        &self,
        order: &RefOrder,
        price: Price,
        quantity: Quantity,
    ) -> Result<(Quantity, u128, bool), RejectReason> {
        let instrument = &self.instruments[&order.instrument];
        if instrument.halted {
            return Err(RejectReason::InstrumentHalted);
        }
        check_price(instrument, price)?;
        check_quantity(&instrument.spec, quantity)?;
        let filled = order.quantity.0 - order.leaves.0;
        if quantity.0 <= filled {
            return Err(RejectReason::AmendQuantityNotAboveFilled);
        }
        if price == order.price && quantity == order.quantity {
            return Err(RejectReason::AmendNoChange);
        }
        let leaves = Quantity(quantity.0 - filled);
        let needed = limit_hold(&instrument.spec, order.side, price, leaves);
        let keeps_priority = price == order.price && leaves < order.leaves;
        if keeps_priority {
            return Ok((leaves, needed, true));
        }
        let best = self.best_opposite(order.instrument, order.side);
        if order.post_only && best.is_some_and(|best| crosses(order.side, price, best)) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        if !self.level_room(order.instrument, order.side, price, order.id) {
            return Err(RejectReason::PriceLevelsCapacityReached);
        }
        let asset = self.hold_asset(order);
        if needed > order.hold && self.balance(order.account, asset).0 < needed - order.hold {
            return Err(RejectReason::InsufficientFunds);
        }
        Ok((leaves, needed, false))
    }

    fn mass_cancel(
        &mut self,
        events: &mut Vec<Event>,
        account: Option<AccountId>,
        instrument: Option<InstrumentId>,
    ) {
        if instrument.is_some_and(|id| !self.instruments.contains_key(&id)) {
            events.push(reject(RejectReason::UnknownInstrument, 0));
            return;
        }
        match account {
            Some(account) => {
                if !self.accounts.contains(&account) {
                    events.push(reject(RejectReason::UnknownAccount, 0));
                    return;
                }
                // An account's orders go in the order they were accepted.
                for order_id in self.account_orders(account) {
                    let order = self.orders.iter().find(|order| order.id == order_id).unwrap();
                    if instrument.is_none_or(|id| order.instrument == id) {
                        self.cancel_resting(events, order_id, CancelReason::Requested);
                    }
                }
            }
            None => self.cancel_books(events, instrument, CancelReason::Requested, |_| true),
        }
    }

    /// Cancels the selected resting orders book by book in instrument order: bids then asks,
    /// each in matching order (best price first, earliest first).
    fn cancel_books(
        &mut self,
        events: &mut Vec<Event>,
        instrument: Option<InstrumentId>,
        reason: CancelReason,
        select: impl Fn(&RefOrder) -> bool,
    ) {
        let ids: Vec<InstrumentId> = self.instruments.keys().copied().collect();
        for id in ids.into_iter().filter(|id| instrument.is_none_or(|only| only == *id)) {
            for side in [Side::Buy, Side::Sell] {
                let doomed: Vec<OrderId> = self
                    .book_side(id, side)
                    .into_iter()
                    .filter(|order| select(order))
                    .map(|order| order.id)
                    .collect();
                for order_id in doomed {
                    self.cancel_resting(events, order_id, reason);
                }
            }
        }
    }

    fn transaction(
        &mut self,
        events: &mut Vec<Event>,
        kind: LegKind,
        transaction_id: TransactionId,
        (debit, credit): (AccountId, AccountId),
        asset: AssetId,
        amount: Amount,
    ) {
        let reference = transaction_id.0;
        if transaction_id.0 == 0 {
            events.push(reject(RejectReason::InvalidTransactionId, reference));
            return;
        }
        // A retry gets the first answer back before anything else is looked at.
        if let Some(first) = self.transactions.get(&transaction_id) {
            let same = first.kind == kind
                && first.debit == debit
                && first.credit == credit
                && first.asset == asset
                && first.amount == amount;
            events.push(if same {
                Event::TransactionDuplicate { transaction_id, original_seq: first.seq }
            } else {
                reject(RejectReason::TransactionIdReused, reference)
            });
            return;
        }
        if let Err(reason) = self.validate_transaction(kind, debit, credit, asset, amount) {
            events.push(reject(reason, reference));
            return;
        }
        let record = RefTransaction { kind, debit, credit, asset, amount, seq: self.seq };
        self.transactions.insert(transaction_id, record);
        let (from, to) = ((debit, Bucket::Available), (credit, Bucket::Available));
        self.leg(events, kind, asset, from, to, amount.0, OrderId(0), transaction_id);
    }

    fn validate_transaction(
        &self,
        kind: LegKind,
        debit: AccountId,
        credit: AccountId,
        asset: AssetId,
        amount: Amount,
    ) -> Result<(), RejectReason> {
        let world = AccountId::WORLD;
        let names_world = match kind {
            LegKind::Deposit => credit == world,
            LegKind::Withdrawal => debit == world,
            _ => debit == world || credit == world,
        };
        if names_world {
            return Err(RejectReason::WorldAccount);
        }
        for account in [debit, credit] {
            if account != world && !self.accounts.contains(&account) {
                return Err(RejectReason::UnknownAccount);
            }
        }
        if debit == credit {
            return Err(RejectReason::SameAccount);
        }
        if !self.assets.contains_key(&asset) {
            return Err(RejectReason::UnknownAsset);
        }
        if amount.0 == 0 {
            return Err(RejectReason::InvalidAmount);
        }
        if debit != world && self.balance(debit, asset).0 < amount.0 {
            return Err(RejectReason::InsufficientFunds);
        }
        let signed = i128::try_from(amount.0).ok();
        if debit == world && signed.and_then(|a| self.world_balance(asset).checked_sub(a)).is_none()
        {
            return Err(RejectReason::BalanceOverflow);
        }
        if credit != world {
            let (available, held) = self.balance(credit, asset);
            if available.checked_add(amount.0).and_then(|v| v.checked_add(held)).is_none() {
                return Err(RejectReason::BalanceOverflow);
            }
        }
        if self.transactions.len() >= self.config.transactions_max as usize {
            return Err(RejectReason::TransactionsCapacityReached);
        }
        Ok(())
    }
}

fn reject(reason: RejectReason, reference: u128) -> Event {
    Event::Rejected { reason, reference }
}

impl crate::workload::Market for Reference {
    fn live_orders(&self) -> Vec<OrderView> {
        let mut ids = self.live_order_ids();
        // Ascending ids keep the workload's choices independent of this model's storage order.
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.order(id)).collect()
    }

    fn reference_price(&self, instrument: InstrumentId) -> Option<Price> {
        Reference::reference_price(self, instrument)
    }
}
