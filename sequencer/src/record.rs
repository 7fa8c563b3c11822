//! Fixed-size binary records for sequenced commands and for events: what the rings carry and
//! what the journals store. Every record is [`RECORD_BYTES`] long, little-endian and versioned.
//!
//! ```text
//! Command record (128 bytes)
//!  0        2     3     4              8                      16                     24
//!  +--------+-----+-----+--------------+----------------------+----------------------+
//!  |version |kind |flags| origin (u32) | seq (u64)            | timestamp_ns (u64)   |
//!  +--------+-----+-----+--------------+----------------------+----------------------+
//!  24                                                                               128
//!  +--------------------------------------------------------------------------------+
//!  | body: fields of `kind` in declaration order, packed, zero-padded to the end     |
//!  +--------------------------------------------------------------------------------+
//!
//! Event record (128 bytes)
//!  0        2     3     4              8                      16                     24
//!  +--------+-----+-----+--------------+----------------------+----------------------+
//!  |version |kind |flags| index (u32)  | seq (u64)            | timestamp_ns (u64)   |
//!  +--------+-----+-----+--------------+----------------------+----------------------+
//!  24                                                                               128
//!  +--------------------------------------------------------------------------------+
//!  | body: fields of `kind` in declaration order, packed, zero-padded to the end     |
//!  +--------------------------------------------------------------------------------+
//! ```
//!
//! A command record's `origin` is a tag its producer chose (which gateway, which request); the
//! engine never sees it, but it is journaled, for audit, and echoed back on the output ring so a
//! producer can tell which of its requests a sequenced command answers. `flags` is zero in the
//! journal; on an output ring, [`ECHO_FLAG`] marks a command echoed ahead of its events
//! ([`decode_output`]).
//!
//! An event record carries the sequence number and timestamp of the command that produced it and
//! its `index` among that command's events, so an event journal alone says which command caused
//! what. Body fields use their natural widths (`u8` enums by their stable discriminants, `u16`
//! reject codes, `u128` amounts); an optional id is a presence byte followed by the id. Decoding
//! checks the version, the kind, every discriminant and that the padding is zero, so a record
//! that decodes is exactly one that was encoded.

use engine::{
    AccountId, Amount, AssetId, Bucket, CancelReason, Command, CommandBody, Event, InstrumentId,
    InstrumentSpec, LegKind, NewOrder, OrderId, OrderType, Price, Quantity, RejectReason,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

/// Every record is this long.
pub const RECORD_BYTES: usize = 128;
/// Bumped whenever a layout changes; old journals are then read by the old decoder.
pub const RECORD_VERSION: u16 = 1;
const HEADER_BYTES: usize = 24;

/// One fixed-size record.
pub type Record = [u8; RECORD_BYTES];

/// Set in `flags` on an output ring's copy of a command record: the command as sequenced, ahead
/// of its events. Never set in a journal.
pub const ECHO_FLAG: u8 = 1;

/// What an output ring carries: each sequenced command (when the loop echoes commands) followed
/// by its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Echo { command: Command, origin: u32 },
    Event(EventRecord),
}

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record version {0} is not {RECORD_VERSION}")]
    Version(u16),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("invalid value {value} for field {field}")]
    Field { field: &'static str, value: u128 },
    #[error("non-zero padding after the body")]
    Padding,
}

/// Sequential little-endian writer over a record body.
struct Writer<'a> {
    bytes: &'a mut Record,
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, field: &[u8]) {
        self.bytes[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
    }
    fn u8(&mut self, value: u8) {
        self.put(&[value]);
    }
    fn u16(&mut self, value: u16) {
        self.put(&value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.put(&value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.put(&value.to_le_bytes());
    }
    fn u128(&mut self, value: u128) {
        self.put(&value.to_le_bytes());
    }
    fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }
}

/// Sequential little-endian reader over a record body.
struct Reader<'a> {
    bytes: &'a Record,
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0; N];
        field.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        field
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.take())
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8() {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(RecordError::Field { field, value: value.into() }),
        }
    }
    /// Everything after the body must be zero.
    fn finish(&self) -> Result<(), RecordError> {
        if self.bytes[self.at..].iter().any(|&byte| byte != 0) {
            return Err(RecordError::Padding);
        }
        Ok(())
    }
}

fn invalid(field: &'static str, value: u8) -> RecordError {
    RecordError::Field { field, value: value.into() }
}

fn side(value: u8) -> Result<Side, RecordError> {
    match value {
        1 => Ok(Side::Buy),
        2 => Ok(Side::Sell),
        _ => Err(invalid("side", value)),
    }
}

fn order_type(value: u8) -> Result<OrderType, RecordError> {
    match value {
        1 => Ok(OrderType::Limit),
        2 => Ok(OrderType::Market),
        _ => Err(invalid("order_type", value)),
    }
}

fn time_in_force(value: u8) -> Result<TimeInForce, RecordError> {
    match value {
        1 => Ok(TimeInForce::Gtc),
        2 => Ok(TimeInForce::Day),
        3 => Ok(TimeInForce::Ioc),
        4 => Ok(TimeInForce::Fok),
        _ => Err(invalid("time_in_force", value)),
    }
}

fn self_trade_prevention(value: u8) -> Result<SelfTradePrevention, RecordError> {
    match value {
        0 => Ok(SelfTradePrevention::None),
        1 => Ok(SelfTradePrevention::CancelResting),
        2 => Ok(SelfTradePrevention::CancelIncoming),
        3 => Ok(SelfTradePrevention::CancelBoth),
        _ => Err(invalid("self_trade_prevention", value)),
    }
}

fn cancel_reason(value: u8) -> Result<CancelReason, RecordError> {
    match value {
        1 => Ok(CancelReason::Requested),
        2 => Ok(CancelReason::ImmediateRemainder),
        3 => Ok(CancelReason::FillOrKill),
        4 => Ok(CancelReason::SelfTrade),
        5 => Ok(CancelReason::Expired),
        6 => Ok(CancelReason::BudgetExhausted),
        _ => Err(invalid("cancel_reason", value)),
    }
}

fn bucket(value: u8) -> Result<Bucket, RecordError> {
    match value {
        1 => Ok(Bucket::Available),
        2 => Ok(Bucket::Held),
        _ => Err(invalid("bucket", value)),
    }
}

fn leg_kind(value: u8) -> Result<LegKind, RecordError> {
    match value {
        1 => Ok(LegKind::Deposit),
        2 => Ok(LegKind::Withdrawal),
        3 => Ok(LegKind::Transfer),
        4 => Ok(LegKind::OrderHold),
        5 => Ok(LegKind::OrderRelease),
        6 => Ok(LegKind::TradeSettlement),
        7 => Ok(LegKind::Fee),
        _ => Err(invalid("leg_kind", value)),
    }
}

fn write_header(bytes: &mut Record, kind: u8, word: u32, seq: u64, timestamp_ns: u64) {
    bytes[0..2].copy_from_slice(&RECORD_VERSION.to_le_bytes());
    bytes[2] = kind;
    bytes[3] = 0;
    bytes[4..8].copy_from_slice(&word.to_le_bytes());
    bytes[8..16].copy_from_slice(&seq.to_le_bytes());
    bytes[16..24].copy_from_slice(&timestamp_ns.to_le_bytes());
}

/// The header fields of any record: `(kind, index or reserved word, seq, timestamp_ns)`.
fn read_header(bytes: &Record) -> Result<(u8, u32, u64, u64), RecordError> {
    let version = u16::from_le_bytes([bytes[0], bytes[1]]);
    if version != RECORD_VERSION {
        return Err(RecordError::Version(version));
    }
    if bytes[3] != 0 {
        return Err(invalid("flags", bytes[3]));
    }
    let word = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let timestamp_ns = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    Ok((bytes[2], word, seq, timestamp_ns))
}

/// A record as the journals store it: without the zero padding at its end, rounded up to the
/// journal's 8-byte payload granule. Bodies are packed and zero-padded, so most records end in
/// zeros: an event averages about 60 bytes of its 128, and the events journal is the node's
/// largest stream of writes. The record's first byte (the version) is never zero, so the stored
/// form is never empty.
pub fn journal_payload(bytes: &Record) -> &[u8] {
    // Whole granules, from the end: the last one with a non-zero byte ends the stored form.
    // This runs on the application loop for every record, so it compares words, not bytes.
    let granules = bytes
        .chunks_exact(JOURNAL_GRANULE)
        .rposition(|granule| granule.iter().any(|&byte| byte != 0))
        .map_or(1, |last| last + 1);
    &bytes[..granules * JOURNAL_GRANULE]
}

/// The record a journal payload stores ([`journal_payload`]), padded back to
/// [`RECORD_BYTES`]; `None` when the payload is longer than a record. A full-length payload, as
/// journals written before the padding was dropped hold, is the record itself.
pub fn from_journal_payload(payload: &[u8]) -> Option<Record> {
    let mut record = [0; RECORD_BYTES];
    record.get_mut(..payload.len())?.copy_from_slice(payload);
    Some(record)
}

/// Journal payloads are whole multiples of this many bytes.
const JOURNAL_GRANULE: usize = 8;

/// The sequence number of a record of either kind, without decoding its body.
pub fn record_seq(bytes: &Record) -> u64 {
    u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"))
}

// Command kinds. Stable wire values: append, never renumber.
const NEW_ORDER: u8 = 1;
const CANCEL_ORDER: u8 = 2;
const AMEND_ORDER: u8 = 3;
const MASS_CANCEL: u8 = 4;
const DEPOSIT: u8 = 5;
const WITHDRAW: u8 = 6;
const TRANSFER: u8 = 7;
const CREATE_ACCOUNT: u8 = 8;
const ADD_ASSET: u8 = 9;
const ADD_INSTRUMENT: u8 = 10;
const SET_INSTRUMENT_HALTED: u8 = 11;
const END_OF_DAY: u8 = 12;

/// Encodes a sequenced command with origin zero.
pub fn encode_command(command: &Command) -> Record {
    encode_command_from(command, 0)
}

/// Encodes a sequenced command with its producer's `origin` tag.
pub fn encode_command_from(command: &Command, origin: u32) -> Record {
    let mut bytes = [0; RECORD_BYTES];
    let kind = match command.body {
        CommandBody::NewOrder(_) => NEW_ORDER,
        CommandBody::CancelOrder { .. } => CANCEL_ORDER,
        CommandBody::AmendOrder { .. } => AMEND_ORDER,
        CommandBody::MassCancel { .. } => MASS_CANCEL,
        CommandBody::Deposit { .. } => DEPOSIT,
        CommandBody::Withdraw { .. } => WITHDRAW,
        CommandBody::Transfer { .. } => TRANSFER,
        CommandBody::CreateAccount { .. } => CREATE_ACCOUNT,
        CommandBody::AddAsset { .. } => ADD_ASSET,
        CommandBody::AddInstrument(_) => ADD_INSTRUMENT,
        CommandBody::SetInstrumentHalted { .. } => SET_INSTRUMENT_HALTED,
        CommandBody::EndOfDay { .. } => END_OF_DAY,
    };
    write_header(&mut bytes, kind, origin, command.seq, command.timestamp_ns);
    let mut out = Writer { bytes: &mut bytes, at: HEADER_BYTES };
    match command.body {
        CommandBody::NewOrder(order) => write_new_order(&mut out, &order),
        CommandBody::CancelOrder { order_id, account } => {
            out.u64(order_id.0);
            out.u32(account.0);
        }
        CommandBody::AmendOrder { order_id, account, price, quantity } => {
            out.u64(order_id.0);
            out.u32(account.0);
            out.u64(price.0);
            out.u64(quantity.0);
        }
        CommandBody::MassCancel { account, instrument } => {
            out.bool(account.is_some());
            out.u32(account.map_or(0, |account| account.0));
            out.bool(instrument.is_some());
            out.u32(instrument.map_or(0, |instrument| instrument.0));
        }
        CommandBody::Deposit { transaction_id, account, asset, amount }
        | CommandBody::Withdraw { transaction_id, account, asset, amount } => {
            out.u128(transaction_id.0);
            out.u32(account.0);
            out.u16(asset.0);
            out.u128(amount.0);
        }
        CommandBody::Transfer { transaction_id, from, to, asset, amount } => {
            out.u128(transaction_id.0);
            out.u32(from.0);
            out.u32(to.0);
            out.u16(asset.0);
            out.u128(amount.0);
        }
        CommandBody::CreateAccount { account } => out.u32(account.0),
        CommandBody::AddAsset { asset, scale } => {
            out.u16(asset.0);
            out.u8(scale);
        }
        CommandBody::AddInstrument(spec) => write_spec(&mut out, &spec),
        CommandBody::SetInstrumentHalted { instrument, halted } => {
            out.u32(instrument.0);
            out.bool(halted);
        }
        CommandBody::EndOfDay { instrument } => {
            out.bool(instrument.is_some());
            out.u32(instrument.map_or(0, |instrument| instrument.0));
        }
    }
    bytes
}

fn write_new_order(out: &mut Writer<'_>, order: &NewOrder) {
    out.u64(order.order_id.0);
    out.u32(order.account.0);
    out.u32(order.instrument.0);
    out.u8(order.side as u8);
    out.u8(order.order_type as u8);
    out.u8(order.time_in_force as u8);
    out.bool(order.post_only);
    out.u8(order.self_trade_prevention as u8);
    out.u64(order.price.0);
    out.u64(order.quantity.0);
    out.u128(order.quote_budget.0);
}

fn write_spec(out: &mut Writer<'_>, spec: &InstrumentSpec) {
    out.u32(spec.instrument.0);
    out.u16(spec.base_asset.0);
    out.u16(spec.quote_asset.0);
    out.u64(spec.tick_size.0);
    out.u64(spec.lot_size.0);
    out.u64(spec.quantity_min.0);
    out.u64(spec.quantity_max.0);
    out.u64(spec.base_per_lot);
    out.u64(spec.quote_per_tick_lot);
    out.u64(spec.reference_price.0);
    out.u16(spec.band_bps);
    out.u16(spec.maker_fee_bps);
    out.u16(spec.taker_fee_bps);
}

fn read_spec(input: &mut Reader<'_>) -> InstrumentSpec {
    InstrumentSpec {
        instrument: InstrumentId(input.u32()),
        base_asset: AssetId(input.u16()),
        quote_asset: AssetId(input.u16()),
        tick_size: Price(input.u64()),
        lot_size: Quantity(input.u64()),
        quantity_min: Quantity(input.u64()),
        quantity_max: Quantity(input.u64()),
        base_per_lot: input.u64(),
        quote_per_tick_lot: input.u64(),
        reference_price: Price(input.u64()),
        band_bps: input.u16(),
        maker_fee_bps: input.u16(),
        taker_fee_bps: input.u16(),
    }
}

fn read_optional_u32(
    input: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<u32>, RecordError> {
    let present = input.bool(field)?;
    let value = input.u32();
    match (present, value) {
        (true, value) => Ok(Some(value)),
        (false, 0) => Ok(None),
        (false, _) => Err(RecordError::Field { field, value: value.into() }),
    }
}

/// Decodes a command record, dropping its origin.
pub fn decode_command(bytes: &Record) -> Result<Command, RecordError> {
    decode_command_origin(bytes).map(|(command, _)| command)
}

/// Decodes an output ring record: an echoed command or an event.
pub fn decode_output(bytes: &Record) -> Result<Output, RecordError> {
    if bytes[3] == ECHO_FLAG {
        let mut command = *bytes;
        command[3] = 0;
        let (command, origin) = decode_command_origin(&command)?;
        return Ok(Output::Echo { command, origin });
    }
    decode_event(bytes).map(Output::Event)
}

/// Decodes a command record and the origin tag its producer gave it.
pub fn decode_command_origin(bytes: &Record) -> Result<(Command, u32), RecordError> {
    let (kind, origin, seq, timestamp_ns) = read_header(bytes)?;
    let mut input = Reader { bytes, at: HEADER_BYTES };
    let body = match kind {
        NEW_ORDER => CommandBody::NewOrder(NewOrder {
            order_id: OrderId(input.u64()),
            account: AccountId(input.u32()),
            instrument: InstrumentId(input.u32()),
            side: side(input.u8())?,
            order_type: order_type(input.u8())?,
            time_in_force: time_in_force(input.u8())?,
            post_only: input.bool("post_only")?,
            self_trade_prevention: self_trade_prevention(input.u8())?,
            price: Price(input.u64()),
            quantity: Quantity(input.u64()),
            quote_budget: Amount(input.u128()),
        }),
        CANCEL_ORDER => CommandBody::CancelOrder {
            order_id: OrderId(input.u64()),
            account: AccountId(input.u32()),
        },
        AMEND_ORDER => CommandBody::AmendOrder {
            order_id: OrderId(input.u64()),
            account: AccountId(input.u32()),
            price: Price(input.u64()),
            quantity: Quantity(input.u64()),
        },
        MASS_CANCEL => CommandBody::MassCancel {
            account: read_optional_u32(&mut input, "account")?.map(AccountId),
            instrument: read_optional_u32(&mut input, "instrument")?.map(InstrumentId),
        },
        DEPOSIT | WITHDRAW => {
            let transaction_id = TransactionId(input.u128());
            let account = AccountId(input.u32());
            let asset = AssetId(input.u16());
            let amount = Amount(input.u128());
            if kind == DEPOSIT {
                CommandBody::Deposit { transaction_id, account, asset, amount }
            } else {
                CommandBody::Withdraw { transaction_id, account, asset, amount }
            }
        }
        TRANSFER => CommandBody::Transfer {
            transaction_id: TransactionId(input.u128()),
            from: AccountId(input.u32()),
            to: AccountId(input.u32()),
            asset: AssetId(input.u16()),
            amount: Amount(input.u128()),
        },
        CREATE_ACCOUNT => CommandBody::CreateAccount { account: AccountId(input.u32()) },
        ADD_ASSET => CommandBody::AddAsset { asset: AssetId(input.u16()), scale: input.u8() },
        ADD_INSTRUMENT => CommandBody::AddInstrument(read_spec(&mut input)),
        SET_INSTRUMENT_HALTED => CommandBody::SetInstrumentHalted {
            instrument: InstrumentId(input.u32()),
            halted: input.bool("halted")?,
        },
        END_OF_DAY => CommandBody::EndOfDay {
            instrument: read_optional_u32(&mut input, "instrument")?.map(InstrumentId),
        },
        other => return Err(RecordError::Kind(other)),
    };
    input.finish()?;
    Ok((Command { seq, timestamp_ns, body }, origin))
}

// Event kinds. Stable wire values: append, never renumber.
const REJECTED: u8 = 1;
const ORDER_ACCEPTED: u8 = 2;
const ORDER_RESTED: u8 = 3;
const ORDER_AMENDED: u8 = 4;
const ORDER_CANCELLED: u8 = 5;
const TRADE: u8 = 6;
const LEDGER: u8 = 7;
const TRANSACTION_DUPLICATE: u8 = 8;
const ACCOUNT_CREATED: u8 = 9;
const ASSET_ADDED: u8 = 10;
const INSTRUMENT_ADDED: u8 = 11;
const INSTRUMENT_HALTED: u8 = 12;

/// An event as journaled: the event and the command that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRecord {
    pub seq: u64,
    pub timestamp_ns: u64,
    /// Position among the events of command `seq`, from zero.
    pub index: u32,
    pub event: Event,
}

/// Encodes one event of command `seq`.
// tidy: long function, one flat match with an arm per event variant.
pub fn encode_event(record: &EventRecord) -> Record {
    let mut bytes = [0; RECORD_BYTES];
    let kind = match record.event {
        Event::Rejected { .. } => REJECTED,
        Event::OrderAccepted { .. } => ORDER_ACCEPTED,
        Event::OrderRested { .. } => ORDER_RESTED,
        Event::OrderAmended { .. } => ORDER_AMENDED,
        Event::OrderCancelled { .. } => ORDER_CANCELLED,
        Event::Trade { .. } => TRADE,
        Event::Ledger { .. } => LEDGER,
        Event::TransactionDuplicate { .. } => TRANSACTION_DUPLICATE,
        Event::AccountCreated { .. } => ACCOUNT_CREATED,
        Event::AssetAdded { .. } => ASSET_ADDED,
        Event::InstrumentAdded(_) => INSTRUMENT_ADDED,
        Event::InstrumentHalted { .. } => INSTRUMENT_HALTED,
    };
    write_header(&mut bytes, kind, record.index, record.seq, record.timestamp_ns);
    let mut out = Writer { bytes: &mut bytes, at: HEADER_BYTES };
    match record.event {
        Event::Rejected { reason, reference } => {
            out.u16(reason.code());
            out.u128(reference);
        }
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
            quote_budget,
        } => {
            let order = NewOrder {
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
                quote_budget,
            };
            write_new_order(&mut out, &order);
        }
        Event::OrderRested { order_id } => out.u64(order_id.0),
        Event::OrderAmended { order_id, price, quantity, leaves, priority_kept } => {
            out.u64(order_id.0);
            out.u64(price.0);
            out.u64(quantity.0);
            out.u64(leaves.0);
            out.bool(priority_kept);
        }
        Event::OrderCancelled { order_id, leaves, reason } => {
            out.u64(order_id.0);
            out.u64(leaves.0);
            out.u8(reason as u8);
        }
        Event::Trade {
            instrument,
            maker_order_id,
            taker_order_id,
            taker_side,
            price,
            quantity,
            maker_leaves,
            taker_leaves,
        } => {
            out.u32(instrument.0);
            out.u64(maker_order_id.0);
            out.u64(taker_order_id.0);
            out.u8(taker_side as u8);
            out.u64(price.0);
            out.u64(quantity.0);
            out.u64(maker_leaves.0);
            out.u64(taker_leaves.0);
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
            out.u8(kind as u8);
            out.u16(asset.0);
            out.u32(debit_account.0);
            out.u8(debit_bucket as u8);
            out.u32(credit_account.0);
            out.u8(credit_bucket as u8);
            out.u128(amount.0);
            out.u64(order_id.0);
            out.u128(transaction_id.0);
        }
        Event::TransactionDuplicate { transaction_id, original_seq } => {
            out.u128(transaction_id.0);
            out.u64(original_seq);
        }
        Event::AccountCreated { account } => out.u32(account.0),
        Event::AssetAdded { asset, scale } => {
            out.u16(asset.0);
            out.u8(scale);
        }
        Event::InstrumentAdded(spec) => write_spec(&mut out, &spec),
        Event::InstrumentHalted { instrument, halted } => {
            out.u32(instrument.0);
            out.bool(halted);
        }
    }
    bytes
}

/// Decodes an event record.
// tidy: long function, one flat match with an arm per event variant.
pub fn decode_event(bytes: &Record) -> Result<EventRecord, RecordError> {
    let (kind, index, seq, timestamp_ns) = read_header(bytes)?;
    let mut input = Reader { bytes, at: HEADER_BYTES };
    let event = match kind {
        REJECTED => {
            let code = input.u16();
            let reason = RejectReason::from_code(code)
                .ok_or(RecordError::Field { field: "reject_reason", value: code.into() })?;
            Event::Rejected { reason, reference: input.u128() }
        }
        ORDER_ACCEPTED => Event::OrderAccepted {
            order_id: OrderId(input.u64()),
            account: AccountId(input.u32()),
            instrument: InstrumentId(input.u32()),
            side: side(input.u8())?,
            order_type: order_type(input.u8())?,
            time_in_force: time_in_force(input.u8())?,
            post_only: input.bool("post_only")?,
            self_trade_prevention: self_trade_prevention(input.u8())?,
            price: Price(input.u64()),
            quantity: Quantity(input.u64()),
            quote_budget: Amount(input.u128()),
        },
        ORDER_RESTED => Event::OrderRested { order_id: OrderId(input.u64()) },
        ORDER_AMENDED => Event::OrderAmended {
            order_id: OrderId(input.u64()),
            price: Price(input.u64()),
            quantity: Quantity(input.u64()),
            leaves: Quantity(input.u64()),
            priority_kept: input.bool("priority_kept")?,
        },
        ORDER_CANCELLED => Event::OrderCancelled {
            order_id: OrderId(input.u64()),
            leaves: Quantity(input.u64()),
            reason: cancel_reason(input.u8())?,
        },
        TRADE => Event::Trade {
            instrument: InstrumentId(input.u32()),
            maker_order_id: OrderId(input.u64()),
            taker_order_id: OrderId(input.u64()),
            taker_side: side(input.u8())?,
            price: Price(input.u64()),
            quantity: Quantity(input.u64()),
            maker_leaves: Quantity(input.u64()),
            taker_leaves: Quantity(input.u64()),
        },
        LEDGER => Event::Ledger {
            kind: leg_kind(input.u8())?,
            asset: AssetId(input.u16()),
            debit_account: AccountId(input.u32()),
            debit_bucket: bucket(input.u8())?,
            credit_account: AccountId(input.u32()),
            credit_bucket: bucket(input.u8())?,
            amount: Amount(input.u128()),
            order_id: OrderId(input.u64()),
            transaction_id: TransactionId(input.u128()),
        },
        TRANSACTION_DUPLICATE => Event::TransactionDuplicate {
            transaction_id: TransactionId(input.u128()),
            original_seq: input.u64(),
        },
        ACCOUNT_CREATED => Event::AccountCreated { account: AccountId(input.u32()) },
        ASSET_ADDED => Event::AssetAdded { asset: AssetId(input.u16()), scale: input.u8() },
        INSTRUMENT_ADDED => Event::InstrumentAdded(read_spec(&mut input)),
        INSTRUMENT_HALTED => Event::InstrumentHalted {
            instrument: InstrumentId(input.u32()),
            halted: input.bool("halted")?,
        },
        other => return Err(RecordError::Kind(other)),
    };
    input.finish()?;
    Ok(EventRecord { seq, timestamp_ns, index, event })
}
