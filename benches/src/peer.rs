//! The peer: the same command stream through the `orderbook-rs` crate (0.15), for a throughput
//! ratio measured in the same run, on the same pinned thread, with the same warm-up.
//!
//! How our commands map onto its API:
//!
//! | our command | `orderbook-rs` call |
//! | --- | --- |
//! | new limit GTC / IOC | `add_limit_order_with_user(id, price, qty, side, tif, user, None)` |
//! | new market | `submit_market_order_with_user(id, qty, side, user)` |
//! | cancel | `cancel_order(id)` |
//! | amend (price move, same quantity) | `update_order(OrderUpdate::UpdatePrice { .. })` |
//! | amend (quantity change) | `update_order(OrderUpdate::UpdatePriceAndQuantity { .. })` |
//!
//! Each instrument is its own `OrderBook<()>`; commands are routed by the instrument the
//! generator recorded (a FIX gateway routes by Symbol the same way). Account numbers become
//! `Hash32` user ids.
//!
//! What the peer does not do, so the ratio compares unequal work in its favour:
//! - no wallet: no balances, no holds taken on entry or released on cancel, no settlement legs
//!   or fees on fills, so no risk checks (insufficient funds) either;
//! - no price band, no per-account order limit, no sequence numbers or timestamps checked;
//! - no event stream: it returns results, where our engine emits and applies an audit event for
//!   every change (the benchmark's sink only counts them);
//! - market buys are bounded by quantity only (ours also carry a quote budget, sized in the
//!   generator so that the quantity binds);
//! - self-trade prevention is one mode per book: for the self-trade mix the peer's books use
//!   `CancelMaker` (our "cancel resting"), whereas our stream sets one of four modes per account.
//!
//! In its favour too: it reads a wall clock for every order (its own design), which ours never
//! does. It is a thread-safe book (atomics and concurrent maps) driven here from one thread.

use engine::{Command, CommandBody, OrderType, Side, TimeInForce};
use orderbook_rs::{OrderBook, STPMode};
use pricelevel::{Hash32, Id, OrderUpdate, Price};

/// One command, translated for the peer ahead of time so the timed loop only calls its API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerOp {
    Limit {
        book: u32,
        id: u64,
        price_ticks: u64,
        quantity_lots: u64,
        buy: bool,
        immediate_or_cancel: bool,
        account: u32,
    },
    Market {
        book: u32,
        id: u64,
        quantity_lots: u64,
        buy: bool,
        account: u32,
    },
    Cancel {
        book: u32,
        id: u64,
    },
    /// A price move; `quantity_lots` is set only when the amend also changes the quantity,
    /// which the generator never does (it moves prices, as exchange-core's mix does).
    Move {
        book: u32,
        id: u64,
        price_ticks: u64,
        quantity_lots: Option<u64>,
    },
    /// A command the peer has no counterpart for (wallet and admin commands). Never in a
    /// measured order stream.
    Unsupported,
}

impl PeerOp {
    /// Translates one of our commands, for the book of instrument `book`.
    pub fn from_command(command: &Command, book: u32) -> PeerOp {
        match command.body {
            CommandBody::NewOrder(order) => {
                let buy = order.side == Side::Buy;
                let (id, account) = (order.order_id.0, order.account.0);
                match order.order_type {
                    OrderType::Market => {
                        PeerOp::Market { book, id, quantity_lots: order.quantity.0, buy, account }
                    }
                    OrderType::Limit => PeerOp::Limit {
                        book,
                        id,
                        price_ticks: order.price.0,
                        quantity_lots: order.quantity.0,
                        buy,
                        immediate_or_cancel: order.time_in_force == TimeInForce::Ioc,
                        account,
                    },
                }
            }
            CommandBody::CancelOrder { order_id, .. } => PeerOp::Cancel { book, id: order_id.0 },
            // The generator's amends keep the order's total quantity, so a price move is the
            // faithful translation; the quantity variant exists for other streams.
            CommandBody::AmendOrder { order_id, price, .. } => {
                PeerOp::Move { book, id: order_id.0, price_ticks: price.0, quantity_lots: None }
            }
            _ => PeerOp::Unsupported,
        }
    }
}

/// One `orderbook-rs` book per instrument.
pub struct PeerBooks {
    books: Vec<OrderBook<()>>,
}

impl std::fmt::Debug for PeerBooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBooks").field("books", &self.books.len()).finish()
    }
}

/// What the peer answered over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerOutcome {
    pub ok: u64,
    /// Errors are ordinary outcomes for it: an IOC or market order with nothing to fill, a
    /// self-trade cancellation, a cancel of an order already gone.
    pub errors: u64,
}

impl PeerBooks {
    /// Books for `instruments` instruments; `self_trade_prevention` enables its `CancelMaker`.
    pub fn new(instruments: u32, self_trade_prevention: bool) -> PeerBooks {
        let mode = if self_trade_prevention { STPMode::CancelMaker } else { STPMode::None };
        let books = (0..instruments)
            .map(|instrument| OrderBook::with_stp_mode(&format!("I{instrument}"), mode))
            .collect();
        PeerBooks { books }
    }

    /// Applies one operation; returns whether the peer accepted it.
    #[inline]
    pub fn apply(&self, op: &PeerOp) -> bool {
        let user = |account: u32| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&account.to_le_bytes());
            // Zero means "anonymous" to the peer and bypasses its STP; account 0 never trades.
            Hash32::new(bytes)
        };
        let side = |buy: bool| if buy { pricelevel::Side::Buy } else { pricelevel::Side::Sell };
        match *op {
            PeerOp::Limit {
                book,
                id,
                price_ticks,
                quantity_lots,
                buy,
                immediate_or_cancel,
                account,
            } => {
                let time_in_force = if immediate_or_cancel {
                    pricelevel::TimeInForce::Ioc
                } else {
                    pricelevel::TimeInForce::Gtc
                };
                let result = self.books[book as usize].add_limit_order_with_user(
                    Id::sequential(id),
                    u128::from(price_ticks),
                    quantity_lots,
                    side(buy),
                    time_in_force,
                    user(account),
                    None,
                );
                std::hint::black_box(result).is_ok()
            }
            PeerOp::Market { book, id, quantity_lots, buy, account } => {
                let result = self.books[book as usize].submit_market_order_with_user(
                    Id::sequential(id),
                    quantity_lots,
                    side(buy),
                    user(account),
                );
                std::hint::black_box(result).is_ok()
            }
            PeerOp::Cancel { book, id } => {
                let result = self.books[book as usize].cancel_order(Id::sequential(id));
                matches!(std::hint::black_box(result), Ok(Some(_)))
            }
            PeerOp::Move { book, id, price_ticks, quantity_lots } => {
                let order_id = Id::sequential(id);
                let new_price = Price::new(u128::from(price_ticks));
                let update = match quantity_lots {
                    None => OrderUpdate::UpdatePrice { order_id, new_price },
                    Some(lots) => OrderUpdate::UpdatePriceAndQuantity {
                        order_id,
                        new_price,
                        new_quantity: pricelevel::Quantity::new(lots),
                    },
                };
                let result = self.books[book as usize].update_order(update);
                matches!(std::hint::black_box(result), Ok(Some(_)))
            }
            PeerOp::Unsupported => false,
        }
    }

    /// Applies every operation, counting what it accepted.
    pub fn apply_all(&self, ops: &[PeerOp]) -> PeerOutcome {
        let mut outcome = PeerOutcome::default();
        for op in ops {
            if self.apply(op) {
                outcome.ok += 1;
            } else {
                outcome.errors += 1;
            }
        }
        outcome
    }

    /// Resting orders across all books: a check that the peer's books are as deep as ours.
    pub fn resting_orders(&self) -> usize {
        self.books.iter().map(|book| book.get_all_orders().len()).sum()
    }
}
