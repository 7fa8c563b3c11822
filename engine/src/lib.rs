//! The exchange's deterministic core: instruments, order books, matching, the order manager
//! (validation, risk, wallet holds) and the event-sourced wallet.
//!
//! Sequenced [`Command`]s arrive, each carrying the sequence number and timestamp the sequencer
//! assigned; the [`Engine`] validates them and answers with [`Event`]s, written to a caller's
//! [`EventSink`]. State changes only by applying events, so the event stream is a complete audit
//! of every order and every movement of value, and replaying commands (or events) rebuilds the
//! state byte for byte, checked by [`Engine::state_hash`]. The sequencer, the gateway, market data
//! and the benchmarks consume it.
//!
//! The engine never does I/O, never reads a clock, never draws randomness and never lets hash-map
//! iteration order shape its output (`clippy.toml` in this crate bans the means). All memory is
//! taken when the engine is built from its [`EngineConfig`]; hitting a configured maximum is a
//! reject, never growth, so a warmed-up engine allocates nothing per command.
//!
//! [`Engine::write_snapshot`] encodes the full state as canonical bytes and
//! [`Engine::from_snapshot`] restores it, refusing corrupt input with a [`SnapshotError`]; the
//! sequencer stores the bytes, so recovery is a restore plus a replay of the journal tail.

mod audit;
mod book;
mod command;
pub mod decimal;
mod engine;
mod event;
mod id_table;
mod snapshot;
mod types;

pub use command::{Command, CommandBody, InstrumentSpec, NewOrder};
pub use engine::{Balance, Engine, EngineConfig, OrderState, OrderView};
pub use event::{
    Bucket, CancelReason, CountingSink, Event, EventSink, LegKind, RejectReason, ALL_REJECT_REASONS,
};
pub use id_table::{IdTable, TableKey};
pub use snapshot::{
    Capacity, SnapshotError, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
pub use types::{
    fee, notional, AccountId, Amount, AssetId, InstrumentId, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};
