//! A small driver for the engine's unit-style integration tests: it sequences commands, checks
//! every invariant after each one, and offers terse builders for the common commands.

#![allow(dead_code)] // Each test binary uses a different subset.

use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, Engine, EngineConfig, Event, InstrumentId,
    InstrumentSpec, NewOrder, OrderId, OrderType, Price, Quantity, SelfTradePrevention, Side,
    TimeInForce, TransactionId,
};

pub const BTC: AssetId = AssetId(0);
pub const USD: AssetId = AssetId(1);
pub const BTC_USD: InstrumentId = InstrumentId(0);
pub const FEES: AccountId = AccountId(0);
pub const ALICE: AccountId = AccountId(1);
pub const BOB: AccountId = AccountId(2);
pub const CAROL: AccountId = AccountId(3);

/// BTC/USD: a lot is 1,000 satoshi, a tick of one lot is one cent, the band is ±10% around
/// 10,000 ticks, the maker pays 10 bps and the taker 20 bps.
pub fn btc_usd() -> InstrumentSpec {
    InstrumentSpec {
        instrument: BTC_USD,
        base_asset: BTC,
        quote_asset: USD,
        tick_size: Price(1),
        lot_size: Quantity(1),
        quantity_min: Quantity(1),
        quantity_max: Quantity(1_000_000),
        base_per_lot: 1_000,
        quote_per_tick_lot: 1,
        reference_price: Price(10_000),
        band_bps: 1_000,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
    }
}

pub fn small_config() -> EngineConfig {
    EngineConfig {
        assets_max: 4,
        instruments_max: 4,
        accounts_max: 8,
        orders_max: 64,
        levels_max: 16,
        orders_per_account_max: 16,
        transactions_max: 64,
        fee_account: FEES,
    }
}

pub struct Harness {
    pub engine: Engine,
    seq: u64,
    next_transaction: u128,
}

impl Harness {
    /// An engine with BTC, USD, BTC/USD and Alice, Bob and Carol, each funded with 10 BTC and
    /// $100,000.
    pub fn funded() -> Harness {
        Harness::funded_with(small_config(), btc_usd())
    }

    pub fn funded_with(config: EngineConfig, spec: InstrumentSpec) -> Harness {
        let mut harness =
            Harness { engine: Engine::new(config), seq: 0, next_transaction: 1 << 100 };
        harness.ok(CommandBody::AddAsset { asset: BTC, scale: 8 });
        harness.ok(CommandBody::AddAsset { asset: USD, scale: 2 });
        harness.ok(CommandBody::AddInstrument(spec));
        for account in [ALICE, BOB, CAROL] {
            harness.ok(CommandBody::CreateAccount { account });
            harness.deposit(account, BTC, 1_000_000_000);
            harness.deposit(account, USD, 10_000_000);
        }
        harness
    }

    /// Handles one command and checks every invariant afterwards.
    pub fn run(&mut self, body: CommandBody) -> Vec<Event> {
        self.seq += 1;
        let command = Command { seq: self.seq, timestamp_ns: self.seq * 1_000, body };
        let mut events = Vec::new();
        self.engine.handle(&command, &mut events);
        self.engine.check_invariants();
        events
    }

    /// Handles a command that must not be rejected.
    pub fn ok(&mut self, body: CommandBody) -> Vec<Event> {
        let events = self.run(body);
        assert!(
            !events.iter().any(|event| matches!(event, Event::Rejected { .. })),
            "unexpected reject: {events:?}"
        );
        events
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn deposit(&mut self, account: AccountId, asset: AssetId, amount: u128) {
        self.next_transaction += 1;
        let transaction_id = TransactionId(self.next_transaction);
        self.ok(CommandBody::Deposit { transaction_id, account, asset, amount: Amount(amount) });
    }

    pub fn place(&mut self, order: NewOrder) -> Vec<Event> {
        self.run(CommandBody::NewOrder(order))
    }

    pub fn cancel(&mut self, order_id: u64, account: AccountId) -> Vec<Event> {
        self.run(CommandBody::CancelOrder { order_id: OrderId(order_id), account })
    }

    pub fn amend(
        &mut self,
        order_id: u64,
        account: AccountId,
        price: u64,
        quantity: u64,
    ) -> Vec<Event> {
        self.run(CommandBody::AmendOrder {
            order_id: OrderId(order_id),
            account,
            price: Price(price),
            quantity: Quantity(quantity),
        })
    }

    pub fn available(&self, account: AccountId, asset: AssetId) -> u128 {
        self.engine.balance(account, asset).available.0
    }

    pub fn held(&self, account: AccountId, asset: AssetId) -> u128 {
        self.engine.balance(account, asset).held.0
    }
}

/// A GTC limit order with no self-trade prevention.
pub fn limit(order_id: u64, account: AccountId, side: Side, price: u64, quantity: u64) -> NewOrder {
    NewOrder {
        order_id: OrderId(order_id),
        account,
        instrument: BTC_USD,
        side,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        self_trade_prevention: SelfTradePrevention::None,
        price: Price(price),
        quantity: Quantity(quantity),
        quote_budget: Amount(0),
    }
}

pub fn with_tif(order: NewOrder, time_in_force: TimeInForce) -> NewOrder {
    NewOrder { time_in_force, ..order }
}

/// An IOC market sell, or with a budget, a market buy.
pub fn market(
    order_id: u64,
    account: AccountId,
    side: Side,
    quantity: u64,
    budget: u128,
) -> NewOrder {
    NewOrder {
        order_type: OrderType::Market,
        time_in_force: TimeInForce::Ioc,
        price: Price(0),
        quote_budget: Amount(budget),
        ..limit(order_id, account, side, 0, quantity)
    }
}

pub fn rejected(events: &[Event]) -> Option<engine::RejectReason> {
    match events {
        [Event::Rejected { reason, .. }] => Some(*reason),
        _ => None,
    }
}

pub fn trades(events: &[Event]) -> Vec<(u64, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Trade { maker_order_id, taker_order_id, price, quantity, .. } => {
                Some((maker_order_id.0, taker_order_id.0, price.0, quantity.0))
            }
            _ => None,
        })
        .collect()
}

pub fn cancels(events: &[Event]) -> Vec<(u64, u64, engine::CancelReason)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::OrderCancelled { order_id, leaves, reason } => {
                Some((order_id.0, leaves.0, *reason))
            }
            _ => None,
        })
        .collect()
}
