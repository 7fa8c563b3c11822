//! Order entry: FIX application messages in, engine commands out; the sequenced output stream
//! in, execution reports out. Pure and deterministic: no sockets, no clock (the caller passes
//! `now_ns` for answers that no command carries), no randomness.
//!
//! # Flow
//!
//! 1. The session layer hands [`OrderEntry::on_message`] an application message of a logged-on
//!    session with the accounts that session may trade for. The answer is either an immediate
//!    reply (a reject, a status report) or a [`Submission`]: commands tagged with origins for the
//!    application loop, plus the [`Request`] that the caller must store (see [`store`]) before
//!    it submits them, because the journals do not know which session and ClOrdID a command
//!    came from.
//! 2. For every sequenced command of every source, in order, the caller passes the echo to
//!    [`OrderEntry::on_echo`] and each of its events to [`OrderEntry::on_event`], and calls
//!    [`OrderEntry::flush`] whenever the stream is at a command boundary with nothing more to
//!    deliver. Outbound messages appear in [`OrderEntry::poll_outbound`] as events arrive.
//!
//! # Origins and order ids
//!
//! An origin is `source << 24 | request number mod 2^24`; sources are [`SOURCE_FIX`] and
//! [`SOURCE_HTTP`]. Request numbers are never reused, so after a restart the stored requests
//! line up again with the journaled origins. Order ids are `source << 56 | n` with `n` from a
//! counter that never goes back either, so they are unique forever and never collide with the
//! ids another source picks with the same scheme.
//!
//! # FIX conventions
//!
//! - NewOrderSingle: TimeInForce defaults to Day for limit orders and to IOC for market orders
//!   (a market order cannot rest). ExecInst (18) containing `6` (ParticipateDoNotInitiate) makes
//!   the order post-only. A market buy may give CashOrderQty (152) instead of OrderQty (38): it
//!   then asks for up to the instrument's largest quantity within that budget.
//! - ClOrdID (11) and OrigClOrdID (41) are at most [`CL_ORD_ID_LEN_MAX`] bytes; a longer one is
//!   a session Reject with SessionRejectReason 5 (value out of range) naming the tag.
//! - Custom tag 8000, SelfTradePreventionMode: `0` none (the default; self-trades settle as a
//!   wash), `1` cancel the resting order, `2` cancel the incoming order, `3` cancel both.
//! - OrderID (37) is the engine's order id in decimal; ExecID (17) is `seq-index` of the event
//!   that caused the report (`-M`/`-T` for the maker's and taker's side of a trade), so it is
//!   the same after a replay; reports that no event causes (status, local rejects) use
//!   `X<now_ns>-<counter>`.
//! - Unknown symbols get a BusinessMessageReject with BusinessRejectReason 2 (unknown security),
//!   unsupported message types one with 3, a missing Account on a session that trades for
//!   several accounts one with 5 (conditionally required field missing). RefSeqNum (45) is left
//!   to the session layer, which knows the inbound sequence number.
//! - Field errors (missing required tag, undecodable value) are returned as [`FieldError`] for
//!   the session layer to answer with a Reject (3). A price or quantity that is well formed but
//!   not a whole number of ticks or lots is a business reject (OrdRejReason 18 or 13).
//!
//! # Memory
//!
//! Live orders are bounded by the engine's `orders_max`. Finished orders (filled, cancelled,
//! expired, rejected) stay answerable, for status requests, duplicate detection and "too late
//! to cancel", until [`OrderEntryConfig::retired_max`] newer ones have finished, oldest first;
//! the ClOrdIDs of cancel requests share that window. Duplicate ClOrdID detection is therefore
//! complete for live orders and for the most recent `retired_max` finished orders and requests.

mod clordid;
pub mod instrument;
mod reports;
mod retired;
pub mod store;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::hash_map::RawEntryMut;
use hashbrown::Equivalent;
use rustc_hash::FxHashMap;

use engine::decimal::DecimalError;
use engine::{
    AccountId, Amount, CancelReason, Command, CommandBody, Event, InstrumentId, NewOrder, OrderId,
    OrderType, Price, Quantity, RejectReason, SelfTradePrevention, Side, TimeInForce,
};
use sequencer::record::{EventRecord, Output};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use clordid::{ClOrdId, ClOrdIdTooLong};
pub use instrument::{Instrument, InstrumentError, Instruments};
pub use reports::utc_timestamp;
use reports::{tag, CancelReject, ExecId, Execution, MassCancelId, MassCancelReport};
use retired::{RetiredChunks, RetiredWindow};

use crate::message::{FieldError, Message};

/// Commands the FIX gateway submits carry this source in their origin's top byte.
pub const SOURCE_FIX: u8 = 1;
/// Commands of the HTTP API carry this source.
pub const SOURCE_HTTP: u8 = 2;

const ORIGIN_COUNTER_MASK: u64 = 0x00FF_FFFF;

/// The origin of part `number` of a source's requests.
pub fn origin(source: u8, number: u64) -> u32 {
    let counter = u32::try_from(number & ORIGIN_COUNTER_MASK).expect("masked to 24 bits");
    u32::from(source) << 24 | counter
}

/// The source that submitted a command with this origin.
pub fn origin_source(origin: u32) -> u8 {
    origin.to_be_bytes()[0]
}

/// A FIX session, named by the counterparty's CompID. Shared, not copied: every order and
/// report names its session, and cloning this is a reference count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    pub fn new(comp_id: impl AsRef<str>) -> SessionId {
        SessionId(Arc::from(comp_id.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored as the CompID text, as before it was shared.
impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SessionId, D::Error> {
        String::deserialize(deserializer).map(SessionId::new)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderEntryConfig {
    /// The source byte of this gateway's origins and order ids.
    pub source: u8,
    /// Finished orders and cancel-request ClOrdIDs remembered (see the module documentation).
    pub retired_max: usize,
}

impl Default for OrderEntryConfig {
    fn default() -> OrderEntryConfig {
        OrderEntryConfig { source: SOURCE_FIX, retired_max: 100_000 }
    }
}

/// OrdStatus (39) of an order in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrdStatus {
    /// Submitted and sequenced, not yet accepted by the engine.
    PendingNew,
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    Expired,
}

impl OrdStatus {
    /// The FIX code.
    pub fn code(self) -> char {
        match self {
            OrdStatus::PendingNew => 'A',
            OrdStatus::New => '0',
            OrdStatus::PartiallyFilled => '1',
            OrdStatus::Filled => '2',
            OrdStatus::Canceled => '4',
            OrdStatus::Rejected => '8',
            OrdStatus::Expired => 'C',
        }
    }

    /// Whether the order can no longer trade.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrdStatus::Filled | OrdStatus::Canceled | OrdStatus::Rejected | OrdStatus::Expired
        )
    }
}

/// One order of a FIX session, as its execution reports describe it. Enumerations are kept as
/// their FIX codes, so that the table serializes plainly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: u64,
    pub session: SessionId,
    pub account: u32,
    pub instrument: u32,
    /// Side (54): `1` buy, `2` sell.
    pub side: char,
    /// OrdType (40): `1` market, `2` limit.
    pub ord_type: char,
    /// TimeInForce (59): `0` day, `1` GTC, `3` IOC, `4` FOK.
    pub tif: char,
    /// Limit price in ticks.
    pub price: u64,
    /// Total quantity in lots, filled part included.
    pub quantity: u64,
    /// CashOrderQty of a market buy, in quote minor units.
    pub quote_budget: u128,
    pub cum: u64,
    pub leaves: u64,
    /// Sum of price × quantity over the fills, in ticks × lots: AvgPx's numerator.
    pub ticks_lots: u128,
    /// The current ClOrdID.
    pub cl_ord_id: ClOrdId,
    /// Every ClOrdID the order has had, oldest first, the current one last. Held inline up
    /// to two, so that an order cancelled or amended once allocates nothing for it (at 65
    /// bytes more per order than one), and retiring it reads no memory beyond the order's
    /// own. A longer chain spills to the heap, and that buffer passes to the next order that
    /// reuses the entry (`reuse_order`).
    pub chain: SmallVec<[ClOrdId; 2]>,
    pub status: OrdStatus,
}

/// What a stored request asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    New {
        order_id: u64,
    },
    Cancel {
        order_id: u64,
        orig_cl_ord_id: ClOrdId,
    },
    Replace {
        order_id: u64,
        orig_cl_ord_id: ClOrdId,
    },
    /// One command per account; `parts` consecutive request numbers from the request's.
    MassCancel {
        request_type: char,
        symbol: Option<String>,
        parts: u32,
    },
}

/// A request of a session that became commands: what the journals cannot tell about them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Never reused; the first command's origin counter.
    pub number: u64,
    pub session: SessionId,
    pub cl_ord_id: ClOrdId,
    pub kind: RequestKind,
}

impl Request {
    /// How many commands (and request numbers) the request takes.
    pub fn parts(&self) -> u32 {
        match self.kind {
            RequestKind::MassCancel { parts, .. } => parts,
            _ => 1,
        }
    }
}

/// Commands to submit, in order, with their origins, and the request to store first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Shared with the order entry's table of pending requests, which holds it until the
    /// commands are echoed: one allocation per request, not a copy per table, and that one
    /// recycled once the echo has come (see `OrderEntry::spare_requests`).
    pub request: Arc<Request>,
    pub commands: Commands,
}

/// A submission's commands with their origins: one, held inline, except for a mass cancel's
/// part per account.
pub type Commands = SmallVec<[(u32, CommandBody); 1]>;

/// The most of each kind of spare allocation (`Arc<Order>`, `Arc<Request>`) the order entry
/// keeps for reuse. In a steady state one is freed for every one taken, so a short list
/// suffices; the bound only keeps a burst from pinning memory.
const SPARES_MAX: usize = 1024;

/// The answer to an inbound application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Store the request, then submit the commands; reports follow from the stream.
    Submit(Submission),
    /// Send this to the session now; nothing goes to the engine.
    Reply(Message),
}

/// Progress of a mass cancel over its parts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassProgress {
    pub affected: u64,
    pub parts_done: u32,
    pub parts_rejected: u32,
    pub reject_text: Option<String>,
}

/// What leaves the window of remembered finished orders and ClOrdIDs, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retired {
    Order(u64),
    Key(SessionId, ClOrdId),
}

/// Everything the order entry knows, as of the end of command `seq`: with the requests stored
/// after it and the journals after `seq`, it rebuilds the same state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySnapshot {
    pub seq: u64,
    pub next_request: u64,
    pub next_order: u64,
    pub reply_counter: u64,
    /// Sorted by order id.
    pub orders: Vec<Arc<Order>>,
    pub retired: Vec<Retired>,
    /// Submitted but not yet sequenced, sorted by number.
    pub pending: Vec<Request>,
    /// Mass cancels with parts still to come, by request number.
    pub mass: Vec<(u64, MassProgress)>,
}

/// A snapshot as [`OrderEntry::capture`] took it, sharing the order entry's tables.
#[derive(Clone, Debug)]
pub struct EntryCapture {
    /// Everything but the retired window, in no particular order.
    snapshot: EntrySnapshot,
    retired: RetiredChunks,
}

impl EntryCapture {
    /// The snapshot, its retired window read out and its tables sorted.
    pub fn finish(self) -> EntrySnapshot {
        let mut snapshot = self.snapshot;
        snapshot.retired.clear();
        snapshot.retired.extend(self.retired.entries().cloned());
        snapshot.sort();
        snapshot
    }
}

impl EntrySnapshot {
    /// The snapshot emptied, its tables keeping their capacity for the next capture
    /// ([`OrderEntry::capture_into`]). The orders it shared are released here, on the caller's
    /// thread.
    pub fn recycle(mut self) -> EntrySnapshot {
        self.orders.clear();
        self.retired.clear();
        self.pending.clear();
        self.mass.clear();
        EntrySnapshot { seq: 0, next_request: 0, next_order: 0, reply_counter: 0, ..self }
    }

    /// Puts the tables in their canonical order (see the fields), so that equal states make
    /// equal snapshots.
    fn sort(&mut self) {
        self.orders.sort_by_key(|order| order.order_id);
        self.pending.sort_by_key(|request| request.number);
        // A mass cancel's request is pending under the origin of each of its parts.
        self.pending.dedup_by_key(|request| request.number);
        self.mass.sort_by_key(|(number, _)| *number);
    }
}

/// What a ClOrdID of a session stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClOrdRef {
    Order(u64),
    /// A cancel or mass cancel request: only its uniqueness matters.
    Request,
}

/// A ClOrdID table key borrowed from a message or an order: probing the table with it hashes
/// and compares like the owned `(SessionId, ClOrdId)` key, without copying either.
#[derive(Clone, Copy)]
struct ClOrdKey<'a>(&'a str, &'a str);

/// The same hash as the owned key's: a derived `Hash` of `SessionId` hashes its `str`, a
/// `ClOrdId` hashes as its text, and a tuple hashes its fields in order.
impl Hash for ClOrdKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0, self.1).hash(state);
    }
}

impl Equivalent<(SessionId, ClOrdId)> for ClOrdKey<'_> {
    fn equivalent(&self, key: &(SessionId, ClOrdId)) -> bool {
        self.0 == key.0.as_str() && self.1 == key.1.as_str()
    }
}

/// The command whose events are arriving.
#[derive(Debug)]
struct Current {
    seq: u64,
    timestamp_ns: u64,
    /// Ours: the request and which of its parts this command is.
    request: Option<Arc<Request>>,
    /// Orders a mass cancel part cancelled.
    affected: u64,
    rejected: Option<RejectReason>,
}

/// A request refused before it reached the engine.
enum Invalid {
    Field(FieldError),
    /// OrdRejReason (103) or CxlRejReason (102) and the text.
    Refused(u32, String),
}

impl From<FieldError> for Invalid {
    fn from(error: FieldError) -> Invalid {
        Invalid::Field(error)
    }
}

/// The order-entry application layer; see the module documentation.
#[derive(Debug)]
pub struct OrderEntry {
    instruments: Instruments,
    config: OrderEntryConfig,
    /// Live and recently finished orders by order id. Shared, so that a snapshot takes a
    /// reference to each rather than a copy: the FIX thread only collects them, and another
    /// thread writes them out. An order changed while a snapshot still holds it is copied
    /// first ([`Arc::make_mut`]).
    orders: FxHashMap<u64, Arc<Order>>,
    /// ClOrdIDs in use by session, probed with borrowed keys ([`ClOrdKey`]) so that a lookup
    /// allocates nothing. SipHash, as before: with Fx instead, both runs of `bench fix` at
    /// 50,000/s fell seconds behind, which a weakly mixed string hash would explain (not
    /// proven); the two SipHash runs beside them did not.
    clordids: hashbrown::HashMap<(SessionId, ClOrdId), ClOrdRef, RandomState>,
    retired: RetiredWindow,
    /// Requests submitted and not yet echoed, by origin.
    pending: FxHashMap<u32, Arc<Request>>,
    mass: FxHashMap<u64, MassProgress>,
    next_request: u64,
    next_order: u64,
    reply_counter: u64,
    /// The last command whose events are all in.
    seq: u64,
    current: Option<Current>,
    outbox: VecDeque<(SessionId, Message)>,
    /// Off while replaying: state is rebuilt, nothing is sent twice.
    output: bool,
    /// Orders retired from the table that nothing else held, reused for new ones: every order
    /// would otherwise cost an allocation on the FIX thread when it is echoed and a free when
    /// it is forgotten, which STYLE.md rules out on the hot path.
    spare_orders: Vec<Arc<Order>>,
    /// Requests answered whose last handle was the pending table's, reused likewise.
    spare_requests: Vec<Arc<Request>>,
}

impl OrderEntry {
    pub fn new(instruments: Instruments, config: OrderEntryConfig) -> OrderEntry {
        assert!(config.retired_max > 0, "the retired window must hold at least one entry");
        // The tables hold the live orders and the retired window, sized up front so that they
        // do not rehash while it fills: growing the ClOrdID table past 115,000 keys stalled the
        // FIX thread for 25-30 ms (every key hashed again), once per run of `bench fix`. Twice
        // the window: the ClOrdID table holds every ClOrdID of an order's chain (amends add
        // one each) and those of cancels, and the order table the live orders beside the
        // retired ones. At the default window that is about 60 MB, touched as it fills.
        let capacity = config.retired_max.saturating_mul(2);
        OrderEntry {
            instruments,
            config,
            orders: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            clordids: hashbrown::HashMap::with_capacity_and_hasher(capacity, Default::default()),
            retired: RetiredWindow::default(),
            pending: FxHashMap::default(),
            mass: FxHashMap::default(),
            next_request: 1,
            next_order: 1,
            reply_counter: 0,
            seq: 0,
            current: None,
            outbox: VecDeque::new(),
            output: true,
            spare_orders: Vec::new(),
            spare_requests: Vec::new(),
        }
    }

    /// The last command whose events were all processed: a replay continues after it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// An order of `session` by one of its ClOrdIDs, if still remembered.
    pub fn order_by_cl_ord_id(&self, session: &SessionId, cl_ord_id: &str) -> Option<&Order> {
        match self.clordids.get(&ClOrdKey(session.as_str(), cl_ord_id))? {
            ClOrdRef::Order(id) => self.orders.get(id).map(Arc::as_ref),
            ClOrdRef::Request => None,
        }
    }

    /// Orders the engine may still trade.
    pub fn live_orders(&self) -> usize {
        self.orders.values().filter(|order| !order.status.is_final()).count()
    }

    /// The next outbound message, in the order they were produced.
    pub fn poll_outbound(&mut self) -> Option<(SessionId, Message)> {
        self.outbox.pop_front()
    }

    // ---------------------------------------------------------------------------------------
    // Inbound application messages.

    /// Handles one application message of `session`, which may trade for `accounts`.
    pub fn on_message(
        &mut self,
        session: &SessionId,
        accounts: &[AccountId],
        message: &Message,
        now_ns: u64,
    ) -> Result<Response, FieldError> {
        match message.msg_type.as_str() {
            "D" => self.new_order_single(session, accounts, message, now_ns),
            "F" => self.cancel_or_replace(session, accounts, message, now_ns, false),
            "G" => self.cancel_or_replace(session, accounts, message, now_ns, true),
            "H" => self.order_status(session, message, now_ns),
            "q" => self.mass_cancel(session, accounts, message, now_ns),
            other => {
                let text = format!("unsupported message type {other}");
                Ok(Response::Reply(reports::business_reject(other, None, 3, &text)))
            }
        }
    }

    fn reply_exec_id(&mut self, now_ns: u64) -> ExecId {
        self.reply_counter += 1;
        ExecId::Reply { time_ns: now_ns, counter: self.reply_counter }
    }

    fn is_used(&self, session: &SessionId, cl_ord_id: &str) -> bool {
        self.clordids.contains_key(&ClOrdKey(session.as_str(), cl_ord_id))
    }

    fn new_order_single(
        &mut self,
        session: &SessionId,
        accounts: &[AccountId],
        message: &Message,
        now_ns: u64,
    ) -> Result<Response, FieldError> {
        let cl_ord_id = identifier(message.required(tag::CL_ORD_ID)?, tag::CL_ORD_ID)?;
        let symbol = message.required(tag::SYMBOL)?;
        let account = optional_account(message)?;
        let Some(instrument) = self.instruments.by_symbol(symbol) else {
            let text = format!("unknown symbol {symbol}");
            return Ok(Response::Reply(reports::business_reject("D", Some(&cl_ord_id), 2, &text)));
        };
        let mut order = match parse_new_order(instrument, message) {
            Err(Invalid::Field(error)) => return Err(error),
            Err(Invalid::Refused(reason, text)) => {
                return Ok(self.reject_new_order(message, reason, &text, now_ns));
            }
            Ok(order) => order,
        };
        if self.is_used(session, &cl_ord_id) {
            return Ok(self.reject_new_order(message, 6, "duplicate ClOrdID", now_ns));
        }
        let account = match (account, accounts) {
            (Some(account), _) if accounts.contains(&account) => account,
            (None, [only]) => *only,
            (None, _) => {
                let text = "Account (1) is required: the session trades for several accounts";
                let reply = reports::business_reject("D", Some(&cl_ord_id), 5, text);
                return Ok(Response::Reply(reply));
            }
            (Some(_), _) => {
                return Ok(self.reject_new_order(message, 15, "unknown account", now_ns));
            }
        };
        order.account = account;
        order.order_id = OrderId(u64::from(self.config.source) << 56 | self.next_order);
        self.next_order += 1;
        let request = Request {
            number: self.take_request_numbers(1),
            session: session.clone(),
            cl_ord_id,
            kind: RequestKind::New { order_id: order.order_id.0 },
        };
        Ok(Response::Submit(self.submit(request, [CommandBody::NewOrder(order)])))
    }

    fn reject_new_order(
        &mut self,
        message: &Message,
        reason: u32,
        text: &str,
        now_ns: u64,
    ) -> Response {
        let exec_id = self.reply_exec_id(now_ns);
        Response::Reply(reports::request_rejected(message, exec_id, '8', reason, text, now_ns))
    }

    fn take_request_numbers(&mut self, parts: u32) -> u64 {
        let number = self.next_request;
        self.next_request += u64::from(parts);
        number
    }

    /// Registers a request as pending and its ClOrdID as used, and tags its commands.
    fn submit(
        &mut self,
        request: Request,
        bodies: impl IntoIterator<Item = CommandBody>,
    ) -> Submission {
        let request = reuse_or_allocate(&mut self.spare_requests, request);
        self.register_request(&request);
        let source = self.config.source;
        let commands: Commands =
            (request.number..).zip(bodies).map(|(n, body)| (origin(source, n), body)).collect();
        debug_assert_eq!(usize::try_from(request.parts()).ok(), Some(commands.len()));
        Submission { request, commands }
    }

    /// Makes a request's ClOrdID count as used and its commands' echoes recognisable: on
    /// submission and again when a restart reloads it. A cancel's ClOrdID enters the window of
    /// remembered ClOrdIDs only when it is sequenced, so that the window's order follows the
    /// stream alone and a replay rebuilds it exactly.
    fn register_request(&mut self, request: &Arc<Request>) {
        let key = (request.session.clone(), request.cl_ord_id.clone());
        match request.kind {
            RequestKind::New { order_id } => {
                self.clordids.insert(key, ClOrdRef::Order(order_id));
            }
            _ => {
                self.clordids.entry(key).or_insert(ClOrdRef::Request);
            }
        }
        for number in request.number..request.number + u64::from(request.parts()) {
            self.pending.insert(origin(self.config.source, number), Arc::clone(request));
        }
    }

    /// Frees the ClOrdID of a request that will never be sequenced.
    fn forget_request(&mut self, request: &Request) {
        let key = ClOrdKey(request.session.as_str(), &request.cl_ord_id);
        let registered = match request.kind {
            RequestKind::New { order_id } => ClOrdRef::Order(order_id),
            _ => ClOrdRef::Request,
        };
        self.release_cl_ord_id(key, registered);
    }

    /// Frees a ClOrdID if it still stands for `registered` (a later order or request of the
    /// session may have taken it since), hashing and probing once.
    fn release_cl_ord_id(&mut self, key: ClOrdKey<'_>, registered: ClOrdRef) {
        if let RawEntryMut::Occupied(entry) = self.clordids.raw_entry_mut().from_key(&key) {
            if *entry.get() == registered {
                entry.remove();
            }
        }
    }

    /// Forgets a submission the application loop refused (a full ring): its commands will
    /// never be echoed. The caller answers the session, e.g. with a BusinessMessageReject.
    pub fn abandon(&mut self, submission: &Submission) {
        for (origin, _) in &submission.commands {
            self.pending.remove(origin);
        }
        self.forget_request(&submission.request);
    }

    /// The order `session` names by OrderID (37) if given, else by `cl_ord_id`; another
    /// session's order is as unknown as one that never existed.
    fn find_order(
        &self,
        session: &SessionId,
        order_id: Option<&str>,
        cl_ord_id: &str,
    ) -> Option<&Order> {
        let order = match order_id {
            Some(text) => self.orders.get(&text.parse::<u64>().ok()?)?,
            None => match self.clordids.get(&ClOrdKey(session.as_str(), cl_ord_id))? {
                ClOrdRef::Order(id) => self.orders.get(id)?,
                ClOrdRef::Request => return None,
            },
        };
        (order.session == *session).then_some(order.as_ref())
    }

    fn cancel_or_replace(
        &mut self,
        session: &SessionId,
        accounts: &[AccountId],
        message: &Message,
        now_ns: u64,
        replace: bool,
    ) -> Result<Response, FieldError> {
        let cl_ord_id = identifier(message.required(tag::CL_ORD_ID)?, tag::CL_ORD_ID)?;
        let orig = message
            .get(tag::ORIG_CL_ORD_ID)
            .map(|orig| identifier(orig, tag::ORIG_CL_ORD_ID))
            .transpose()?;
        let order_id_text = message.get(tag::ORDER_ID);
        if orig.is_none() && order_id_text.is_none() {
            return Err(FieldError::Missing(tag::ORIG_CL_ORD_ID));
        }
        let found = self
            .find_order(session, order_id_text, orig.as_deref().unwrap_or_default())
            .filter(|order| accounts.contains(&AccountId(order.account)));
        let mut refusal = match found {
            _ if self.is_used(session, &cl_ord_id) => Some((6, "duplicate ClOrdID".to_owned())),
            None => Some((1, "unknown order".to_owned())),
            Some(order) if order.status.is_final() => {
                Some((0, "too late to cancel: the order is no longer live".to_owned()))
            }
            Some(_) => None,
        };
        let mut amended = None;
        if let (true, None, Some(order)) = (replace, &refusal, found) {
            match self.parse_replacement(order, message) {
                Ok(values) => amended = Some(values),
                Err(Invalid::Field(error)) => return Err(error),
                Err(Invalid::Refused(_, text)) => refusal = Some((99, text)),
            }
        }
        let orig_text = match (&orig, found) {
            (Some(orig), _) => orig.as_str(),
            (None, Some(order)) => order.cl_ord_id.as_str(),
            (None, None) => "NONE",
        };
        if let Some((reason, text)) = refusal {
            let reject = CancelReject {
                order_id: found.map(|order| order.order_id),
                cl_ord_id: &cl_ord_id,
                orig_cl_ord_id: orig_text,
                ord_status: found.map_or('8', |order| order.status.code()),
                response_to: if replace { '2' } else { '1' },
                reason,
                text: &text,
                transact_time_ns: now_ns,
            };
            return Ok(Response::Reply(reports::cancel_reject(&reject)));
        }
        let order = found.expect("refused above when unknown");
        let (order_id, account) = (OrderId(order.order_id), AccountId(order.account));
        let orig_cl_ord_id = order.cl_ord_id.clone();
        let (kind, body) = match amended {
            Some((price, quantity)) => (
                RequestKind::Replace { order_id: order_id.0, orig_cl_ord_id },
                CommandBody::AmendOrder { order_id, account, price, quantity },
            ),
            None => (
                RequestKind::Cancel { order_id: order_id.0, orig_cl_ord_id },
                CommandBody::CancelOrder { order_id, account },
            ),
        };
        let request = Request {
            number: self.take_request_numbers(1),
            session: session.clone(),
            cl_ord_id,
            kind,
        };
        Ok(Response::Submit(self.submit(request, [body])))
    }

    /// The new price and total quantity of a cancel-replace; absent fields keep the order's.
    fn parse_replacement(
        &self,
        order: &Order,
        message: &Message,
    ) -> Result<(Price, Quantity), Invalid> {
        let Some(instrument) = self.instruments.by_id(InstrumentId(order.instrument)) else {
            return Err(Invalid::Refused(99, "instrument no longer listed".to_owned()));
        };
        let price = match message.get(tag::PRICE) {
            Some(text) => decimal(tag::PRICE, text, instrument.parse_price(text), 18)?,
            None => Price(order.price),
        };
        let quantity = match message.get(tag::ORDER_QTY) {
            Some(text) => decimal(tag::ORDER_QTY, text, instrument.parse_quantity(text), 13)?,
            None => Quantity(order.quantity),
        };
        Ok((price, quantity))
    }

    fn order_status(
        &mut self,
        session: &SessionId,
        message: &Message,
        now_ns: u64,
    ) -> Result<Response, FieldError> {
        let cl_ord_id = identifier(message.required(tag::CL_ORD_ID)?, tag::CL_ORD_ID)?;
        let exec_id = self.reply_exec_id(now_ns);
        let found = self.find_order(session, message.get(tag::ORDER_ID), &cl_ord_id);
        let report = found.and_then(|order| {
            let instrument = self.instruments.by_id(InstrumentId(order.instrument))?;
            let execution = Execution {
                exec_id,
                exec_type: 'I',
                renamed: false,
                last: None,
                ord_rej_reason: None,
                text: None,
                transact_time_ns: now_ns,
            };
            Some(reports::execution_report(order, instrument, &execution))
        });
        Ok(Response::Reply(report.unwrap_or_else(|| {
            reports::request_rejected(message, exec_id, 'I', 5, "unknown order", now_ns)
        })))
    }

    fn mass_cancel(
        &mut self,
        session: &SessionId,
        accounts: &[AccountId],
        message: &Message,
        now_ns: u64,
    ) -> Result<Response, FieldError> {
        let cl_ord_id = identifier(message.required(tag::CL_ORD_ID)?, tag::CL_ORD_ID)?;
        let request_type = message.required_char(tag::MASS_CANCEL_REQUEST_TYPE)?;
        let account = optional_account(message)?;
        let symbol = message.get(tag::SYMBOL);
        let instrument = match (request_type, symbol) {
            ('1', None) => return Err(FieldError::Missing(tag::SYMBOL)),
            ('1', Some(symbol)) => self.instruments.by_symbol(symbol).map(|i| Some(i.id)),
            ('7', _) => Some(None),
            _ => None,
        };
        let refusal = match (instrument, account) {
            _ if self.is_used(session, &cl_ord_id) => Some((99, "duplicate ClOrdID")),
            (None, _) if request_type == '1' => Some((1, "unknown symbol")),
            (None, _) => Some((0, "only mass cancel types 1 (symbol) and 7 (all) are supported")),
            (Some(_), Some(account)) if !accounts.contains(&account) => {
                Some((99, "unknown account"))
            }
            (Some(_), None) if accounts.is_empty() => Some((99, "the session has no accounts")),
            _ => None,
        };
        if let Some((reason, text)) = refusal {
            let exec_id = self.reply_exec_id(now_ns);
            return Ok(Response::Reply(reports::mass_cancel_report(&MassCancelReport {
                order_id: MassCancelId::Refused(exec_id),
                cl_ord_id: &cl_ord_id,
                request_type,
                response: '0',
                reject_reason: Some(reason),
                affected: 0,
                symbol,
                text: Some(text),
                transact_time_ns: now_ns,
            })));
        }
        let instrument = instrument.flatten();
        let targets = account.map_or_else(|| accounts.to_vec(), |account| vec![account]);
        let bodies: Vec<CommandBody> = targets
            .into_iter()
            .map(|account| CommandBody::MassCancel { account: Some(account), instrument })
            .collect();
        let parts = u32::try_from(bodies.len()).expect("a session has few accounts");
        let request = Request {
            number: self.take_request_numbers(parts),
            session: session.clone(),
            cl_ord_id,
            kind: RequestKind::MassCancel {
                request_type,
                symbol: symbol.filter(|_| request_type == '1').map(str::to_owned),
                parts,
            },
        };
        Ok(Response::Submit(self.submit(request, bodies)))
    }

    // ---------------------------------------------------------------------------------------
    // The sequenced output stream.

    /// A command as sequenced, from any source, before its events.
    pub fn on_echo(&mut self, origin: u32, command: &Command) {
        self.flush();
        let ours = origin_source(origin) == self.config.source;
        let request = if ours { self.pending.remove(&origin) } else { None };
        // A request whose commands do not match the echo is not this command's: after a restart
        // that lost a submission, its origin counter may name a different command.
        let request = request.filter(|request| matches_command(request, &command.body));
        match (&request, &command.body) {
            (Some(request), CommandBody::NewOrder(new)) => {
                let order = reuse_order(&mut self.spare_orders, new_order_entry(request, new));
                self.orders.insert(order.order_id, order);
            }
            (Some(request), _) if origin == self::origin(self.config.source, request.number) => {
                let key = Retired::Key(request.session.clone(), request.cl_ord_id.clone());
                self.retire(key);
            }
            _ => {}
        }
        self.current = Some(Current {
            seq: command.seq,
            timestamp_ns: command.timestamp_ns,
            request,
            affected: 0,
            rejected: None,
        });
    }

    /// One item of the application loop's output ring: an echo or an event.
    pub fn on_output(&mut self, output: &Output) {
        match output {
            Output::Echo { command, origin } => self.on_echo(*origin, command),
            Output::Event(record) => self.on_event(record),
        }
    }

    /// One event of the command last echoed.
    pub fn on_event(&mut self, record: &EventRecord) {
        if self.current.as_ref().is_some_and(|current| current.seq != record.seq) {
            self.flush();
        }
        let mut current = self.current.take();
        let exec_id = ExecId::Event { seq: record.seq, index: record.index, side: None };
        let time = record.timestamp_ns;
        match record.event {
            Event::Rejected { reason, .. } => {
                if let Some(current) = current.as_mut() {
                    self.on_rejected(current, reason, exec_id, time);
                }
            }
            Event::OrderAccepted { order_id, .. } => self.on_accepted(order_id, exec_id, time),
            Event::OrderAmended { order_id, price, quantity, leaves, .. } => {
                let request = current.as_ref().and_then(|current| current.request.as_deref());
                self.on_amended(order_id, price, quantity, leaves, request, exec_id, time);
            }
            Event::OrderCancelled { order_id, reason, .. } => {
                if let Some(current) = current.as_mut() {
                    current.affected += 1;
                }
                let request = current.as_ref().and_then(|current| current.request.as_deref());
                self.on_cancelled(order_id, reason, request, exec_id, time);
            }
            Event::Trade {
                maker_order_id,
                taker_order_id,
                price,
                quantity,
                maker_leaves,
                taker_leaves,
                ..
            } => {
                let side = |side| ExecId::Event { seq: record.seq, index: record.index, side };
                let maker = side(Some('M'));
                self.on_fill(maker_order_id, price, quantity, maker_leaves, maker, time);
                let taker = side(Some('T'));
                self.on_fill(taker_order_id, price, quantity, taker_leaves, taker, time);
            }
            _ => {}
        }
        self.current = current;
    }

    /// Ends the command last echoed: call when the stream is at a command boundary and has
    /// nothing more to deliver (the next echo ends it too). Mass cancel reports go out here,
    /// once every order a mass cancel touched has been counted.
    pub fn flush(&mut self) {
        let Some(current) = self.current.take() else { return };
        self.seq = self.seq.max(current.seq);
        let Some(request) = current.request else { return };
        let RequestKind::MassCancel { request_type, symbol, parts } = &request.kind else {
            keep_if_unshared(&mut self.spare_requests, request);
            return;
        };
        let progress = self.mass.entry(request.number).or_default();
        progress.affected += current.affected;
        progress.parts_done += 1;
        if let Some(reason) = current.rejected {
            progress.parts_rejected += 1;
            progress.reject_text = Some(reason.text().to_owned());
        }
        if progress.parts_done < *parts {
            return;
        }
        let progress = self.mass.remove(&request.number).expect("inserted above");
        let rejected = progress.parts_rejected == *parts;
        let report = reports::mass_cancel_report(&MassCancelReport {
            order_id: MassCancelId::Request(request.number),
            cl_ord_id: &request.cl_ord_id,
            request_type: *request_type,
            response: if rejected { '0' } else { *request_type },
            reject_reason: rejected.then_some(99),
            affected: progress.affected,
            symbol: symbol.as_deref(),
            text: progress.reject_text.as_deref(),
            transact_time_ns: current.timestamp_ns,
        });
        self.emit(request.session.clone(), report);
    }

    fn emit(&mut self, session: SessionId, message: Message) {
        if self.output {
            self.outbox.push_back((session, message));
        }
    }

    /// Sends an execution report about an order of the table.
    fn report(&mut self, order_id: u64, execution: &Execution<'_>) {
        let Some(order) = self.orders.get(&order_id) else { return };
        let Some(instrument) = self.instruments.by_id(InstrumentId(order.instrument)) else {
            return;
        };
        let message = reports::execution_report(order, instrument, execution);
        if self.output {
            self.outbox.push_back((order.session.clone(), message));
        }
    }

    fn on_rejected(
        &mut self,
        current: &mut Current,
        reason: RejectReason,
        exec_id: ExecId,
        time: u64,
    ) {
        let Some(request) = current.request.as_ref() else { return };
        match &request.kind {
            RequestKind::New { order_id } => {
                let Some(order) = self.orders.get_mut(order_id).map(Arc::make_mut) else { return };
                order.status = OrdStatus::Rejected;
                order.leaves = 0;
                let execution = Execution {
                    exec_id,
                    exec_type: '8',
                    renamed: false,
                    last: None,
                    ord_rej_reason: Some(ord_rej_reason(reason)),
                    text: Some(reason.text()),
                    transact_time_ns: time,
                };
                self.report(*order_id, &execution);
                self.retire(Retired::Order(*order_id));
            }
            RequestKind::Cancel { order_id, orig_cl_ord_id }
            | RequestKind::Replace { order_id, orig_cl_ord_id } => {
                let order = self.orders.get(order_id);
                let too_late = order.is_some_and(|order| order.status.is_final());
                let cxl_rej_reason = match reason {
                    RejectReason::UnknownOrder if too_late => 0,
                    RejectReason::UnknownOrder => 1,
                    _ => 99,
                };
                let replace = matches!(request.kind, RequestKind::Replace { .. });
                let reject = reports::cancel_reject(&CancelReject {
                    order_id: Some(*order_id),
                    cl_ord_id: &request.cl_ord_id,
                    orig_cl_ord_id,
                    ord_status: order.map_or('8', |order| order.status.code()),
                    response_to: if replace { '2' } else { '1' },
                    reason: cxl_rej_reason,
                    text: reason.text(),
                    transact_time_ns: time,
                });
                self.emit(request.session.clone(), reject);
            }
            RequestKind::MassCancel { .. } => current.rejected = Some(reason),
        }
    }

    fn on_accepted(&mut self, order_id: OrderId, exec_id: ExecId, time: u64) {
        let Some(order) = self.orders.get_mut(&order_id.0).map(Arc::make_mut) else { return };
        if order.status != OrdStatus::PendingNew {
            return;
        }
        order.status = OrdStatus::New;
        self.report(order_id.0, &simple_execution(exec_id, '0', false, time));
    }

    fn on_amended(
        &mut self,
        order_id: OrderId,
        price: Price,
        quantity: Quantity,
        leaves: Quantity,
        request: Option<&Request>,
        exec_id: ExecId,
        time: u64,
    ) {
        let Some(order) = self.orders.get_mut(&order_id.0).map(Arc::make_mut) else { return };
        order.price = price.0;
        order.quantity = quantity.0;
        order.leaves = leaves.0;
        let renamed = request.filter(|request| {
            matches!(request.kind, RequestKind::Replace { order_id: id, .. } if id == order_id.0)
        });
        if let Some(request) = renamed {
            order.cl_ord_id = request.cl_ord_id.clone();
            order.chain.push(request.cl_ord_id.clone());
            let key = (order.session.clone(), request.cl_ord_id.clone());
            self.clordids.insert(key, ClOrdRef::Order(order_id.0));
        }
        let execution = simple_execution(exec_id, '5', renamed.is_some(), time);
        self.report(order_id.0, &execution);
    }

    fn on_cancelled(
        &mut self,
        order_id: OrderId,
        reason: CancelReason,
        request: Option<&Request>,
        exec_id: ExecId,
        time: u64,
    ) {
        let Some(order) = self.orders.get_mut(&order_id.0).map(Arc::make_mut) else { return };
        order.leaves = 0;
        order.status =
            if reason == CancelReason::Expired { OrdStatus::Expired } else { OrdStatus::Canceled };
        let renamed = request.filter(|request| {
            matches!(request.kind, RequestKind::Cancel { order_id: id, .. } if id == order_id.0)
        });
        if let Some(request) = renamed {
            order.cl_ord_id = request.cl_ord_id.clone();
            order.chain.push(request.cl_ord_id.clone());
            let key = (order.session.clone(), request.cl_ord_id.clone());
            self.clordids.insert(key, ClOrdRef::Order(order_id.0));
        }
        let mass = request.is_some_and(|r| matches!(r.kind, RequestKind::MassCancel { .. }));
        let text = match reason {
            CancelReason::Requested if mass => Some("mass cancel"),
            CancelReason::Requested => None,
            CancelReason::ImmediateRemainder => {
                Some("unfilled remainder of an IOC or market order")
            }
            CancelReason::FillOrKill => Some("fill or kill order could not fill entirely"),
            CancelReason::SelfTrade => Some("self-trade prevention"),
            CancelReason::Expired => Some("expired at end of day"),
            CancelReason::BudgetExhausted => Some("quote budget exhausted"),
        };
        let exec_type = if reason == CancelReason::Expired { 'C' } else { '4' };
        let mut execution = simple_execution(exec_id, exec_type, renamed.is_some(), time);
        execution.text = text;
        self.report(order_id.0, &execution);
        self.retire(Retired::Order(order_id.0));
    }

    fn on_fill(
        &mut self,
        order_id: OrderId,
        price: Price,
        quantity: Quantity,
        leaves: Quantity,
        exec_id: ExecId,
        time: u64,
    ) {
        let Some(order) = self.orders.get_mut(&order_id.0).map(Arc::make_mut) else { return };
        order.cum += quantity.0;
        order.leaves = leaves.0;
        order.ticks_lots += u128::from(price.0) * u128::from(quantity.0);
        order.status = if leaves.0 == 0 { OrdStatus::Filled } else { OrdStatus::PartiallyFilled };
        // A market buy stopped by its budget is filled as far as it went; its quantity was a
        // cap, not a target, so the figures must still add up.
        assert!(order.cum <= order.quantity, "fills exceed the order quantity");
        let mut execution = simple_execution(exec_id, 'F', false, time);
        execution.last = Some((price, quantity));
        self.report(order_id.0, &execution);
        if leaves.0 == 0 {
            self.retire(Retired::Order(order_id.0));
        }
    }

    /// Adds to the window of remembered finished things, forgetting the oldest beyond it.
    fn retire(&mut self, entry: Retired) {
        self.retired.push_back(entry);
        while self.retired.len() > self.config.retired_max {
            match self.retired.pop_front().expect("longer than a positive maximum") {
                Retired::Order(order_id) => {
                    let Some(order) = self.orders.remove(&order_id) else { continue };
                    for cl_ord_id in &order.chain {
                        let key = ClOrdKey(order.session.as_str(), cl_ord_id);
                        self.release_cl_ord_id(key, ClOrdRef::Order(order_id));
                    }
                    keep_if_unshared(&mut self.spare_orders, order);
                }
                Retired::Key(session, cl_ord_id) => {
                    self.release_cl_ord_id(
                        ClOrdKey(session.as_str(), &cl_ord_id),
                        ClOrdRef::Request,
                    );
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Snapshots and recovery.

    /// The state as of the last command boundary, in canonical order; ends the current
    /// command first, so call it only when the stream is at a boundary.
    pub fn snapshot(&mut self) -> EntrySnapshot {
        self.capture().finish()
    }

    /// What [`OrderEntry::snapshot`] returns, not yet read out and sorted: the part that must
    /// run on the order entry's thread, kept short. The orders and the retired window are
    /// shared, not copied, and [`EntryCapture::finish`] is left to whoever stores the snapshot,
    /// on its own thread.
    pub fn capture(&mut self) -> EntryCapture {
        self.capture_into(EntrySnapshot::default())
    }

    /// [`OrderEntry::capture`] into the tables of `spare`, an earlier snapshot that
    /// [`EntrySnapshot::recycle`] emptied: a snapshot's tables are megabytes, and memory the
    /// process has not touched before costs a fault per page (on this virtual machine a huge
    /// page's first write takes milliseconds), so a node snapshotting every few seconds reuses
    /// what the last snapshot grew.
    pub fn capture_into(&mut self, spare: EntrySnapshot) -> EntryCapture {
        self.flush();
        let mut snapshot = spare.recycle();
        snapshot.seq = self.seq;
        snapshot.next_request = self.next_request;
        snapshot.next_order = self.next_order;
        snapshot.reply_counter = self.reply_counter;
        snapshot.orders.extend(self.orders.values().cloned());
        snapshot.pending.extend(self.pending.values().map(|request| Request::clone(request)));
        snapshot
            .mass
            .extend(self.mass.iter().map(|(number, progress)| (*number, progress.clone())));
        EntryCapture { snapshot, retired: self.retired.capture() }
    }

    /// Restores the state of a snapshot (or an empty one) and the requests stored after it,
    /// with output off: replay the journals after [`EntrySnapshot::seq`] through
    /// [`OrderEntry::on_echo`] and [`OrderEntry::on_event`], then call
    /// [`OrderEntry::finish_recovery`].
    pub fn restore(
        instruments: Instruments,
        config: OrderEntryConfig,
        snapshot: Option<EntrySnapshot>,
        stored: impl IntoIterator<Item = Request>,
    ) -> OrderEntry {
        let mut entry = OrderEntry::new(instruments, config);
        entry.output = false;
        let snapshot = snapshot.unwrap_or_default();
        entry.seq = snapshot.seq;
        entry.next_request = snapshot.next_request.max(1);
        entry.next_order = snapshot.next_order.max(1);
        entry.reply_counter = snapshot.reply_counter;
        for order in snapshot.orders {
            for cl_ord_id in &order.chain {
                let key = (order.session.clone(), cl_ord_id.clone());
                entry.clordids.insert(key, ClOrdRef::Order(order.order_id));
            }
            entry.orders.insert(order.order_id, order);
        }
        for retired in snapshot.retired {
            if let Retired::Key(session, cl_ord_id) = &retired {
                let key = (session.clone(), cl_ord_id.clone());
                entry.clordids.entry(key).or_insert(ClOrdRef::Request);
            }
            entry.retired.push_back(retired);
        }
        entry.mass = snapshot.mass.into_iter().collect();
        for request in snapshot.pending {
            entry.register_request(&Arc::new(request));
        }
        let first_new = entry.next_request;
        for request in stored.into_iter().filter(|request| request.number >= first_new) {
            entry.next_request =
                entry.next_request.max(request.number + u64::from(request.parts()));
            if let RequestKind::New { order_id } = request.kind {
                let counter = order_id & ((1 << 56) - 1);
                entry.next_order = entry.next_order.max(counter + 1);
            }
            entry.register_request(&Arc::new(request));
        }
        entry
    }

    /// Turns output on in the middle of a replay: reports of the commands replayed from here on
    /// go out. For commands that were sequenced but whose reports never left before a crash.
    pub fn resume_output(&mut self) {
        self.flush();
        self.output = true;
    }

    /// Ends a replay: turns output back on and forgets requests the journals never sequenced
    /// (they were in flight when the node stopped), returning them so the caller can log them.
    pub fn finish_recovery(&mut self) -> Vec<Request> {
        self.flush();
        self.output = true;
        let mut lost: Vec<Request> =
            self.pending.drain().map(|(_, request)| Arc::unwrap_or_clone(request)).collect();
        lost.sort_by_key(|request| request.number);
        lost.dedup_by_key(|request| request.number);
        for request in &lost {
            self.forget_request(request);
        }
        lost
    }
}

fn simple_execution(
    exec_id: ExecId,
    exec_type: char,
    renamed: bool,
    time: u64,
) -> Execution<'static> {
    Execution {
        exec_id,
        exec_type,
        renamed,
        last: None,
        ord_rej_reason: None,
        text: None,
        transact_time_ns: time,
    }
}

/// Whether an echoed command is the one a request submitted.
fn matches_command(request: &Request, body: &CommandBody) -> bool {
    match (&request.kind, body) {
        (RequestKind::New { order_id }, CommandBody::NewOrder(new)) => new.order_id.0 == *order_id,
        (RequestKind::Cancel { order_id, .. }, CommandBody::CancelOrder { order_id: id, .. })
        | (RequestKind::Replace { order_id, .. }, CommandBody::AmendOrder { order_id: id, .. }) => {
            id.0 == *order_id
        }
        (RequestKind::MassCancel { .. }, CommandBody::MassCancel { .. }) => true,
        _ => false,
    }
}

/// The table entry of a sequenced new order.
/// `value` in a spare allocation if one is kept, else in a new one.
fn reuse_or_allocate<T>(spares: &mut Vec<Arc<T>>, value: T) -> Arc<T> {
    match spares.pop() {
        Some(mut spare) => {
            // Spares are kept only while unshared (`keep_if_unshared`), and nothing can have
            // cloned one since, so this always finds the slot free.
            *Arc::get_mut(&mut spare).expect("spares are unshared") = value;
            spare
        }
        None => Arc::new(value),
    }
}

/// `order` in a spare allocation if one is kept, else in a new one. A spare's ClOrdID chain
/// keeps its buffer if amends or a cancel made it spill: in a steady flow of amended orders
/// the buffers then pass from finished orders to new ones instead of being freed and allocated
/// again.
fn reuse_order(spares: &mut Vec<Arc<Order>>, mut order: Order) -> Arc<Order> {
    let Some(mut spare) = spares.pop() else { return Arc::new(order) };
    let slot = Arc::get_mut(&mut spare).expect("spares are unshared");
    let mut chain = std::mem::take(&mut slot.chain);
    chain.clear();
    chain.extend(order.chain.drain(..));
    order.chain = chain;
    *slot = order;
    spare
}

/// Keeps `handle`'s allocation for reuse if it is the last handle and the list has room;
/// otherwise it is dropped as usual. A snapshot still holding an order keeps it shared, and
/// the snapshot's thread frees it later.
fn keep_if_unshared<T>(spares: &mut Vec<Arc<T>>, mut handle: Arc<T>) {
    if spares.len() < SPARES_MAX && Arc::get_mut(&mut handle).is_some() {
        spares.push(handle);
    }
}

fn new_order_entry(request: &Request, new: &NewOrder) -> Order {
    Order {
        order_id: new.order_id.0,
        session: request.session.clone(),
        account: new.account.0,
        instrument: new.instrument.0,
        side: match new.side {
            Side::Buy => '1',
            Side::Sell => '2',
        },
        ord_type: match new.order_type {
            OrderType::Market => '1',
            OrderType::Limit => '2',
        },
        tif: match new.time_in_force {
            TimeInForce::Day => '0',
            TimeInForce::Gtc => '1',
            TimeInForce::Ioc => '3',
            TimeInForce::Fok => '4',
        },
        price: new.price.0,
        quantity: new.quantity.0,
        quote_budget: new.quote_budget.0,
        cum: 0,
        leaves: new.quantity.0,
        ticks_lots: 0,
        cl_ord_id: request.cl_ord_id.clone(),
        chain: smallvec::smallvec![request.cl_ord_id.clone()],
        status: OrdStatus::PendingNew,
    }
}

/// OrdRejReason (103) for an engine reject.
fn ord_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownInstrument => 1,
        RejectReason::InstrumentHalted => 2,
        RejectReason::OrdersCapacityReached
        | RejectReason::AccountOrdersLimitReached
        | RejectReason::InsufficientFunds => 3,
        RejectReason::DuplicateOrderId => 6,
        RejectReason::PostOnlyWouldTake
        | RejectReason::MarketBuyNeedsBudget
        | RejectReason::UnexpectedBudget
        | RejectReason::InvalidTimeInForce => 11,
        RejectReason::InvalidQuantity => 13,
        RejectReason::UnknownAccount => 15,
        RejectReason::PriceOutsideBand => 16,
        RejectReason::InvalidPrice => 18,
        _ => 99,
    }
}

/// The longest ClOrdID (11) or OrigClOrdID (41) accepted, in bytes. Venues bound it (20 to 64
/// characters is usual); the bound also keeps every stored request well inside a request-log
/// record, whatever escaping its JSON needs.
pub const CL_ORD_ID_LEN_MAX: usize = 64;

/// A ClOrdID or OrigClOrdID within [`CL_ORD_ID_LEN_MAX`]; a longer one is a value out of range.
fn identifier(value: &str, tag: u32) -> Result<ClOrdId, FieldError> {
    ClOrdId::new(value).map_err(|_| {
        let shown: String = value.chars().take(CL_ORD_ID_LEN_MAX).collect();
        FieldError::BadValue { tag, value: format!("{shown}... (over {CL_ORD_ID_LEN_MAX} bytes)") }
    })
}

/// Account (1), if given.
fn optional_account(message: &Message) -> Result<Option<AccountId>, FieldError> {
    let Some(text) = message.get(tag::ACCOUNT) else { return Ok(None) };
    let account = text
        .parse::<u32>()
        .map_err(|_| FieldError::BadFormat { tag: tag::ACCOUNT, value: text.to_owned() })?;
    Ok(Some(AccountId(account)))
}

/// A decimal field converted to ticks or lots: malformed text is a field error, a value that
/// is not a whole number of increments a business reject with `reason`.
fn decimal<T>(
    tag: u32,
    text: &str,
    result: Result<T, DecimalError>,
    reason: u32,
) -> Result<T, Invalid> {
    result.map_err(|error| match error {
        DecimalError::Syntax => {
            Invalid::Field(FieldError::BadFormat { tag, value: text.to_owned() })
        }
        DecimalError::Overflow => {
            Invalid::Field(FieldError::BadValue { tag, value: text.to_owned() })
        }
        _ => Invalid::Refused(reason, format!("tag {tag}: {text} {error}")),
    })
}

/// A single-character enumeration: a supported value, a valid but unsupported one (a business
/// reject, OrdRejReason 11) or garbage (a field error).
fn enumeration<T>(
    message: &Message,
    tag: u32,
    default: Option<T>,
    supported: impl Fn(char) -> Option<T>,
) -> Result<T, Invalid> {
    let value = match (message.get(tag), default) {
        (None, Some(default)) => return Ok(default),
        _ => message.required_char(tag)?,
    };
    match supported(value) {
        Some(parsed) => Ok(parsed),
        None if value.is_ascii_alphanumeric() => {
            Err(Invalid::Refused(11, format!("tag {tag} value {value} is not supported")))
        }
        None => Err(Invalid::Field(FieldError::BadValue { tag, value: value.to_string() })),
    }
}

/// The fields of a NewOrderSingle as an engine order; the account and order id are filled in
/// by the caller.
fn parse_new_order(instrument: &Instrument, message: &Message) -> Result<NewOrder, Invalid> {
    let side = enumeration(message, tag::SIDE, None, |c| match c {
        '1' => Some(Side::Buy),
        '2' => Some(Side::Sell),
        _ => None,
    })?;
    let order_type = enumeration(message, tag::ORD_TYPE, None, |c| match c {
        '1' => Some(OrderType::Market),
        '2' => Some(OrderType::Limit),
        _ => None,
    })?;
    let default_tif =
        if order_type == OrderType::Market { TimeInForce::Ioc } else { TimeInForce::Day };
    let time_in_force = enumeration(message, tag::TIME_IN_FORCE, Some(default_tif), |c| match c {
        '0' => Some(TimeInForce::Day),
        '1' => Some(TimeInForce::Gtc),
        '3' => Some(TimeInForce::Ioc),
        '4' => Some(TimeInForce::Fok),
        _ => None,
    })?;
    let stp = SelfTradePrevention::None;
    let self_trade_prevention =
        enumeration(message, tag::SELF_TRADE_PREVENTION, Some(stp), |c| match c {
            '0' => Some(SelfTradePrevention::None),
            '1' => Some(SelfTradePrevention::CancelResting),
            '2' => Some(SelfTradePrevention::CancelIncoming),
            '3' => Some(SelfTradePrevention::CancelBoth),
            _ => None,
        })?;
    let post_only = message
        .get(tag::EXEC_INST)
        .is_some_and(|values| values.split(' ').any(|value| value == "6"));
    let price = match (order_type, message.get(tag::PRICE)) {
        (OrderType::Market, _) => Price(0),
        (OrderType::Limit, None) => return Err(FieldError::Missing(tag::PRICE).into()),
        (OrderType::Limit, Some(text)) => {
            decimal(tag::PRICE, text, instrument.parse_price(text), 18)?
        }
    };
    let quote_budget = match message.get(tag::CASH_ORDER_QTY) {
        None => Amount::ZERO,
        Some(text) => decimal(tag::CASH_ORDER_QTY, text, instrument.parse_quote_amount(text), 13)?,
    };
    let quantity = match message.get(tag::ORDER_QTY) {
        Some(text) => decimal(tag::ORDER_QTY, text, instrument.parse_quantity(text), 13)?,
        None if quote_budget != Amount::ZERO => instrument.quantity_max,
        None => return Err(FieldError::Missing(tag::ORDER_QTY).into()),
    };
    Ok(NewOrder {
        order_id: OrderId(0),
        account: AccountId(0),
        instrument: instrument.id,
        side,
        order_type,
        time_in_force,
        post_only,
        self_trade_prevention,
        price,
        quantity,
        quote_budget,
    })
}
