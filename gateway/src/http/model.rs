//! The API's read model: what queries answer from, since the engine belongs to the loop thread.
//!
//! It starts from the recovered engine's state ([`ReadModel::from_engine`]) and then follows the
//! output ring: every event, with the command that caused it, goes through [`ReadModel::apply`].
//! Balances change only by ledger legs, exactly as in the engine, so the two agree at every
//! sequence number the model has reached.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use engine::{
    AccountId, Bucket, CancelReason, CommandBody, Engine, Event, LegKind, OrderType, RejectReason,
    Side, TimeInForce,
};

use super::{AssetInfo, InstrumentInfo};

/// One account's balance of one asset, in minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalanceRow {
    pub available: u128,
    pub held: u128,
}

/// Where an order is in its life, as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    New,
    PartiallyFilled,
    Filled,
    Cancelled,
    Expired,
    Rejected,
}

impl OrderStatus {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "new",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Rejected => "rejected",
        }
    }

    /// No event changes a final order any more.
    pub fn is_final(self) -> bool {
        !matches!(self, OrderStatus::New | OrderStatus::PartiallyFilled)
    }
}

/// An order as the read model knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: u64,
    pub account: u32,
    pub instrument: u32,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    /// Limit price in ticks.
    pub price_ticks: u64,
    /// Total quantity in lots, filled part included.
    pub quantity_lots: u64,
    /// Lots still open; zero once the order is final.
    pub leaves_lots: u64,
    pub filled_lots: u64,
    pub status: OrderStatus,
    pub reject_reason: Option<RejectReason>,
    /// The sequence number of the last event that changed it.
    pub seq: u64,
}

/// Counters for `/metrics`, all since the model was built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub commands: u64,
    pub events: u64,
    pub orders_accepted: u64,
    pub trades: u64,
    pub cancels: u64,
    /// Rejects by reason code.
    pub rejects: BTreeMap<u16, u64>,
    /// Executed wallet legs by kind: deposits, withdrawals, transfers.
    pub deposits: u64,
    pub withdrawals: u64,
    pub transfers: u64,
    pub transaction_duplicates: u64,
}

/// Balances, orders and counters, as of [`ReadModel::seq`].
#[derive(Clone, Debug)]
pub struct ReadModel {
    seq: u64,
    accounts: BTreeSet<u32>,
    balances: BTreeMap<(u32, u16), BalanceRow>,
    /// Sized up front for the finished window and as many live orders: growing it while the
    /// node serves rehashes every entry on the HTTP pump's thread, which shares a core with the
    /// FIX thread, and touches fresh memory (costly on this kind of VM).
    orders: FxHashMap<u64, OrderRecord>,
    /// Final orders, oldest first; beyond `finished_max` the oldest are forgotten.
    finished: VecDeque<u64>,
    finished_max: usize,
    halted: BTreeMap<u32, bool>,
    counters: Counters,
}

impl ReadModel {
    /// An empty model at seq zero (an engine before genesis).
    pub fn new(finished_max: usize) -> ReadModel {
        ReadModel {
            seq: 0,
            accounts: BTreeSet::new(),
            balances: BTreeMap::new(),
            orders: FxHashMap::with_capacity_and_hasher(
                finished_max.saturating_mul(2),
                Default::default(),
            ),
            finished: VecDeque::new(),
            finished_max,
            halted: BTreeMap::new(),
            counters: Counters::default(),
        }
    }

    /// The state of `engine`: every existing account's balance of every listed asset, every
    /// live order, every listed instrument's halt flag. Final orders from before are unknown.
    pub fn from_engine(
        engine: &Engine,
        assets: &[AssetInfo],
        instruments: &[InstrumentInfo],
        finished_max: usize,
    ) -> ReadModel {
        let mut model = ReadModel::new(finished_max);
        model.seq = engine.seq();
        for account in (0..engine.config().accounts_max).map(AccountId) {
            if !engine.account_exists(account) {
                continue;
            }
            model.accounts.insert(account.0);
            for asset in assets {
                let balance = engine.balance(account, asset.id);
                let row = BalanceRow { available: balance.available.0, held: balance.held.0 };
                model.balances.insert((account.0, asset.id.0), row);
            }
            for order_id in engine.account_orders(account) {
                let Some(view) = engine.order(order_id) else { continue };
                let record = OrderRecord {
                    order_id: order_id.0,
                    account: account.0,
                    instrument: view.instrument.0,
                    side: view.side,
                    order_type: view.order_type,
                    time_in_force: view.time_in_force,
                    price_ticks: view.price.0,
                    quantity_lots: view.quantity.0,
                    leaves_lots: view.leaves.0,
                    filled_lots: view.filled().0,
                    status: if view.leaves == view.quantity {
                        OrderStatus::New
                    } else {
                        OrderStatus::PartiallyFilled
                    },
                    reject_reason: None,
                    seq: engine.seq(),
                };
                model.orders.insert(order_id.0, record);
            }
        }
        for instrument in instruments {
            model.halted.insert(instrument.id.0, engine.is_halted(instrument.id));
        }
        model
    }

    /// The sequence number of the last event (or echoed command) applied.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn account_exists(&self, account: u32) -> bool {
        self.accounts.contains(&account)
    }

    /// The account's balance of `asset`; zero when it never had any.
    pub fn balance(&self, account: u32, asset: u16) -> BalanceRow {
        self.balances.get(&(account, asset)).copied().unwrap_or_default()
    }

    pub fn order(&self, order_id: u64) -> Option<&OrderRecord> {
        self.orders.get(&order_id)
    }

    /// Whether the instrument is halted; `None` if the model never heard of it.
    pub fn halted(&self, instrument: u32) -> Option<bool> {
        self.halted.get(&instrument).copied()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Orders the model remembers, live and final.
    pub fn orders_known(&self) -> usize {
        self.orders.len()
    }

    /// Notes a sequenced command (the echo that precedes its events).
    pub fn apply_command(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
        self.counters.commands += 1;
    }

    /// Applies one event of command `seq`; `command` is that command when known (it decides
    /// what a reject refers to).
    // tidy: long function, one flat match with an arm per event variant.
    pub fn apply(&mut self, seq: u64, command: Option<&CommandBody>, event: &Event) {
        self.seq = self.seq.max(seq);
        self.counters.events += 1;
        match *event {
            Event::Ledger {
                kind,
                asset,
                debit_account,
                debit_bucket,
                credit_account,
                credit_bucket,
                amount,
                ..
            } => {
                self.move_value(debit_account, debit_bucket, asset.0, amount.0, false);
                self.move_value(credit_account, credit_bucket, asset.0, amount.0, true);
                match kind {
                    LegKind::Deposit => self.counters.deposits += 1,
                    LegKind::Withdrawal => self.counters.withdrawals += 1,
                    LegKind::Transfer => self.counters.transfers += 1,
                    _ => {}
                }
            }
            Event::OrderAccepted {
                order_id,
                account,
                instrument,
                side,
                order_type,
                time_in_force,
                price,
                quantity,
                ..
            } => {
                self.counters.orders_accepted += 1;
                let record = OrderRecord {
                    order_id: order_id.0,
                    account: account.0,
                    instrument: instrument.0,
                    side,
                    order_type,
                    time_in_force,
                    price_ticks: price.0,
                    quantity_lots: quantity.0,
                    leaves_lots: quantity.0,
                    filled_lots: 0,
                    status: OrderStatus::New,
                    reject_reason: None,
                    seq,
                };
                self.orders.insert(order_id.0, record);
            }
            Event::Trade {
                maker_order_id,
                taker_order_id,
                quantity,
                maker_leaves,
                taker_leaves,
                ..
            } => {
                self.counters.trades += 1;
                self.fill(maker_order_id.0, quantity.0, maker_leaves.0, seq);
                self.fill(taker_order_id.0, quantity.0, taker_leaves.0, seq);
            }
            Event::OrderCancelled { order_id, reason, .. } => {
                self.counters.cancels += 1;
                let status = match reason {
                    CancelReason::Expired => OrderStatus::Expired,
                    _ => OrderStatus::Cancelled,
                };
                if let Some(order) = self.orders.get_mut(&order_id.0) {
                    order.leaves_lots = 0;
                    order.status = status;
                    order.seq = seq;
                    self.finish(order_id.0);
                }
            }
            Event::OrderAmended { order_id, price, quantity, leaves, .. } => {
                if let Some(order) = self.orders.get_mut(&order_id.0) {
                    order.price_ticks = price.0;
                    order.quantity_lots = quantity.0;
                    order.leaves_lots = leaves.0;
                    order.seq = seq;
                }
            }
            Event::Rejected { reason, .. } => {
                *self.counters.rejects.entry(reason.code()).or_default() += 1;
                if let Some(CommandBody::NewOrder(order)) = command {
                    self.reject_order(order, reason, seq);
                }
            }
            Event::TransactionDuplicate { .. } => self.counters.transaction_duplicates += 1,
            Event::AccountCreated { account } => {
                self.accounts.insert(account.0);
            }
            Event::InstrumentHalted { instrument, halted } => {
                self.halted.insert(instrument.0, halted);
            }
            Event::InstrumentAdded(spec) => {
                self.halted.entry(spec.instrument.0).or_insert(false);
            }
            Event::OrderRested { .. } | Event::AssetAdded { .. } => {}
        }
    }

    /// One side of a ledger leg. The world account has no balance here: it is the outside.
    fn move_value(
        &mut self,
        account: AccountId,
        bucket: Bucket,
        asset: u16,
        amount: u128,
        up: bool,
    ) {
        if account == AccountId::WORLD {
            return;
        }
        let row = self.balances.entry((account.0, asset)).or_default();
        let value = match bucket {
            Bucket::Available => &mut row.available,
            Bucket::Held => &mut row.held,
        };
        // The engine never lets a balance go negative or overflow; a leg that would here means
        // the model missed an event, which is a broken invariant.
        *value = if up {
            value.checked_add(amount).expect("read model balance overflow")
        } else {
            value.checked_sub(amount).expect("read model balance below zero")
        };
    }

    fn fill(&mut self, order_id: u64, quantity: u64, leaves: u64, seq: u64) {
        let Some(order) = self.orders.get_mut(&order_id) else { return };
        order.filled_lots += quantity;
        order.leaves_lots = leaves;
        order.seq = seq;
        if leaves == 0 {
            order.status = OrderStatus::Filled;
            self.finish(order_id);
        } else {
            order.status = OrderStatus::PartiallyFilled;
        }
    }

    fn reject_order(&mut self, order: &engine::NewOrder, reason: RejectReason, seq: u64) {
        // A duplicate id must not overwrite the live order that owns it.
        if self.orders.get(&order.order_id.0).is_some_and(|known| !known.status.is_final()) {
            return;
        }
        let record = OrderRecord {
            order_id: order.order_id.0,
            account: order.account.0,
            instrument: order.instrument.0,
            side: order.side,
            order_type: order.order_type,
            time_in_force: order.time_in_force,
            price_ticks: order.price.0,
            quantity_lots: order.quantity.0,
            leaves_lots: 0,
            filled_lots: 0,
            status: OrderStatus::Rejected,
            reject_reason: Some(reason),
            seq,
        };
        self.orders.insert(order.order_id.0, record);
        self.finish(order.order_id.0);
    }

    /// Queues a final order for forgetting, and forgets the oldest beyond the limit.
    fn finish(&mut self, order_id: u64) {
        self.finished.push_back(order_id);
        while self.finished.len() > self.finished_max {
            let Some(oldest) = self.finished.pop_front() else { break };
            // The id may have been reused by a live order since; that one stays.
            if self.orders.get(&oldest).is_some_and(|order| order.status.is_final()) {
                self.orders.remove(&oldest);
            }
        }
    }
}
