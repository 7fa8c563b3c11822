//! Random but mostly meaningful command streams for the differential, invariant, determinism and
//! allocation tests.
//!
//! Generation happens in two steps. Proptest generates abstract [`Op`]s ("cancel the n-th live
//! order", "buy a few ticks above the reference price"), which shrink well; a [`Workload`] then
//! resolves each op into a concrete [`Command`] against the current state of a [`Market`] (the
//! reference or the engine). Resolution is deterministic, so the same ops against the same start
//! always give the same commands. Most ops resolve to valid, interesting commands (prices near
//! the reference so orders cross, ids of live orders for cancels and amends); a steady minority
//! is deliberately malformed or aimed at someone else's order, so every reject path runs too.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, Engine, EngineConfig, InstrumentId,
    InstrumentSpec, NewOrder, OrderId, OrderType, OrderView, Price, Quantity, SelfTradePrevention,
    Side, TimeInForce, TransactionId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// An order id chosen for a new order.
#[derive(Clone, Copy, Debug)]
pub enum IdChoice {
    /// Never used before.
    Fresh,
    /// The id of some live order: a duplicate.
    Live(u16),
    /// A recently used id that may no longer be live: reusing a dead id is allowed.
    Recent(u8),
    /// Zero, which is reserved.
    Zero,
}

/// Which order a cancel or amend names.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Pick among live orders (when any exist), or else name an id that is not live.
    pub live: bool,
    pub pick: u16,
    /// Send it from an account that does not own the order.
    pub wrong_account: bool,
}

/// How a new order is deliberately broken, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    None,
    PriceOffTick,
    PriceZero,
    PriceFarAway,
    QuantityZero,
    QuantityOffLot,
    QuantityTooLarge,
    UnknownInstrument,
    UnknownAccount,
    WorldAccount,
    /// A budget on an order that is not a market buy, or none on a market buy.
    WrongBudget,
    /// A market order with GTC or DAY.
    MarketRests,
}

#[derive(Clone, Debug)]
pub enum Op {
    Limit {
        account: u8,
        instrument: u8,
        side: Side,
        time_in_force: TimeInForce,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
        /// Ticks away from the reference price, towards the other side when positive.
        offset: i8,
        lots: u8,
        id: IdChoice,
        defect: Defect,
    },
    Market {
        account: u8,
        instrument: u8,
        side: Side,
        fill_or_kill: bool,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
        lots: u8,
        /// The quote budget of a market buy, in percent of its notional at the reference price.
        budget_percent: u8,
        id: IdChoice,
        defect: Defect,
    },
    Cancel {
        target: Target,
    },
    Amend {
        target: Target,
        /// Ticks to move the price by; zero keeps it.
        offset: i8,
        /// Lots to add to (or take from) the total quantity.
        lots: i8,
    },
    MassCancel {
        account: Option<u8>,
        instrument: Option<u8>,
    },
    EndOfDay {
        instrument: Option<u8>,
    },
    Halt {
        instrument: u8,
        halted: bool,
    },
    Deposit {
        account: u8,
        asset: u8,
        amount: u32,
    },
    Withdraw {
        account: u8,
        asset: u8,
        amount: u32,
    },
    Transfer {
        from: u8,
        to: u8,
        asset: u8,
        amount: u32,
    },
    /// Sends an earlier wallet command again, unchanged or with one field changed.
    Retry {
        pick: u16,
        change: Option<u8>,
    },
    CreateAccount {
        account: u8,
    },
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn self_trade_prevention() -> impl Strategy<Value = SelfTradePrevention> {
    prop_oneof![
        3 => Just(SelfTradePrevention::None),
        1 => Just(SelfTradePrevention::CancelResting),
        1 => Just(SelfTradePrevention::CancelIncoming),
        1 => Just(SelfTradePrevention::CancelBoth),
    ]
}

fn id_choice() -> impl Strategy<Value = IdChoice> {
    prop_oneof![
        40 => Just(IdChoice::Fresh),
        1 => any::<u16>().prop_map(IdChoice::Live),
        1 => (0u8..20).prop_map(IdChoice::Recent),
        1 => Just(IdChoice::Zero),
    ]
}

fn defect() -> impl Strategy<Value = Defect> {
    prop_oneof![
        60 => Just(Defect::None),
        1 => Just(Defect::PriceOffTick),
        1 => Just(Defect::PriceZero),
        1 => Just(Defect::PriceFarAway),
        1 => Just(Defect::QuantityZero),
        1 => Just(Defect::QuantityOffLot),
        1 => Just(Defect::QuantityTooLarge),
        1 => Just(Defect::UnknownInstrument),
        1 => Just(Defect::UnknownAccount),
        1 => Just(Defect::WorldAccount),
        1 => Just(Defect::WrongBudget),
        1 => Just(Defect::MarketRests),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    (prop::bool::weighted(0.9), any::<u16>(), prop::bool::weighted(0.05))
        .prop_map(|(live, pick, wrong_account)| Target { live, pick, wrong_account })
}

fn optional(values: std::ops::Range<u8>) -> impl Strategy<Value = Option<u8>> {
    prop_oneof![1 => Just(None), 3 => values.prop_map(Some)]
}

/// One operation. Accounts, instruments and assets are raw small numbers; the workload maps
/// them onto what exists, with a few out-of-range values left to exercise unknown-id rejects.
pub fn op() -> BoxedStrategy<Op> {
    let limit = (
        (0u8..8, 0u8..4, side()),
        prop_oneof![
            4 => Just(TimeInForce::Gtc),
            2 => Just(TimeInForce::Day),
            2 => Just(TimeInForce::Ioc),
            1 => Just(TimeInForce::Fok),
        ],
        (prop::bool::weighted(0.1), self_trade_prevention()),
        (-6i8..=6, 1u8..=6, id_choice(), defect()),
    )
        .prop_map(
            |(
                (account, instrument, side),
                time_in_force,
                (post_only, self_trade_prevention),
                (offset, lots, id, defect),
            )| Op::Limit {
                account,
                instrument,
                side,
                time_in_force,
                post_only,
                self_trade_prevention,
                offset,
                lots,
                id,
                defect,
            },
        );
    let market = (
        (0u8..8, 0u8..4, side()),
        (prop::bool::weighted(0.3), prop::bool::weighted(0.02), self_trade_prevention()),
        (1u8..=8, 0u8..=250, id_choice(), defect()),
    )
        .prop_map(
            |(
                (account, instrument, side),
                (fill_or_kill, post_only, self_trade_prevention),
                (lots, budget_percent, id, defect),
            )| Op::Market {
                account,
                instrument,
                side,
                fill_or_kill,
                post_only,
                self_trade_prevention,
                lots,
                budget_percent,
                id,
                defect,
            },
        );
    let amend = (
        target(),
        prop_oneof![2 => Just(0i8), 1 => -4i8..=4, 1 => Just(100i8)],
        prop_oneof![2 => -3i8..=-1, 1 => Just(0i8), 2 => 1i8..=3, 1 => Just(-100i8)],
    )
        .prop_map(|(target, offset, lots)| Op::Amend { target, offset, lots });
    let amount = prop_oneof![1 => Just(0u32), 30 => 1u32..400_000];
    prop_oneof![
        40 => limit.boxed(),
        9 => market.boxed(),
        12 => target().prop_map(|target| Op::Cancel { target }).boxed(),
        12 => amend.boxed(),
        2 => (optional(0..8), optional(0..4))
            .prop_map(|(account, instrument)| Op::MassCancel { account, instrument })
            .boxed(),
        1 => optional(0..4).prop_map(|instrument| Op::EndOfDay { instrument }).boxed(),
        2 => (0u8..4, prop::bool::weighted(0.12))
            .prop_map(|(instrument, halted)| Op::Halt { instrument, halted })
            .boxed(),
        5 => (0u8..8, 0u8..4, amount.clone())
            .prop_map(|(account, asset, amount)| Op::Deposit { account, asset, amount })
            .boxed(),
        3 => (0u8..8, 0u8..4, amount.clone())
            .prop_map(|(account, asset, amount)| Op::Withdraw { account, asset, amount })
            .boxed(),
        5 => (0u8..8, 0u8..8, 0u8..4, amount)
            .prop_map(|(from, to, asset, amount)| Op::Transfer { from, to, asset, amount })
            .boxed(),
        4 => (any::<u16>(), optional(0..5)).prop_map(|(pick, change)| Op::Retry { pick, change })
            .boxed(),
        1 => (0u8..10).prop_map(|account| Op::CreateAccount { account }).boxed(),
    ]
    .boxed()
}

/// Draws `count` ops from a seeded generator: the long runs use this instead of proptest's
/// runner, and get the same distribution.
pub fn seeded_ops(seed: u64, count: usize) -> Vec<Op> {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = op();
    (0..count).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
}

// ---------------------------------------------------------------------------------------------
// The world the workload trades in.

pub const USD: AssetId = AssetId(0);
pub const BTC: AssetId = AssetId(1);
pub const ETH: AssetId = AssetId(2);
pub const ASSETS: [AssetId; 3] = [USD, BTC, ETH];

/// Three instruments that differ in every parameter that shapes arithmetic: tick and lot sizes,
/// multipliers, bands (one has none), and fees (maker above taker, taker above maker, zero maker).
pub fn instrument_specs() -> [InstrumentSpec; 3] {
    [
        InstrumentSpec {
            instrument: InstrumentId(0),
            base_asset: BTC,
            quote_asset: USD,
            tick_size: Price(5),
            lot_size: Quantity(1),
            quantity_min: Quantity(1),
            quantity_max: Quantity(40),
            base_per_lot: 1_000,
            quote_per_tick_lot: 3,
            reference_price: Price(1_000),
            band_bps: 1_500,
            maker_fee_bps: 10,
            taker_fee_bps: 25,
        },
        InstrumentSpec {
            instrument: InstrumentId(1),
            base_asset: ETH,
            quote_asset: USD,
            tick_size: Price(1),
            lot_size: Quantity(2),
            quantity_min: Quantity(2),
            quantity_max: Quantity(30),
            base_per_lot: 500,
            quote_per_tick_lot: 7,
            reference_price: Price(200),
            band_bps: 0,
            maker_fee_bps: 0,
            taker_fee_bps: 15,
        },
        InstrumentSpec {
            instrument: InstrumentId(2),
            base_asset: ETH,
            quote_asset: BTC,
            tick_size: Price(1),
            lot_size: Quantity(1),
            quantity_min: Quantity(2),
            quantity_max: Quantity(20),
            base_per_lot: 10,
            quote_per_tick_lot: 1,
            reference_price: Price(200),
            band_bps: 1_000,
            maker_fee_bps: 30,
            taker_fee_bps: 5,
        },
    ]
}

/// Small capacities so that every limit is reached now and then.
pub fn small_config(orders_max: u32, per_account: u32, levels_max: u32) -> EngineConfig {
    EngineConfig {
        assets_max: 4,
        instruments_max: 4,
        accounts_max: 12,
        orders_max,
        levels_max,
        orders_per_account_max: per_account,
        transactions_max: 1_000,
        fee_account: AccountId(0),
    }
}

/// What the workload needs to know about the current state to aim its commands.
pub trait Market {
    fn live_orders(&self) -> Vec<OrderView>;
    fn reference_price(&self, instrument: InstrumentId) -> Option<Price>;
}

impl Market for Engine {
    fn live_orders(&self) -> Vec<OrderView> {
        let accounts = (0..self.config().accounts_max).map(AccountId);
        accounts.flat_map(|a| self.account_orders(a)).filter_map(|id| self.order(id)).collect()
    }

    fn reference_price(&self, instrument: InstrumentId) -> Option<Price> {
        Engine::reference_price(self, instrument)
    }
}

/// Turns ops into sequenced commands.
#[derive(Debug)]
pub struct Workload {
    /// Trading accounts are `1..=accounts`; account 0 is the fee account and trades rarely.
    pub accounts: u32,
    pub instruments: u32,
    seq: u64,
    timestamp_ns: u64,
    next_order_id: u64,
    next_transaction_id: u128,
    /// Every wallet command sent so far, for retries.
    wallet_commands: Vec<CommandBody>,
    specs: [InstrumentSpec; 3],
}

impl Workload {
    pub fn new(accounts: u32, instruments: u32) -> Workload {
        Workload::with_specs(accounts, instruments, instrument_specs())
    }

    /// A workload over instruments with other fees, bands or multipliers than the defaults.
    pub fn with_specs(accounts: u32, instruments: u32, specs: [InstrumentSpec; 3]) -> Workload {
        assert!((1..=8).contains(&accounts) && (1..=3).contains(&instruments));
        Workload {
            accounts,
            instruments,
            seq: 0,
            timestamp_ns: 1_700_000_000_000_000_000,
            next_order_id: 1,
            next_transaction_id: 1,
            wallet_commands: Vec::new(),
            specs,
        }
    }

    pub fn command(&mut self, body: CommandBody) -> Command {
        self.seq += 1;
        // Time moves by a varying amount, sometimes not at all, as a sequencer's stamps would.
        self.timestamp_ns += self.seq % 3 * 1_000;
        Command { seq: self.seq, timestamp_ns: self.timestamp_ns, body }
    }

    /// Assets, instruments, accounts and their opening deposits.
    pub fn genesis(&mut self) -> Vec<Command> {
        let mut bodies = Vec::new();
        for (asset, scale) in ASSETS.iter().zip([2u8, 8, 8]) {
            bodies.push(CommandBody::AddAsset { asset: *asset, scale });
        }
        for spec in self.specs.iter().take(self.instruments as usize) {
            bodies.push(CommandBody::AddInstrument(*spec));
        }
        for account in 1..=self.accounts {
            bodies.push(CommandBody::CreateAccount { account: AccountId(account) });
            for (asset, amount) in ASSETS.iter().zip([3_000_000u128, 400_000, 800_000]) {
                let transaction_id = self.fresh_transaction_id();
                let amount = Amount(amount * u128::from(account % 3 + 1) / 2);
                let account = AccountId(account);
                bodies.push(CommandBody::Deposit {
                    transaction_id,
                    account,
                    asset: *asset,
                    amount,
                });
            }
        }
        bodies.into_iter().map(|body| self.command(body)).collect()
    }

    fn fresh_transaction_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_transaction_id);
        self.next_transaction_id += 1;
        id
    }

    /// A trading account: mostly `1..=accounts`, sometimes the fee account, and for raw values
    /// beyond the population an account that was never created.
    fn account(&self, raw: u8) -> AccountId {
        let raw = u32::from(raw);
        if raw == 0 {
            AccountId(0)
        } else if raw <= self.accounts + 1 {
            AccountId((raw - 1) % self.accounts + 1)
        } else {
            AccountId(1 + raw % self.accounts)
        }
    }

    fn instrument(&self, raw: u8) -> InstrumentId {
        InstrumentId(u32::from(raw) % self.instruments)
    }

    fn asset(raw: u8) -> AssetId {
        // Raw 3 names an asset slot that exists in the config but was never added.
        AssetId(u16::from(raw % 4))
    }

    fn order_id(&mut self, choice: IdChoice, live: &[OrderView]) -> OrderId {
        match choice {
            IdChoice::Live(pick) if !live.is_empty() => {
                live[usize::from(pick) % live.len()].order_id
            }
            IdChoice::Recent(back) if self.next_order_id > u64::from(back) + 1 => {
                OrderId(self.next_order_id - 1 - u64::from(back))
            }
            IdChoice::Zero => OrderId(0),
            _ => {
                let id = OrderId(self.next_order_id);
                self.next_order_id += 1;
                id
            }
        }
    }

    /// Resolves one op against the current state.
    pub fn resolve(&mut self, op: &Op, market: &impl Market) -> Command {
        let body = self.body(op, market);
        if matches!(
            body,
            CommandBody::Deposit { .. }
                | CommandBody::Withdraw { .. }
                | CommandBody::Transfer { .. }
        ) {
            self.wallet_commands.push(body);
        }
        self.command(body)
    }

    // tidy: long function, one flat match with an arm per generated operation.
    fn body(&mut self, op: &Op, market: &impl Market) -> CommandBody {
        let specs = self.specs;
        match *op {
            Op::Limit {
                account,
                instrument,
                side,
                time_in_force,
                post_only,
                self_trade_prevention,
                offset,
                lots,
                id,
                defect,
            } => {
                let instrument = self.instrument(instrument);
                let spec = &specs[instrument.0 as usize];
                let reference = anchor(market, spec);
                // Positive offsets lean towards the other side, so buys above the reference and
                // sells below it tend to cross resting orders.
                let ticks = i64::from(offset) * i64::try_from(spec.tick_size.0).unwrap();
                let signed = match side {
                    Side::Buy => i64::try_from(reference.0).unwrap() + ticks,
                    Side::Sell => i64::try_from(reference.0).unwrap() - ticks,
                };
                let price = Price(u64::try_from(signed.max(1)).unwrap());
                let price = Price(price.0.div_ceil(spec.tick_size.0) * spec.tick_size.0);
                let quantity = Quantity(u64::from(lots) * spec.lot_size.0).max(spec.quantity_min);
                let live = market.live_orders();
                let order = NewOrder {
                    order_id: self.order_id(id, &live),
                    account: self.account(account),
                    instrument,
                    side,
                    order_type: OrderType::Limit,
                    time_in_force,
                    post_only,
                    self_trade_prevention,
                    price,
                    quantity,
                    quote_budget: Amount::ZERO,
                };
                CommandBody::NewOrder(damage(order, defect, spec))
            }
            Op::Market {
                account,
                instrument,
                side,
                fill_or_kill,
                post_only,
                self_trade_prevention,
                lots,
                budget_percent,
                id,
                defect,
            } => {
                let instrument = self.instrument(instrument);
                let spec = &specs[instrument.0 as usize];
                let reference = anchor(market, spec);
                let quantity = Quantity(u64::from(lots) * spec.lot_size.0).max(spec.quantity_min);
                let value = u128::from(reference.0)
                    * u128::from(quantity.0)
                    * u128::from(spec.quote_per_tick_lot);
                // Every third buy gets exactly what its lots cost at the best ask, fee included:
                // the boundary where fee rounding decides whether the last lot is affordable.
                let best_ask = market
                    .live_orders()
                    .iter()
                    .filter(|order| order.instrument == instrument && order.side == Side::Sell)
                    .map(|order| order.price)
                    .min();
                let quote_budget = match (side, best_ask) {
                    (Side::Sell, _) => Amount::ZERO,
                    (Side::Buy, Some(ask)) if budget_percent % 3 == 0 => {
                        let value = u128::from(ask.0)
                            * u128::from(quantity.0)
                            * u128::from(spec.quote_per_tick_lot);
                        let fee = value * u128::from(spec.taker_fee_bps) / 10_000;
                        Amount(value + fee - u128::from(budget_percent % 2))
                    }
                    (Side::Buy, _) => Amount((value * u128::from(budget_percent) / 100).max(1)),
                };
                let time_in_force = if fill_or_kill { TimeInForce::Fok } else { TimeInForce::Ioc };
                let live = market.live_orders();
                let order = NewOrder {
                    order_id: self.order_id(id, &live),
                    account: self.account(account),
                    instrument,
                    side,
                    order_type: OrderType::Market,
                    time_in_force,
                    post_only,
                    self_trade_prevention,
                    // Ignored for market orders; a nonzero value checks that it is.
                    price: Price(u64::from(budget_percent)),
                    quantity,
                    quote_budget,
                };
                CommandBody::NewOrder(damage(order, defect, spec))
            }
            Op::Cancel { target } => {
                let (order_id, account) = self.aim(target, market);
                CommandBody::CancelOrder { order_id, account }
            }
            Op::Amend { target, offset, lots } => {
                let live = market.live_orders();
                let (order_id, account) = self.aim(target, market);
                let order = live.iter().find(|order| order.order_id == order_id);
                let (price, quantity) = match order {
                    Some(order) => {
                        let spec = &specs[order.instrument.0 as usize];
                        let tick = i64::try_from(spec.tick_size.0).unwrap();
                        let price =
                            i64::try_from(order.price.0).unwrap() + i64::from(offset) * tick;
                        let lot = i64::try_from(spec.lot_size.0).unwrap();
                        let quantity =
                            i64::try_from(order.quantity.0).unwrap() + i64::from(lots) * lot;
                        (price.max(0), quantity.max(0))
                    }
                    None => (100, 4),
                };
                CommandBody::AmendOrder {
                    order_id,
                    account,
                    price: Price(u64::try_from(price).unwrap()),
                    quantity: Quantity(u64::try_from(quantity).unwrap()),
                }
            }
            Op::MassCancel { account, instrument } => CommandBody::MassCancel {
                // Raw 7 names an account that (most likely) was never created.
                account: account
                    .map(|raw| if raw == 7 { AccountId(11) } else { self.account(raw) }),
                // Raw 3 is an instrument slot that was never added.
                instrument: instrument.map(|raw| InstrumentId(u32::from(raw))),
            },
            Op::EndOfDay { instrument } => CommandBody::EndOfDay {
                instrument: instrument.map(|raw| InstrumentId(u32::from(raw))),
            },
            Op::Halt { instrument, halted } => CommandBody::SetInstrumentHalted {
                instrument: InstrumentId(u32::from(instrument)),
                halted,
            },
            Op::Deposit { account, asset, amount } => CommandBody::Deposit {
                transaction_id: self.fresh_transaction_id(),
                account: self.wallet_account(account),
                asset: Self::asset(asset),
                amount: Amount(u128::from(amount) * 4),
            },
            Op::Withdraw { account, asset, amount } => CommandBody::Withdraw {
                transaction_id: self.fresh_transaction_id(),
                account: self.wallet_account(account),
                asset: Self::asset(asset),
                amount: Amount(u128::from(amount)),
            },
            Op::Transfer { from, to, asset, amount } => CommandBody::Transfer {
                transaction_id: self.fresh_transaction_id(),
                from: self.account(from),
                to: self.wallet_account(to),
                asset: Self::asset(asset),
                amount: Amount(u128::from(amount)),
            },
            Op::Retry { pick, change } => self.retry(pick, change),
            Op::CreateAccount { account } => CommandBody::CreateAccount {
                // Some of these exist, some are new, and 12 and 13 lie beyond `accounts_max`.
                account: AccountId(self.accounts + u32::from(account)),
            },
        }
    }

    /// A live order and its owner, or an id that is not live.
    fn aim(&self, target: Target, market: &impl Market) -> (OrderId, AccountId) {
        let live = market.live_orders();
        if target.live && !live.is_empty() {
            let order = &live[usize::from(target.pick) % live.len()];
            let account = if target.wrong_account {
                AccountId(order.account.0 % self.accounts + 1)
            } else {
                order.account
            };
            return (order.order_id, account);
        }
        let id = OrderId(u64::from(target.pick) % (self.next_order_id + 5));
        (id, self.account(u8::try_from(target.pick % 8).unwrap()))
    }

    fn retry(&mut self, pick: u16, change: Option<u8>) -> CommandBody {
        if self.wallet_commands.is_empty() {
            return CommandBody::Deposit {
                transaction_id: TransactionId(0),
                account: AccountId(1),
                asset: USD,
                amount: Amount(1),
            };
        }
        let mut body = self.wallet_commands[usize::from(pick) % self.wallet_commands.len()];
        let Some(change) = change else { return body };
        // A deposit sent again as a withdrawal with the same id and fields: a different kind.
        if let (4, CommandBody::Deposit { transaction_id, account, asset, amount }) = (change, body)
        {
            return CommandBody::Withdraw { transaction_id, account, asset, amount };
        }
        match &mut body {
            CommandBody::Deposit { account, asset, amount, transaction_id }
            | CommandBody::Withdraw { account, asset, amount, transaction_id } => match change {
                0 => *account = AccountId(account.0 % self.accounts + 1),
                1 => *asset = AssetId((asset.0 + 1) % 3),
                2 => *amount = Amount(amount.0 + 1),
                // The same fields under a new id: a second, independent transaction.
                _ => *transaction_id = self.fresh_transaction_id(),
            },
            CommandBody::Transfer { from, to, asset, amount, transaction_id } => match change {
                0 => *from = AccountId(from.0 % self.accounts + 1),
                1 => *to = AccountId(to.0 % self.accounts + 1),
                2 => *asset = AssetId((asset.0 + 1) % 3),
                3 => *amount = Amount(amount.0 / 2),
                _ => *transaction_id = self.fresh_transaction_id(),
            },
            _ => unreachable!("only wallet commands are remembered"),
        }
        body
    }

    /// A wallet account: like a trading account, except that raw 7 names the world account,
    /// which wallet commands may not name directly.
    fn wallet_account(&self, raw: u8) -> AccountId {
        if raw == 7 {
            AccountId::WORLD
        } else {
            self.account(raw)
        }
    }
}

/// The price new orders are placed around: halfway between the last trade and the instrument's
/// opening price. Centring on the last trade alone makes prices a random walk that, over a long
/// stream, drifts far enough (to a few ticks, where the band admits one price, or to tens of
/// thousands) that most orders are rejected; the pull back keeps long streams trading.
fn anchor(market: &impl Market, spec: &InstrumentSpec) -> Price {
    let last = market.reference_price(spec.instrument).unwrap_or(spec.reference_price);
    let middle = (last.0 + spec.reference_price.0) / 2;
    Price(middle / spec.tick_size.0 * spec.tick_size.0)
}

/// Breaks a valid order in the way `defect` names.
fn damage(mut order: NewOrder, defect: Defect, spec: &InstrumentSpec) -> NewOrder {
    match defect {
        Defect::None => {}
        Defect::PriceOffTick => order.price = Price(order.price.0 + spec.tick_size.0 / 2 + 1),
        Defect::PriceZero => order.price = Price(0),
        Defect::PriceFarAway => order.price = Price(order.price.0 * 2),
        Defect::QuantityZero => order.quantity = Quantity(0),
        Defect::QuantityOffLot => order.quantity = Quantity(order.quantity.0 + 1),
        Defect::QuantityTooLarge => {
            order.quantity = Quantity(spec.quantity_max.0 + spec.lot_size.0)
        }
        Defect::UnknownInstrument => order.instrument = InstrumentId(3),
        Defect::UnknownAccount => order.account = AccountId(11),
        Defect::WorldAccount => order.account = AccountId::WORLD,
        Defect::WrongBudget => {
            order.quote_budget = Amount(if order.quote_budget.0 == 0 { 1_000 } else { 0 });
        }
        Defect::MarketRests => order.time_in_force = TimeInForce::Day,
    }
    order
}
