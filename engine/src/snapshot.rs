//! Full-state snapshots as pure byte encoding and decoding: no I/O. The sequencer stores the
//! bytes (RocksDB adds the checksum) and recovery restores the newest snapshot, then replays the
//! journal from the sequence number after it.
//!
//! A snapshot is canonical: one state has exactly one encoding, because every part is written
//! in an order the state defines (ids ascending, levels best first, orders in time priority,
//! account lists oldest first, transactions in the order they executed) and slab positions,
//! free lists and hash-table layout are never written. Two engines in the same state write the
//! same bytes, and a restore can place orders in any slab slot without changing the state hash.
//!
//! Restoring writes the engine's structures directly instead of replaying events, and trusts
//! nothing: every length is checked against the input, every id against both the snapshot's own
//! capacities and the target config's, every enum byte against its discriminants, and finally
//! the cross-cutting invariants (conservation per asset, held balances equal to order holds,
//! books not crossed) are checked as errors, so that a corrupt snapshot is refused and never
//! panics or yields an engine that `check_invariants` would reject.
//!
//! # Layout, version 1
//!
//! Little-endian throughout. The header is fixed, 56 bytes:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+  0
//! |                  magic "EXSNAPv1" (8 bytes)                   |
//! |                                                               |
//! +-------------------------------+-------------------------------+  8
//! |      format version (u16)     |        assets_max (u16)       |
//! +-------------------------------+-------------------------------+ 12
//! |                     instruments_max (u32)                     |
//! +---------------------------------------------------------------+ 16
//! |                       accounts_max (u32)                      |
//! +---------------------------------------------------------------+ 20
//! |                        orders_max (u32)                       |
//! +---------------------------------------------------------------+ 24
//! |                        levels_max (u32)                       |
//! +---------------------------------------------------------------+ 28
//! |                  orders_per_account_max (u32)                 |
//! +---------------------------------------------------------------+ 32
//! |                     transactions_max (u32)                    |
//! +---------------------------------------------------------------+ 36
//! |                       fee_account (u32)                       |
//! +---------------------------------------------------------------+ 40
//! |                seq: last command applied (u64)                |
//! |                                                               |
//! +---------------------------------------------------------------+ 48
//! |                       timestamp_ns (u64)                      |
//! |                                                               |
//! +---------------------------------------------------------------+ 56
//! ```
//!
//! The capacities are those of the config the snapshot was written under. Sections follow in
//! this order; `x{n}` means `n` repetitions of `x`, and "ascending" means strictly ascending:
//!
//! ```text
//! snapshot     := header assets accounts instruments order_lists transactions
//! assets       := count:u16 asset{count}                    live assets, id ascending
//! asset        := id:u16 scale:u8 world:i128
//! accounts     := count:u32 account{count}                  existing accounts, id ascending
//! account      := id:u32 balance{assets_max}                one balance per asset slot
//! balance      := available:u128 held:u128
//! instruments  := count:u32 instrument{count}               live instruments, id ascending
//! instrument   := spec halted:u8 reference_price:u64 side(bids) side(asks)
//! spec         := id:u32 base_asset:u16 quote_asset:u16 tick_size:u64 lot_size:u64
//!                 quantity_min:u64 quantity_max:u64 base_per_lot:u64 quote_per_tick_lot:u64
//!                 opening_reference_price:u64 band_bps:u16 maker_fee_bps:u16 taker_fee_bps:u16
//! side         := count:u32 level{count}                    best price first
//! level        := price:u64 count:u32 order{count}          time priority, oldest first
//! order        := id:u64 account:u32 side:u8 order_type:u8 time_in_force:u8 post_only:u8
//!                 self_trade_prevention:u8 price:u64 quantity:u64 leaves:u64 hold:u128
//! order_lists  := count:u32 order_list{count}               accounts with live orders,
//! order_list   := account:u32 count:u32 order_id:u64{count}   id ascending; list order kept
//! transactions := count:u32 transaction{count}              in the order they executed
//! transaction  := id:u128 kind:u8 debit_account:u32 credit_account:u32 asset:u16
//!                 amount:u128 seq:u64
//! ```
//!
//! Enum bytes use the types' stable discriminants; booleans are 0 or 1. Derived values are not
//! written: the price band (from the spec and the reference price), level totals, open-order
//! counts. Orders sit inside their instrument's book, so an order on an instrument that is not
//! live cannot even be expressed. The account lists come after the books because they name
//! orders by id, and the order in which an account's orders are listed decides the order of
//! the events a mass cancel emits.

use core::fmt;

use crate::command::InstrumentSpec;
use crate::engine::{
    band, order_hold, side_index, side_key, spec_is_valid, validate_quantity, AssetState, Balance,
    Engine, EngineConfig, Level, OrderSlot, TransactionRecord, NONE,
};
use crate::event::LegKind;
use crate::types::{
    AccountId, Amount, AssetId, InstrumentId, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

/// The first eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"EXSNAPv1";
/// The layout this build writes and reads. Bump it for any change to the layout above.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Bytes before the first section.
pub const SNAPSHOT_HEADER_LEN: usize = 56;

/// A configured capacity that a snapshot's state must fit into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capacity {
    Assets,
    Instruments,
    Accounts,
    Orders,
    Levels,
    OrdersPerAccount,
    Transactions,
}

impl Capacity {
    fn of(self, config: &EngineConfig) -> u64 {
        match self {
            Capacity::Assets => u64::from(config.assets_max),
            Capacity::Instruments => u64::from(config.instruments_max),
            Capacity::Accounts => u64::from(config.accounts_max),
            Capacity::Orders => u64::from(config.orders_max),
            Capacity::Levels => u64::from(config.levels_max),
            Capacity::OrdersPerAccount => u64::from(config.orders_per_account_max),
            Capacity::Transactions => u64::from(config.transactions_max),
        }
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The names of the config fields, so that an operator knows what to raise.
        f.write_str(match self {
            Capacity::Assets => "assets_max",
            Capacity::Instruments => "instruments_max",
            Capacity::Accounts => "accounts_max",
            Capacity::Orders => "orders_max",
            Capacity::Levels => "levels_max",
            Capacity::OrdersPerAccount => "orders_per_account_max",
            Capacity::Transactions => "transactions_max",
        })
    }
}

/// Why a snapshot was refused. Offsets are byte offsets into the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("not an engine snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {found} is not supported; this build reads {supported}")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("snapshot truncated: {needed} more bytes needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("{count} trailing bytes after the snapshot")]
    TrailingBytes { count: usize },
    #[error("the snapshot's fee account {snapshot} differs from the configured {configured}")]
    FeeAccountMismatch { snapshot: AccountId, configured: AccountId },
    /// The state is valid but does not fit the config it is restored into.
    #[error("the snapshot needs {capacity} of at least {needed}; the config has {configured}")]
    ConfigTooSmall { capacity: Capacity, needed: u64, configured: u64 },
    /// An id or count beyond the capacities the snapshot itself was written under: corruption.
    #[error("{capacity} {needed} needed at offset {offset} exceeds the snapshot's own {limit}")]
    OutOfRange { capacity: Capacity, needed: u64, limit: u64, offset: usize },
    #[error("invalid {field} byte {value} at offset {offset}")]
    InvalidDiscriminant { field: &'static str, value: u8, offset: usize },
    #[error("order id {0} appears twice")]
    DuplicateOrderId(OrderId),
    #[error("transaction id {0} appears twice")]
    DuplicateTransactionId(TransactionId),
    #[error("{what} at offset {offset} is out of order or repeated")]
    Unsorted { what: &'static str, offset: usize },
    #[error("invalid {what} at offset {offset}")]
    Invalid { what: &'static str, offset: usize },
    /// The parts decode, but together they break an engine invariant.
    #[error("restored state breaks an invariant: {0}")]
    Inconsistent(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Little-endian field writer.
struct Out<'a>(&'a mut Vec<u8>);

impl Out<'_> {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn u128(&mut self, value: u128) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn i128(&mut self, value: i128) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
}

/// Counts fit their fields because every count is bounded by a capacity of the same width.
fn count_u32(count: usize) -> u32 {
    u32::try_from(count).expect("counts are bounded by u32 capacities")
}

impl Engine {
    /// Appends a canonical encoding of the full state to `out` (layout in the module doc).
    /// Allocates only as `out` grows; call it between commands.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let mut out = Out(out);
        self.write_header(&mut out);
        let live_assets = self.assets.iter().filter(|asset| asset.live).count();
        out.u16(u16::try_from(live_assets).expect("assets_max is u16"));
        for (id, asset) in self.assets.iter().enumerate().filter(|(_, asset)| asset.live) {
            out.u16(u16::try_from(id).expect("assets_max is u16"));
            out.u8(asset.scale);
            out.i128(asset.world);
        }
        let assets_max = usize::from(self.config.assets_max);
        out.u32(count_u32(self.accounts.iter().filter(|account| account.exists).count()));
        for (id, account) in self.accounts.iter().enumerate() {
            let row = &self.balances[id * assets_max..(id + 1) * assets_max];
            if !account.exists {
                // Value only reaches existing accounts, so skipping the others loses nothing.
                debug_assert!(row.iter().all(|balance| *balance == Balance::default()));
                continue;
            }
            out.u32(count_u32(id));
            for balance in row {
                out.u128(balance.available.0);
                out.u128(balance.held.0);
            }
        }
        let live_instruments = self.instruments.iter().filter(|state| state.live);
        out.u32(count_u32(live_instruments.clone().count()));
        for instrument in live_instruments {
            write_spec(&mut out, &instrument.spec);
            out.u8(u8::from(instrument.halted));
            out.u64(instrument.reference_price.0);
            for side in &instrument.sides {
                out.u32(count_u32(side.len()));
                for (_, level_index) in side.best_first() {
                    self.write_level(&mut out, &self.levels[level_index as usize]);
                }
            }
        }
        self.write_order_lists(&mut out);
        out.u32(count_u32(self.transactions.len()));
        for record in &self.transactions {
            out.u128(record.id.0);
            out.u8(record.kind as u8);
            out.u32(record.debit_account.0);
            out.u32(record.credit_account.0);
            out.u16(record.asset.0);
            out.u128(record.amount.0);
            out.u64(record.seq);
        }
    }

    fn write_header(&self, out: &mut Out<'_>) {
        let start = out.0.len();
        let config = &self.config;
        out.0.extend_from_slice(&SNAPSHOT_MAGIC);
        out.u16(SNAPSHOT_VERSION);
        out.u16(config.assets_max);
        for value in [
            config.instruments_max,
            config.accounts_max,
            config.orders_max,
            config.levels_max,
            config.orders_per_account_max,
            config.transactions_max,
            config.fee_account.0,
        ] {
            out.u32(value);
        }
        out.u64(self.seq);
        out.u64(self.timestamp_ns);
        debug_assert_eq!(out.0.len() - start, SNAPSHOT_HEADER_LEN);
    }

    fn write_level(&self, out: &mut Out<'_>, level: &Level) {
        out.u64(level.price.0);
        out.u32(level.orders);
        let mut slot = level.head;
        while slot != NONE {
            let order = &self.orders[slot as usize];
            out.u64(order.id.0);
            out.u32(order.account.0);
            out.u8(order.side as u8);
            out.u8(order.order_type as u8);
            out.u8(order.time_in_force as u8);
            out.u8(u8::from(order.post_only));
            out.u8(order.self_trade_prevention as u8);
            out.u64(order.price.0);
            out.u64(order.quantity.0);
            out.u64(order.leaves.0);
            out.u128(order.hold.0);
            slot = order.next;
        }
    }

    fn write_order_lists(&self, out: &mut Out<'_>) {
        let with_orders = self.accounts.iter().filter(|account| account.open_orders > 0);
        out.u32(count_u32(with_orders.count()));
        for (id, account) in self.accounts.iter().enumerate() {
            if account.open_orders == 0 {
                continue;
            }
            out.u32(count_u32(id));
            out.u32(account.open_orders);
            let mut slot = account.head;
            while slot != NONE {
                out.u64(self.orders[slot as usize].id.0);
                slot = self.orders[slot as usize].account_next;
            }
        }
    }
}

fn write_spec(out: &mut Out<'_>, spec: &InstrumentSpec) {
    out.u32(spec.instrument.0);
    out.u16(spec.base_asset.0);
    out.u16(spec.quote_asset.0);
    for value in [
        spec.tick_size.0,
        spec.lot_size.0,
        spec.quantity_min.0,
        spec.quantity_max.0,
        spec.base_per_lot,
        spec.quote_per_tick_lot,
        spec.reference_price.0,
    ] {
        out.u64(value);
    }
    for value in [spec.band_bps, spec.maker_fee_bps, spec.taker_fee_bps] {
        out.u16(value);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading.

/// Little-endian field reader that refuses to read past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let chunk = self.bytes.get(self.offset..).and_then(<[u8]>::first_chunk::<N>);
        let Some(chunk) = chunk else {
            let left = self.bytes.len().saturating_sub(self.offset);
            return Err(SnapshotError::Truncated { offset: self.offset, needed: N - left });
        };
        self.offset += N;
        Ok(*chunk)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        self.take::<1>().map(|[byte]| byte)
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.take().map(u64::from_le_bytes)
    }
    fn u128(&mut self) -> Result<u128, SnapshotError> {
        self.take().map(u128::from_le_bytes)
    }
    fn i128(&mut self) -> Result<i128, SnapshotError> {
        self.take().map(i128::from_le_bytes)
    }

    /// Reads one enum byte and maps it through `decode`, which knows the valid discriminants.
    fn discriminant<T>(
        &mut self,
        field: &'static str,
        decode: fn(u8) -> Option<T>,
    ) -> Result<T, SnapshotError> {
        let offset = self.offset;
        let value = self.u8()?;
        decode(value).ok_or(SnapshotError::InvalidDiscriminant { field, value, offset })
    }

    fn spec(&mut self) -> Result<InstrumentSpec, SnapshotError> {
        Ok(InstrumentSpec {
            instrument: InstrumentId(self.u32()?),
            base_asset: AssetId(self.u16()?),
            quote_asset: AssetId(self.u16()?),
            tick_size: Price(self.u64()?),
            lot_size: Quantity(self.u64()?),
            quantity_min: Quantity(self.u64()?),
            quantity_max: Quantity(self.u64()?),
            base_per_lot: self.u64()?,
            quote_per_tick_lot: self.u64()?,
            reference_price: Price(self.u64()?),
            band_bps: self.u16()?,
            maker_fee_bps: self.u16()?,
            taker_fee_bps: self.u16()?,
        })
    }
}

fn decode_bool(value: u8) -> Option<bool> {
    match value {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn decode_side(value: u8) -> Option<Side> {
    [Side::Buy, Side::Sell].into_iter().find(|side| *side as u8 == value)
}

fn decode_order_type(value: u8) -> Option<OrderType> {
    [OrderType::Limit, OrderType::Market].into_iter().find(|kind| *kind as u8 == value)
}

fn decode_time_in_force(value: u8) -> Option<TimeInForce> {
    let all = [TimeInForce::Gtc, TimeInForce::Day, TimeInForce::Ioc, TimeInForce::Fok];
    all.into_iter().find(|tif| *tif as u8 == value)
}

fn decode_self_trade_prevention(value: u8) -> Option<SelfTradePrevention> {
    let all = [
        SelfTradePrevention::None,
        SelfTradePrevention::CancelResting,
        SelfTradePrevention::CancelIncoming,
        SelfTradePrevention::CancelBoth,
    ];
    all.into_iter().find(|mode| *mode as u8 == value)
}

fn decode_leg_kind(value: u8) -> Option<LegKind> {
    let all = [
        LegKind::Deposit,
        LegKind::Withdrawal,
        LegKind::Transfer,
        LegKind::OrderHold,
        LegKind::OrderRelease,
        LegKind::TradeSettlement,
        LegKind::Fee,
    ];
    all.into_iter().find(|kind| *kind as u8 == value)
}

/// Checks that `id` exceeds the previous id of a section sorted by id, and remembers it.
fn ascending(
    previous: &mut Option<u64>,
    id: u64,
    what: &'static str,
    offset: usize,
) -> Result<(), SnapshotError> {
    if previous.is_some_and(|previous| id <= previous) {
        return Err(SnapshotError::Unsorted { what, offset });
    }
    *previous = Some(id);
    Ok(())
}

/// The fixed header, read before any engine memory is allocated.
struct Header {
    config: EngineConfig,
    seq: u64,
    timestamp_ns: u64,
}

fn read_header(reader: &mut Reader<'_>) -> Result<Header, SnapshotError> {
    if reader.take::<8>()? != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = reader.u16()?;
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_VERSION,
        });
    }
    let config = EngineConfig {
        assets_max: reader.u16()?,
        instruments_max: reader.u32()?,
        accounts_max: reader.u32()?,
        orders_max: reader.u32()?,
        levels_max: reader.u32()?,
        orders_per_account_max: reader.u32()?,
        transactions_max: reader.u32()?,
        fee_account: AccountId(reader.u32()?),
    };
    Ok(Header { config, seq: reader.u64()?, timestamp_ns: reader.u64()? })
}

impl Engine {
    /// Builds an engine from `config` with [`Engine::new`] (so all memory is allocated once, as
    /// usual) and restores the state in `bytes`, written by [`Engine::write_snapshot`].
    ///
    /// The config may differ from the one the snapshot was written under as long as the state
    /// fits it and the fee account is the same. Any malformed, corrupt or inconsistent input is
    /// an error, never a panic; `config` itself must satisfy [`Engine::new`]'s preconditions.
    pub fn from_snapshot(config: EngineConfig, bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let mut reader = Reader { bytes, offset: 0 };
        let header = read_header(&mut reader)?;
        if header.config.fee_account != config.fee_account {
            return Err(SnapshotError::FeeAccountMismatch {
                snapshot: header.config.fee_account,
                configured: config.fee_account,
            });
        }
        let mut restore = Restore { engine: Engine::new(config), reader, own: header.config };
        restore.engine.seq = header.seq;
        restore.engine.timestamp_ns = header.timestamp_ns;
        restore.assets()?;
        restore.accounts()?;
        restore.instruments()?;
        restore.order_lists()?;
        restore.transactions()?;
        let count = bytes.len() - restore.reader.offset;
        if count > 0 {
            return Err(SnapshotError::TrailingBytes { count });
        }
        let engine = restore.engine;
        engine.validate_restored()?;
        // The explicit checks above are meant to imply every invariant; the full sweep proves
        // it in tests, where a gap would panic here.
        if cfg!(debug_assertions) {
            engine.check_invariants();
        }
        Ok(engine)
    }

    /// The invariants that span sections and so cannot be checked while decoding one: per
    /// asset, balances plus the world's sum to zero; each held balance equals the holds of the
    /// account's orders; no book is crossed. Everything else was checked as it was read.
    fn validate_restored(&self) -> Result<(), SnapshotError> {
        for instrument in self.instruments.iter().filter(|state| state.live) {
            let best = |side: Side| instrument.sides[side_index(side)].best();
            if let (Some(bid), Some(ask)) = (best(Side::Buy), best(Side::Sell)) {
                if self.levels[bid as usize].price >= self.levels[ask as usize].price {
                    return Err(SnapshotError::Inconsistent("book crossed"));
                }
            }
        }
        let assets_max = usize::from(self.config.assets_max);
        let mut held_by_orders = vec![0u128; self.balances.len()];
        // Slab order does not matter here: the holds are only summed.
        for order in self.orders.iter().filter(|order| order.level != NONE) {
            let spec = &self.instruments[order.instrument.0 as usize].spec;
            let asset = match order.side {
                Side::Buy => spec.quote_asset,
                Side::Sell => spec.base_asset,
            };
            let cell = order.account.0 as usize * assets_max + usize::from(asset.0);
            held_by_orders[cell] = held_by_orders[cell]
                .checked_add(order.hold.0)
                .ok_or(SnapshotError::Inconsistent("order holds overflow"))?;
        }
        let overflow = SnapshotError::Inconsistent("balances overflow");
        for asset in 0..assets_max {
            let mut total = self.assets[asset].world;
            for account in 0..self.config.accounts_max as usize {
                let cell = account * assets_max + asset;
                let balance = &self.balances[cell];
                if balance.held.0 != held_by_orders[cell] {
                    return Err(SnapshotError::Inconsistent("held differs from order holds"));
                }
                let inside = balance.available.0.checked_add(balance.held.0);
                let inside = inside.and_then(|value| i128::try_from(value).ok());
                total = inside.and_then(|v| total.checked_add(v)).ok_or(overflow.clone())?;
            }
            if total != 0 {
                return Err(SnapshotError::Inconsistent("an asset is not conserved"));
            }
        }
        Ok(())
    }
}

/// A restore in progress: the engine being filled and the input being read.
struct Restore<'a> {
    engine: Engine,
    reader: Reader<'a>,
    /// The capacities the snapshot was written under. An id beyond them is corruption; an id
    /// within them but beyond the target config means the config is too small.
    own: EngineConfig,
}

impl Restore<'_> {
    fn fit(&self, capacity: Capacity, needed: u64, offset: usize) -> Result<(), SnapshotError> {
        let limit = capacity.of(&self.own);
        if needed > limit {
            return Err(SnapshotError::OutOfRange { capacity, needed, limit, offset });
        }
        let configured = capacity.of(&self.engine.config);
        if needed > configured {
            return Err(SnapshotError::ConfigTooSmall { capacity, needed, configured });
        }
        Ok(())
    }

    fn assets(&mut self) -> Result<(), SnapshotError> {
        let count = self.reader.u16()?;
        let mut previous = None;
        for _ in 0..count {
            let offset = self.reader.offset;
            let id = self.reader.u16()?;
            ascending(&mut previous, u64::from(id), "asset", offset)?;
            self.fit(Capacity::Assets, u64::from(id) + 1, offset)?;
            let scale = self.reader.u8()?;
            let world = self.reader.i128()?;
            self.engine.assets[usize::from(id)] = AssetState { live: true, scale, world };
        }
        Ok(())
    }

    fn accounts(&mut self) -> Result<(), SnapshotError> {
        let section = self.reader.offset;
        let count = self.reader.u32()?;
        let own_assets = usize::from(self.own.assets_max);
        let assets_max = usize::from(self.engine.config.assets_max);
        let mut previous = None;
        let mut fee_account_listed = false;
        for _ in 0..count {
            let offset = self.reader.offset;
            let id = self.reader.u32()?;
            ascending(&mut previous, u64::from(id), "account", offset)?;
            self.fit(Capacity::Accounts, u64::from(id) + 1, offset)?;
            self.engine.accounts[id as usize].exists = true;
            fee_account_listed |= id == self.engine.config.fee_account.0;
            for asset in 0..own_assets {
                let available = Amount(self.reader.u128()?);
                let held = Amount(self.reader.u128()?);
                if asset < assets_max {
                    let cell = id as usize * assets_max + asset;
                    self.engine.balances[cell] = Balance { available, held };
                } else if available.0 != 0 || held.0 != 0 {
                    // Only a live asset can carry a balance, and its id is beyond the config.
                    return Err(SnapshotError::ConfigTooSmall {
                        capacity: Capacity::Assets,
                        needed: asset as u64 + 1,
                        configured: assets_max as u64,
                    });
                }
            }
        }
        // The fee account exists from genesis, so every snapshot lists it.
        if !fee_account_listed {
            return Err(SnapshotError::Invalid {
                what: "accounts (no fee account)",
                offset: section,
            });
        }
        Ok(())
    }

    fn instruments(&mut self) -> Result<(), SnapshotError> {
        let count = self.reader.u32()?;
        let mut previous = None;
        for _ in 0..count {
            let offset = self.reader.offset;
            let spec = self.reader.spec()?;
            let id = spec.instrument;
            ascending(&mut previous, u64::from(id.0), "instrument", offset)?;
            self.fit(Capacity::Instruments, u64::from(id.0) + 1, offset)?;
            let assets_live = self.engine.asset_live(spec.base_asset).is_some()
                && self.engine.asset_live(spec.quote_asset).is_some();
            if !assets_live || !spec_is_valid(&spec) {
                return Err(SnapshotError::Invalid { what: "instrument spec", offset });
            }
            let halted = self.reader.discriminant("halted", decode_bool)?;
            let offset = self.reader.offset;
            let reference = Price(self.reader.u64()?);
            // The reference price is the opening one or a trade's, so always on a tick.
            if reference.0 == 0 || reference.0 % spec.tick_size.0 != 0 {
                return Err(SnapshotError::Invalid { what: "reference price", offset });
            }
            let state = &mut self.engine.instruments[id.0 as usize];
            state.live = true;
            state.halted = halted;
            state.spec = spec;
            state.reference_price = reference;
            state.band = band(&spec, reference);
            self.side(&spec, Side::Buy)?;
            self.side(&spec, Side::Sell)?;
        }
        Ok(())
    }

    fn side(&mut self, spec: &InstrumentSpec, side: Side) -> Result<(), SnapshotError> {
        let offset = self.reader.offset;
        let count = self.reader.u32()?;
        self.fit(Capacity::Levels, u64::from(count), offset)?;
        let instrument = spec.instrument.0 as usize;
        let mut previous_key = None;
        for _ in 0..count {
            let offset = self.reader.offset;
            let price = Price(self.reader.u64()?);
            let orders = self.reader.u32()?;
            // Best first means keys descending: each level is strictly worse than the last.
            let key = side_key(side, price);
            if previous_key.is_some_and(|previous| key >= previous) {
                return Err(SnapshotError::Unsorted { what: "price level", offset });
            }
            previous_key = Some(key);
            if orders == 0 || price.0 == 0 || price.0 % spec.tick_size.0 != 0 {
                return Err(SnapshotError::Invalid { what: "price level", offset });
            }
            // Every listed level holds an order, so a free order slot implies a free level.
            let live = self.engine.order_index.len() as u64;
            self.fit(Capacity::Orders, live + 1, offset)?;
            let level_index = self.engine.levels_free.pop().expect("levels_max >= orders_max");
            self.engine.levels[level_index as usize] =
                Level { price, quantity: Quantity(0), orders: 0, head: NONE, tail: NONE };
            self.engine.instruments[instrument].sides[side_index(side)]
                .push_restored(key, level_index);
            for _ in 0..orders {
                self.order(spec, side, level_index)?;
            }
        }
        self.engine.instruments[instrument].sides[side_index(side)].reverse();
        Ok(())
    }

    /// Reads one resting order and appends it to the level at `level_index`.
    fn order(
        &mut self,
        spec: &InstrumentSpec,
        side: Side,
        level_index: u32,
    ) -> Result<(), SnapshotError> {
        let offset = self.reader.offset;
        let invalid = |what| SnapshotError::Invalid { what, offset };
        let reader = &mut self.reader;
        let id = OrderId(reader.u64()?);
        let account = AccountId(reader.u32()?);
        let order_side = reader.discriminant("side", decode_side)?;
        let order_type = reader.discriminant("order type", decode_order_type)?;
        let time_in_force = reader.discriminant("time in force", decode_time_in_force)?;
        let post_only = reader.discriminant("post only", decode_bool)?;
        let self_trade_prevention =
            reader.discriminant("self-trade prevention", decode_self_trade_prevention)?;
        let price = Price(reader.u64()?);
        let quantity = Quantity(reader.u64()?);
        let leaves = Quantity(reader.u64()?);
        let hold = Amount(reader.u128()?);
        self.fit(Capacity::Orders, self.engine.order_index.len() as u64 + 1, offset)?;
        if id.0 == 0 {
            return Err(invalid("order id"));
        }
        if self.engine.order_index.get(id.0).is_some() {
            return Err(SnapshotError::DuplicateOrderId(id));
        }
        if !self.engine.account_exists(account) {
            return Err(invalid("order account"));
        }
        let level = self.engine.levels[level_index as usize];
        if order_side != side || price != level.price {
            return Err(invalid("order side or price (differs from its level)"));
        }
        if order_type != OrderType::Limit || !time_in_force.rests() {
            return Err(invalid("order type or time in force (cannot rest)"));
        }
        // A valid quantity bounds every product the hold formula forms, so checking the hold
        // after it cannot overflow.
        let leaves_valid = leaves.0 > 0 && leaves <= quantity;
        if validate_quantity(spec, quantity).is_err() || !leaves_valid {
            return Err(invalid("order quantity or leaves"));
        }
        if hold != order_hold(spec, side, price, leaves) {
            return Err(invalid("order hold"));
        }
        let level_quantity = level.quantity.0.checked_add(leaves.0);
        let level_quantity = level_quantity.ok_or(invalid("order (level total overflows)"))?;
        let slot = self.engine.orders_free.pop().expect("orders_max checked above");
        self.engine.orders[slot as usize] = OrderSlot {
            id,
            hold,
            price,
            quantity,
            leaves,
            account,
            instrument: spec.instrument,
            level: level_index,
            prev: level.tail,
            next: NONE,
            account_prev: NONE,
            account_next: NONE,
            side,
            order_type,
            time_in_force,
            post_only,
            self_trade_prevention,
        };
        if level.tail == NONE {
            self.engine.levels[level_index as usize].head = slot;
        } else {
            self.engine.orders[level.tail as usize].next = slot;
        }
        let level = &mut self.engine.levels[level_index as usize];
        level.tail = slot;
        level.orders += 1;
        level.quantity = Quantity(level_quantity);
        self.engine.order_index.insert(id.0, slot);
        Ok(())
    }

    /// Threads each account's orders in the listed order; every resting order must be listed
    /// exactly once, under its own account.
    fn order_lists(&mut self) -> Result<(), SnapshotError> {
        let section = self.reader.offset;
        let count = self.reader.u32()?;
        let mut previous = None;
        let mut linked = 0usize;
        for _ in 0..count {
            let offset = self.reader.offset;
            let account = AccountId(self.reader.u32()?);
            ascending(&mut previous, u64::from(account.0), "order list", offset)?;
            let orders = self.reader.u32()?;
            if !self.engine.account_exists(account) || orders == 0 {
                return Err(SnapshotError::Invalid { what: "order list", offset });
            }
            self.fit(Capacity::OrdersPerAccount, u64::from(orders), offset)?;
            for _ in 0..orders {
                let offset = self.reader.offset;
                let id = self.reader.u64()?;
                let slot = self.engine.order_index.get(id).filter(|&slot| {
                    let order = &self.engine.orders[slot as usize];
                    let linked = order.account_prev != NONE
                        || self.engine.accounts[account.0 as usize].head == slot;
                    order.account == account && !linked
                });
                let Some(slot) = slot else {
                    return Err(SnapshotError::Invalid { what: "order list entry", offset });
                };
                self.engine.link_account(slot);
                linked += 1;
            }
        }
        if linked != self.engine.order_index.len() {
            return Err(SnapshotError::Invalid {
                what: "order lists (order missing)",
                offset: section,
            });
        }
        Ok(())
    }

    fn transactions(&mut self) -> Result<(), SnapshotError> {
        let offset = self.reader.offset;
        let count = self.reader.u32()?;
        self.fit(Capacity::Transactions, u64::from(count), offset)?;
        let mut previous_seq = 0;
        for _ in 0..count {
            let offset = self.reader.offset;
            let id = TransactionId(self.reader.u128()?);
            let kind = self.reader.discriminant("transaction kind", decode_leg_kind)?;
            let debit_account = AccountId(self.reader.u32()?);
            let credit_account = AccountId(self.reader.u32()?);
            let asset = AssetId(self.reader.u16()?);
            let amount = Amount(self.reader.u128()?);
            let seq = self.reader.u64()?;
            if id.0 == 0 {
                return Err(SnapshotError::Invalid { what: "transaction id", offset });
            }
            if self.engine.transaction_index.get(id.0).is_some() {
                return Err(SnapshotError::DuplicateTransactionId(id));
            }
            let exists = |account| self.engine.account_exists(account);
            let world = AccountId::WORLD;
            let parties = match kind {
                LegKind::Deposit => debit_account == world && exists(credit_account),
                LegKind::Withdrawal => exists(debit_account) && credit_account == world,
                LegKind::Transfer => {
                    exists(debit_account)
                        && exists(credit_account)
                        && debit_account != credit_account
                }
                _ => false,
            };
            let live = self.engine.asset_live(asset).is_some();
            // Records are appended as commands execute, so their sequence numbers never fall.
            let in_sequence = previous_seq <= seq && seq <= self.engine.seq;
            if !parties || !live || amount.0 == 0 || !in_sequence {
                return Err(SnapshotError::Invalid { what: "transaction record", offset });
            }
            previous_seq = seq;
            let index = count_u32(self.engine.transactions.len());
            self.engine.transactions.push(TransactionRecord {
                id,
                kind,
                debit_account,
                credit_account,
                asset,
                amount,
                seq,
            });
            self.engine.transaction_index.insert(id.0, index);
        }
        Ok(())
    }
}
