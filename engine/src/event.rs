//! Events are facts. The engine's state changes only by applying them, in the order they are
//! emitted, so replaying the event stream rebuilds the state and audits every movement of value.
//!
//! Every balance change is a [`Event::Ledger`] leg: a double entry that moves one amount of one
//! asset from a debit bucket to a credit bucket. Orders change through the order events. Within
//! one command, the legs that release or settle an order's hold are always emitted before the
//! event that closes the order, so a closed order provably holds nothing.

use crate::types::{
    AccountId, Amount, AssetId, InstrumentId, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

/// Why a command was refused. Discriminants are stable wire values: they are journaled and sent
/// to clients, so never renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum RejectReason {
    UnknownInstrument = 1,
    UnknownAccount = 2,
    UnknownAsset = 3,
    InstrumentHalted = 4,
    InvalidPrice = 5,
    InvalidQuantity = 6,
    PriceOutsideBand = 7,
    InsufficientFunds = 8,
    DuplicateOrderId = 9,
    /// The order does not exist, is no longer live, or belongs to another account.
    UnknownOrder = 10,
    PostOnlyWouldTake = 11,
    OrdersCapacityReached = 12,
    AccountOrdersLimitReached = 13,
    PriceLevelsCapacityReached = 14,
    MarketBuyNeedsBudget = 15,
    /// A quote budget was given for an order that is not a market buy.
    UnexpectedBudget = 16,
    /// A market order cannot rest: GTC and DAY are meaningless for it.
    InvalidTimeInForce = 17,
    /// The new total quantity of an amend is not above the quantity already filled.
    AmendQuantityNotAboveFilled = 18,
    AmendNoChange = 19,
    /// The transaction id was used before with different fields.
    TransactionIdReused = 20,
    TransactionsCapacityReached = 21,
    AccountExists = 22,
    AccountsCapacityReached = 23,
    InvalidAmount = 24,
    SameAccount = 25,
    AssetExists = 26,
    InstrumentExists = 27,
    InvalidInstrument = 28,
    InstrumentsCapacityReached = 29,
    AssetsCapacityReached = 30,
    /// Deposits to, withdrawals from and transfers involving the world account are not allowed.
    WorldAccount = 31,
    BalanceOverflow = 32,
    /// Transaction id zero is reserved for "none".
    InvalidTransactionId = 33,
    /// Order id zero is reserved for "none".
    InvalidOrderId = 34,
}

impl RejectReason {
    /// The stable numeric code.
    #[inline]
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A short human-readable explanation, safe to show a client.
    pub fn text(self) -> &'static str {
        match self {
            RejectReason::UnknownInstrument => "unknown instrument",
            RejectReason::UnknownAccount => "unknown account",
            RejectReason::UnknownAsset => "unknown asset",
            RejectReason::InstrumentHalted => "instrument is halted",
            RejectReason::InvalidPrice => "price is zero or not a multiple of the tick size",
            RejectReason::InvalidQuantity => {
                "quantity is outside the instrument's limits or not a multiple of the lot size"
            }
            RejectReason::PriceOutsideBand => "price is outside the instrument's price band",
            RejectReason::InsufficientFunds => "insufficient available balance",
            RejectReason::DuplicateOrderId => "an order with this id is already live",
            RejectReason::UnknownOrder => "unknown order",
            RejectReason::PostOnlyWouldTake => "post-only order would take liquidity",
            RejectReason::OrdersCapacityReached => "the exchange's order capacity is reached",
            RejectReason::AccountOrdersLimitReached => "the account's open-order limit is reached",
            RejectReason::PriceLevelsCapacityReached => {
                "the book's price-level capacity is reached"
            }
            RejectReason::MarketBuyNeedsBudget => "a market buy needs a quote budget",
            RejectReason::UnexpectedBudget => "only market buys take a quote budget",
            RejectReason::InvalidTimeInForce => "market orders must be IOC or FOK",
            RejectReason::AmendQuantityNotAboveFilled => {
                "amended quantity must exceed the quantity already filled"
            }
            RejectReason::AmendNoChange => "amend changes neither price nor quantity",
            RejectReason::TransactionIdReused => "transaction id was used with different fields",
            RejectReason::TransactionsCapacityReached => "transaction id capacity is reached",
            RejectReason::AccountExists => "account already exists",
            RejectReason::AccountsCapacityReached => "account capacity is reached",
            RejectReason::InvalidAmount => "amount must be positive",
            RejectReason::SameAccount => "source and target accounts are the same",
            RejectReason::AssetExists => "asset already exists",
            RejectReason::InstrumentExists => "instrument already exists",
            RejectReason::InvalidInstrument => "instrument specification is invalid",
            RejectReason::InstrumentsCapacityReached => "instrument capacity is reached",
            RejectReason::AssetsCapacityReached => "asset capacity is reached",
            RejectReason::WorldAccount => "the world account cannot be used directly",
            RejectReason::BalanceOverflow => "balance would overflow",
            RejectReason::InvalidTransactionId => "transaction id must not be zero",
            RejectReason::InvalidOrderId => "order id must not be zero",
        }
    }

    /// The reason with this code, if any.
    pub fn from_code(code: u16) -> Option<RejectReason> {
        ALL_REJECT_REASONS.iter().copied().find(|r| r.code() == code)
    }
}

/// Every reject reason, in code order: for decoders and for tests that pin the codes.
pub const ALL_REJECT_REASONS: [RejectReason; 34] = [
    RejectReason::UnknownInstrument,
    RejectReason::UnknownAccount,
    RejectReason::UnknownAsset,
    RejectReason::InstrumentHalted,
    RejectReason::InvalidPrice,
    RejectReason::InvalidQuantity,
    RejectReason::PriceOutsideBand,
    RejectReason::InsufficientFunds,
    RejectReason::DuplicateOrderId,
    RejectReason::UnknownOrder,
    RejectReason::PostOnlyWouldTake,
    RejectReason::OrdersCapacityReached,
    RejectReason::AccountOrdersLimitReached,
    RejectReason::PriceLevelsCapacityReached,
    RejectReason::MarketBuyNeedsBudget,
    RejectReason::UnexpectedBudget,
    RejectReason::InvalidTimeInForce,
    RejectReason::AmendQuantityNotAboveFilled,
    RejectReason::AmendNoChange,
    RejectReason::TransactionIdReused,
    RejectReason::TransactionsCapacityReached,
    RejectReason::AccountExists,
    RejectReason::AccountsCapacityReached,
    RejectReason::InvalidAmount,
    RejectReason::SameAccount,
    RejectReason::AssetExists,
    RejectReason::InstrumentExists,
    RejectReason::InvalidInstrument,
    RejectReason::InstrumentsCapacityReached,
    RejectReason::AssetsCapacityReached,
    RejectReason::WorldAccount,
    RejectReason::BalanceOverflow,
    RejectReason::InvalidTransactionId,
    RejectReason::InvalidOrderId,
];

/// Why a live order stopped being live without being filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CancelReason {
    /// The owner asked (cancel or mass cancel).
    Requested = 1,
    /// The unfilled rest of an IOC or market order.
    ImmediateRemainder = 2,
    /// A FOK order that could not fill entirely; nothing traded.
    FillOrKill = 3,
    /// Self-trade prevention cancelled it.
    SelfTrade = 4,
    /// A DAY order at end of day.
    Expired = 5,
    /// A market buy that ran out of quote budget.
    BudgetExhausted = 6,
}

/// One side of a double entry: an account's available or held balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Bucket {
    Available = 1,
    Held = 2,
}

/// What a ledger leg is for. Stable wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LegKind {
    Deposit = 1,
    Withdrawal = 2,
    Transfer = 3,
    /// Available → held for a live order.
    OrderHold = 4,
    /// Held → available: the part of an order's hold it no longer needs.
    OrderRelease = 5,
    /// A fill: the buyer's held quote to the seller, or the seller's held base to the buyer.
    TradeSettlement = 6,
    /// A fill's fee to the fee account.
    Fee = 7,
}

/// What the engine says. Sizes are pinned below so the journal's fixed records can hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A command was refused; nothing changed. `reference` is the order id or transaction id the
    /// command named (zero if none).
    Rejected {
        reason: RejectReason,
        reference: u128,
    },
    /// A new order passed validation and is live (not yet on the book).
    OrderAccepted {
        order_id: OrderId,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
        price: Price,
        quantity: Quantity,
        quote_budget: Amount,
    },
    /// A live order was placed on the book at the back of its price level.
    OrderRested {
        order_id: OrderId,
    },
    /// A resting order's price or total quantity changed. With `priority_kept`, it stays where
    /// it is in its level; otherwise it left the book and either rests again (a later
    /// [`Event::OrderRested`]) or trades first as a taker.
    OrderAmended {
        order_id: OrderId,
        price: Price,
        quantity: Quantity,
        leaves: Quantity,
        priority_kept: bool,
    },
    /// A live order stopped being live; `leaves` was not executed.
    OrderCancelled {
        order_id: OrderId,
        leaves: Quantity,
        reason: CancelReason,
    },
    /// A fill between a resting maker and an incoming taker, at the maker's price. Orders whose
    /// leaves reach zero are filled and no longer live.
    Trade {
        instrument: InstrumentId,
        maker_order_id: OrderId,
        taker_order_id: OrderId,
        taker_side: Side,
        price: Price,
        quantity: Quantity,
        maker_leaves: Quantity,
        taker_leaves: Quantity,
    },
    /// A double-entry movement of value. `order_id` names the order whose hold it touches (zero if
    /// none); `transaction_id` the wallet transaction it belongs to (zero if none).
    Ledger {
        kind: LegKind,
        asset: AssetId,
        debit_account: AccountId,
        debit_bucket: Bucket,
        credit_account: AccountId,
        credit_bucket: Bucket,
        amount: Amount,
        order_id: OrderId,
        transaction_id: TransactionId,
    },
    /// A retried wallet transaction with the same fields: nothing moves, and `original_seq` is
    /// the sequence number of the command that executed it the first time.
    TransactionDuplicate {
        transaction_id: TransactionId,
        original_seq: u64,
    },
    AccountCreated {
        account: AccountId,
    },
    AssetAdded {
        asset: AssetId,
        scale: u8,
    },
    InstrumentAdded(crate::command::InstrumentSpec),
    InstrumentHalted {
        instrument: InstrumentId,
        halted: bool,
    },
}

// The journal's fixed-size event records must hold any event.
const _: () = assert!(size_of::<Event>() <= 96);

/// Where the engine writes its events. Monomorphised, so the hot path makes no virtual calls and
/// a sink that writes into a ring or a counter allocates nothing.
pub trait EventSink {
    fn push(&mut self, event: &Event);
}

impl EventSink for Vec<Event> {
    #[inline]
    fn push(&mut self, event: &Event) {
        Vec::push(self, *event);
    }
}

/// A sink that only counts: for benchmarks that measure the engine alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingSink {
    pub events: u64,
    pub trades: u64,
    pub rejects: u64,
}

impl EventSink for CountingSink {
    #[inline]
    fn push(&mut self, event: &Event) {
        self.events += 1;
        match event {
            Event::Trade { .. } => self.trades += 1,
            Event::Rejected { .. } => self.rejects += 1,
            _ => {}
        }
    }
}
