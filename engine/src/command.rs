//! Commands are requests. The sequencer stamps each one with a gap-free sequence number and a
//! timestamp; the engine validates it and answers with events. A command never changes state by
//! itself.

use crate::types::{
    AccountId, Amount, AssetId, InstrumentId, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

/// A sequenced command: what the sequencer hands the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// Gap-free, assigned by the sequencer.
    pub seq: u64,
    /// Nanoseconds since the Unix epoch, assigned by the sequencer. The engine's only clock.
    pub timestamp_ns: u64,
    pub body: CommandBody,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandBody {
    NewOrder(NewOrder),
    CancelOrder {
        order_id: OrderId,
        account: AccountId,
    },
    /// Cancel-replace. `quantity` is the new total order quantity, filled part included (FIX
    /// OrderQty semantics on OrderCancelReplaceRequest). Lowering the quantity at the same price
    /// keeps time priority; a price change or a larger quantity loses it.
    AmendOrder {
        order_id: OrderId,
        account: AccountId,
        price: Price,
        quantity: Quantity,
    },
    /// Cancels every live order of `account` (if given) on `instrument` (if given). With neither,
    /// cancels everything: an operator's kill switch.
    MassCancel {
        account: Option<AccountId>,
        instrument: Option<InstrumentId>,
    },
    Deposit {
        transaction_id: TransactionId,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
    },
    Withdraw {
        transaction_id: TransactionId,
        account: AccountId,
        asset: AssetId,
        amount: Amount,
    },
    Transfer {
        transaction_id: TransactionId,
        from: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: Amount,
    },
    CreateAccount {
        account: AccountId,
    },
    AddAsset {
        asset: AssetId,
        /// Decimal places of one whole unit, for display at the edges only.
        scale: u8,
    },
    AddInstrument(InstrumentSpec),
    /// Halts (`halted = true`) or resumes an instrument. While halted, new orders and amends are
    /// rejected; cancels still work.
    SetInstrumentHalted {
        instrument: InstrumentId,
        halted: bool,
    },
    /// Expires every DAY order, on one instrument or on all.
    EndOfDay {
        instrument: Option<InstrumentId>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub account: AccountId,
    pub instrument: InstrumentId,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    /// Rejects the order instead of letting it take liquidity.
    pub post_only: bool,
    pub self_trade_prevention: SelfTradePrevention,
    /// Limit price; ignored for market orders.
    pub price: Price,
    /// Maximum quantity to trade, in lots. Required for every order, market buys included.
    pub quantity: Quantity,
    /// For market buys: the most quote to spend, fees included (FIX CashOrderQty). Must be zero
    /// for every other order.
    pub quote_budget: Amount,
}

/// Everything the engine needs to know about an instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentSpec {
    pub instrument: InstrumentId,
    pub base_asset: AssetId,
    pub quote_asset: AssetId,
    /// Valid prices are positive multiples of this.
    pub tick_size: Price,
    /// Valid quantities are positive multiples of this.
    pub lot_size: Quantity,
    pub quantity_min: Quantity,
    pub quantity_max: Quantity,
    /// Base minor units in one lot.
    pub base_per_lot: u64,
    /// Quote minor units that one lot at one tick is worth.
    pub quote_per_tick_lot: u64,
    /// The band's centre until the first trade; afterwards the last trade price.
    pub reference_price: Price,
    /// Limit prices must lie within this many basis points of the reference price. Market orders
    /// execute no further than the band edge.
    pub band_bps: u16,
    pub maker_fee_bps: u16,
    pub taker_fee_bps: u16,
}
