//! `exchange bench fix`: wire-to-wire FIX 4.4 latency and throughput against a running node.
//!
//! The load generator is one thread that drives N FIX sessions over loopback TCP. Each session
//! is a small initiator written here (not the gateway's session layer, so the two cannot share a
//! bug): Logon with Username (553), Password (554) and ResetSeqNumFlag (141), sequence numbers,
//! BodyLength and CheckSum by `gateway::fix::codec::encode`, TestRequests answered, Logout at the
//! end. One thread serves every session because on two cores the application loop owns one core
//! and the generator shares the other with the gateway's I/O thread: a thread per session would
//! only add context switches.
//!
//! - Open loop, per offered rate: message `i` is due at `t0 + i / rate` and goes to session
//!   `i mod N`. It is written to its socket at that time whatever the answers so far (sockets are
//!   non-blocking; a message that does not fit waits in the session's buffer, its due time
//!   unchanged). Latency is the arrival of the first answer (ExecutionReport, or a reject)
//!   referring to the message minus its due time, so coordinated omission is corrected: a stall
//!   charges every message scheduled behind it. NewOrderSingle, OrderCancelRequest and
//!   OrderCancelReplaceRequest answers go to separate histograms; the headline is
//!   NewOrderSingle → first ExecutionReport. A warm-up at the same rate precedes each measured
//!   part and is not recorded.
//! - The headline is also split in two, to show where a message waited: from its due time to
//!   the start of the write that sent it (the generator waiting for a core it shares with the
//!   node's FIX thread and helpers), and from there to the answer read (the node's work, plus
//!   any wait of the generator to read the answer). The split is a diagnosis; the headline is
//!   the whole.
//! - Closed loop: each session keeps a fixed window of unanswered messages and sends the next
//!   one as soon as an answer arrives; answered messages per second is the sustained throughput.
//!
//! The order mix on one instrument around a fixed mid price: limit GTC orders on both sides
//! (buys from 22 ticks below to 2 above the mid, sells mirrored, so some cross and fill), cancels
//! of the oldest resting order, amends (quantity down or price one tick away), IOC limit orders
//! that cross, and market orders. Each session keeps at most `live_orders_max` resting orders and
//! cancels the oldest beyond that, so the book stays bounded and a long run is steady.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSliceMut, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway::fix::codec::{encode, format_utc_timestamp, FrameBuffer, Header};
use gateway::Message;
use hdrhistogram::Histogram;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};
use nix::sys::time::TimeSpec;
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::durable::{describe_pinning, nanos_since, pin, Schedule};
use crate::report::{self, human_ns, human_rate, percentile_table, LatencySummary, Machine};
use crate::rng::SplitMix64;
use crate::runner::{self, Pinning};
use crate::BenchError;

/// The offered rate when none is given, orders per second over all sessions.
pub const DEFAULT_RATE: u64 = 50_000;
/// Each phase starts this long after it is set up.
const START_LEAD_NS: u64 = 1_000_000;
/// Unanswered messages after this long past the last send are reported as lost.
const DRAIN_NS: u64 = 5_000_000_000;
/// Logon and Logout answers must arrive within this.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// HeartBtInt (108) we ask for; the runs send far more often than this.
const HEARTBEAT_S: u32 = 30;
/// Largest inbound message we accept.
const BODY_LENGTH_MAX: usize = 64 * 1024;

/// The longest the generator sleeps between looks at its deadlines when nothing is due and
/// nothing arrives.
const WAIT_MAX_NS: u64 = 1_000_000;

/// How close to its last activity or to the next due time the generator spins rather than
/// sleeps; see `Generator::wait`.
const SPIN_NS: u64 = 100_000;

/// One session's credentials: our SenderCompID and its Password (554), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixLogin {
    pub comp_id: String,
    pub password: Option<String>,
}

/// How long each measured part lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Nanoseconds of sending at the offered rate.
    Nanos(u64),
    /// Order-entry messages (new, cancel, amend) sent.
    Messages(u64),
}

/// Settings of one `exchange bench fix` run.
#[derive(Clone, Debug)]
pub struct FixBenchConfig {
    pub address: SocketAddr,
    /// The node's CompID (our TargetCompID).
    pub target_comp_id: String,
    pub sessions: Vec<FixLogin>,
    pub symbol: String,
    /// Mid price in whole quote units; the instrument's tick must be 1 and its lot 0.01.
    pub mid_price: u64,
    /// Offered rates of the open-loop parts, messages per second over all sessions; the first
    /// is the headline.
    pub rates_per_sec: Vec<u64>,
    pub measured: Length,
    /// Warm-up before each measured part, at its rate, not recorded.
    pub warmup_ns: u64,
    /// Length of the closed-loop part; zero skips it.
    pub closed_loop_ns: u64,
    /// Unanswered messages per session in the closed loop.
    pub window: usize,
    /// Resting orders per session beyond which the next message is a cancel.
    pub live_orders_max: usize,
    pub seed: u64,
    pub out_dir: PathBuf,
    /// The node's durability policy, as the CLI spells it, for the report.
    pub durability: String,
    /// When the node releases reports (`written` or `durable`), for the report.
    pub release: String,
    /// Where the node runs and how its threads wait and are pinned, for the report.
    pub node: String,
}

impl FixBenchConfig {
    /// Settings for `address` with the default run length.
    pub fn new(address: SocketAddr, sessions: Vec<FixLogin>) -> FixBenchConfig {
        FixBenchConfig {
            address,
            target_comp_id: "EXCHANGE".to_string(),
            sessions,
            symbol: "BTC-USD".to_string(),
            mid_price: 60_000,
            rates_per_sec: vec![DEFAULT_RATE],
            measured: Length::Nanos(10_000_000_000),
            warmup_ns: 3_000_000_000,
            closed_loop_ns: 5_000_000_000,
            window: 64,
            live_orders_max: 200,
            seed: 1,
            out_dir: PathBuf::from("bench-out"),
            durability: "unknown".to_string(),
            release: "unknown".to_string(),
            node: "unknown".to_string(),
        }
    }

    /// A smoke-test run: a fraction of a second per part.
    pub fn quick(address: SocketAddr, sessions: Vec<FixLogin>) -> FixBenchConfig {
        FixBenchConfig {
            rates_per_sec: vec![5_000],
            measured: Length::Nanos(300_000_000),
            warmup_ns: 100_000_000,
            closed_loop_ns: 300_000_000,
            window: 16,
            live_orders_max: 50,
            ..FixBenchConfig::new(address, sessions)
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        let invalid = |text: &str| Err(BenchError::InvalidSetting(text.to_string()));
        if self.sessions.is_empty() {
            return invalid("at least one FIX session");
        }
        if self.rates_per_sec.is_empty() || self.rates_per_sec.contains(&0) {
            return invalid("offered rates must be positive");
        }
        if matches!(self.measured, Length::Nanos(0) | Length::Messages(0)) {
            return invalid("the measured part must not be empty");
        }
        if self.window == 0 || self.live_orders_max == 0 {
            return invalid("window and live orders must be positive");
        }
        if self.mid_price < 100 {
            return invalid("the mid price must leave room for 25 ticks on each side");
        }
        Ok(())
    }
}

/// What a sent message asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Logon, Heartbeat, Logout: not timed.
    Session,
    Limit,
    Ioc,
    Market,
    Cancel,
    Amend,
}

impl Kind {
    fn histogram(self) -> Option<usize> {
        match self {
            Kind::Session => None,
            Kind::Limit | Kind::Ioc | Kind::Market => Some(0),
            Kind::Cancel => Some(1),
            Kind::Amend => Some(2),
        }
    }
}

/// Names of the three histograms, by [`Kind::histogram`].
const HISTOGRAM_NAMES: [&str; 3] = ["NewOrderSingle", "OrderCancelRequest", "OrderCancelReplace"];

/// One sent message, indexed by its MsgSeqNum (which is also the number in its ClOrdID).
#[derive(Clone, Copy, Debug)]
struct Sent {
    due_ns: u64,
    /// When the write that put its last byte on the socket began.
    written_ns: u64,
    kind: Kind,
    /// Recorded into the histograms when answered.
    measured: bool,
    answered: bool,
    /// An order the session may cancel or amend: acknowledged, not finished, nothing pending.
    resting: bool,
    /// Filled, cancelled, rejected or replaced.
    done: bool,
    buy: bool,
    price: u64,
    lots: u64,
    /// For cancels and amends: the order they refer to.
    orig: u64,
}

impl Sent {
    fn session() -> Sent {
        Sent {
            due_ns: 0,
            written_ns: 0,
            kind: Kind::Session,
            measured: false,
            answered: true,
            resting: false,
            done: true,
            buy: false,
            price: 0,
            lots: 0,
            orig: 0,
        }
    }
}

/// Counts over a phase, for the report.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub sent: u64,
    pub answered: u64,
    /// Answered by the engine (an ExecutionReport, a reject among them, or an
    /// OrderCancelReject), not turned away by the gateway or the session layer.
    pub acknowledged: u64,
    pub execution_reports: u64,
    pub fills: u64,
    pub order_rejects: u64,
    pub cancel_rejects: u64,
    pub business_rejects: u64,
    pub session_rejects: u64,
    pub resend_requests: u64,
    pub test_requests: u64,
}

/// SendingTime text, refreshed once per millisecond.
#[derive(Debug)]
struct Clock {
    start: Instant,
    epoch_ns_at_start: u64,
    text: String,
    text_ms: u64,
}

impl Clock {
    fn new() -> Clock {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut clock = Clock {
            start: Instant::now(),
            epoch_ns_at_start: u64::try_from(since_epoch.as_nanos()).unwrap_or(0),
            text: String::new(),
            text_ms: u64::MAX,
        };
        clock.refresh(0);
        clock
    }

    fn now_ns(&self) -> u64 {
        nanos_since(self.start)
    }

    fn refresh(&mut self, now_ns: u64) {
        let ms = now_ns / 1_000_000;
        if ms != self.text_ms {
            self.text.clear();
            format_utc_timestamp(self.epoch_ns_at_start + now_ns, &mut self.text);
            self.text_ms = ms;
        }
    }
}

/// The fields of an inbound message the generator looks at, copied out of the frame.
#[derive(Debug, Default)]
struct Inbound {
    /// The first byte of MsgType: every type the generator handles is one character.
    msg_type: u8,
    /// The number of ClOrdID (11) and OrigClOrdID (41), when they are ours.
    cl_ord: Option<u64>,
    exec_type: u8,
    ord_status: u8,
    /// RefSeqNum (45) of a Reject or BusinessMessageReject.
    ref_seq: Option<u64>,
    /// The number of BusinessRejectRefID (379), when it is one of our ClOrdIDs: the gateway's
    /// own rejects (input ring full) name the order this way, without RefSeqNum.
    ref_cl_ord: Option<u64>,
    /// TestReqID (112) of a TestRequest, and Text (58) of a Logout.
    test_req_id: Option<String>,
    text: Option<String>,
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        digit.is_ascii_digit().then(|| value * 10 + u64::from(digit - b'0'))
    })
}

/// The number after the last `-` of one of our ClOrdIDs.
fn id_number(cl_ord_id: &[u8]) -> Option<u64> {
    let dash = cl_ord_id.iter().rposition(|&byte| byte == b'-')?;
    parse_u64(&cl_ord_id[dash + 1..])
}

fn scan(frame: &[u8]) -> Inbound {
    let mut inbound = Inbound::default();
    for field in frame.split(|&byte| byte == gateway::fix::codec::SOH) {
        let Some(equals) = field.iter().position(|&byte| byte == b'=') else { continue };
        let value = &field[equals + 1..];
        let first = value.first().copied().unwrap_or(0);
        match &field[..equals] {
            b"35" => inbound.msg_type = if value.len() == 1 { first } else { 0 },
            b"11" => inbound.cl_ord = id_number(value),
            b"150" => inbound.exec_type = first,
            b"39" => inbound.ord_status = first,
            b"45" => inbound.ref_seq = parse_u64(value),
            b"379" => inbound.ref_cl_ord = id_number(value),
            b"112" => inbound.test_req_id = Some(String::from_utf8_lossy(value).into_owned()),
            b"58" => inbound.text = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
    inbound
}

/// A quantity of hundredths of a unit as decimal text, without allocating.
fn lots_text(lots: u64) -> engine::decimal::DecimalDisplay {
    engine::decimal::format_units(u128::from(lots), 2)
}

/// One FIX session of the generator.
#[derive(Debug)]
struct Client {
    comp_id: String,
    target_comp_id: String,
    symbol: String,
    mid_price: u64,
    live_orders_max: usize,
    id_prefix: String,
    stream: TcpStream,
    frames: FrameBuffer,
    read_buffer: Vec<u8>,
    /// Room for the receive timestamp that comes with each read.
    control_buffer: Vec<u8>,
    /// When the bytes of the last read reached the socket, by the kernel's receive timestamp
    /// (on the generator's clock); the read's own time if the kernel gave none.
    arrived_ns: u64,
    outgoing: Vec<u8>,
    /// The message being built, reused.
    message: Message,
    next_seq: u64,
    /// The first message not yet wholly written to the socket.
    unwritten_seq: u64,
    sent: Vec<Sent>,
    /// Candidates for cancels and amends, oldest first; entries no longer resting are skipped.
    resting: VecDeque<u64>,
    unanswered: usize,
    logged_on: bool,
    logged_out: bool,
    closed: bool,
    /// Text (58) of the last Logout received.
    logout_text: Option<String>,
}

impl Client {
    fn connect(
        config: &FixBenchConfig,
        login: &FixLogin,
        id_prefix: String,
        capacity: usize,
    ) -> Result<Client, BenchError> {
        let stream = TcpStream::connect(config.address)?;
        // Every message is one small write that must leave now, not when Nagle decides.
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        // The kernel stamps each segment as it reaches the socket (on loopback, inside the
        // node's send), so that the report can tell the node's latency from the generator's
        // own delay in getting round to reading it.
        setsockopt(&stream, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)?;
        let mut sent = Vec::with_capacity(capacity);
        // Every page written once now, before anything is measured: on this VM the first write
        // to a page stalled the generator for milliseconds mid-run, which the measurement then
        // charged to the node.
        sent.resize(capacity, Sent::session());
        sent.clear();
        // MsgSeqNum 0 does not exist; the slot keeps indices equal to sequence numbers.
        sent.push(Sent::session());
        Ok(Client {
            comp_id: login.comp_id.clone(),
            target_comp_id: config.target_comp_id.clone(),
            symbol: config.symbol.clone(),
            mid_price: config.mid_price,
            live_orders_max: config.live_orders_max,
            id_prefix,
            stream,
            frames: FrameBuffer::new(BODY_LENGTH_MAX),
            read_buffer: vec![0; 256 * 1024],
            control_buffer: nix::cmsg_space!(TimeSpec),
            arrived_ns: 0,
            outgoing: Vec::with_capacity(1 << 20),
            message: Message::default(),
            next_seq: 1,
            unwritten_seq: 1,
            sent,
            resting: VecDeque::with_capacity(4 * config.live_orders_max),
            unanswered: 0,
            logged_on: false,
            logged_out: false,
            closed: false,
            logout_text: None,
        })
    }

    /// Encodes `self.message` as `msg_type` into the outgoing buffer and records it.
    fn queue(&mut self, clock: &Clock, msg_type: &str, record: Sent) -> u64 {
        let seq = self.next_seq;
        let header = Header {
            sender_comp_id: &self.comp_id,
            target_comp_id: &self.target_comp_id,
            seq,
            sending_time: &clock.text,
            orig_sending_time: None,
        };
        encode(&mut self.outgoing, &header, msg_type, self.message.body());
        self.next_seq += 1;
        self.sent.push(record);
        if record.kind != Kind::Session {
            self.unanswered += 1;
        }
        seq
    }

    fn queue_logon(&mut self, clock: &Clock, password: Option<&str>) {
        self.message.reset("A");
        self.message.push(98, '0');
        self.message.push(108, HEARTBEAT_S);
        // Start both sequences at 1 whatever an earlier run against the same node left.
        self.message.push(141, 'Y');
        self.message.push(553, &self.comp_id);
        if let Some(password) = password {
            self.message.push(554, password);
        }
        self.queue(clock, "A", Sent::session());
    }

    fn queue_session(&mut self, clock: &Clock, message: Message) {
        let msg_type = message.msg_type.clone();
        self.message = message;
        self.queue(clock, &msg_type, Sent::session());
    }

    /// The oldest order still resting, taken off the candidates.
    fn take_resting(&mut self) -> Option<u64> {
        while let Some(seq) = self.resting.pop_front() {
            if self.sent[usize::try_from(seq).expect("seq fits usize")].resting {
                return Some(seq);
            }
        }
        None
    }

    fn record(&mut self, seq: u64) -> &mut Sent {
        &mut self.sent[usize::try_from(seq).expect("seq fits usize")]
    }

    /// Queues the next message of the mix, due at `due_ns`.
    fn queue_order(&mut self, clock: &Clock, rng: &mut SplitMix64, due_ns: u64, measured: bool) {
        let mid = self.mid_price;
        let roll = rng.below(100);
        let crowded = self.resting.len() >= self.live_orders_max;
        let target = if crowded || (55..85).contains(&roll) { self.take_resting() } else { None };
        let seq = self.next_seq;
        let mut record = Sent { due_ns, measured, answered: false, done: false, ..Sent::session() };
        self.message.reset("");
        self.push_cl_ord_id(11, seq);
        self.message.push(55, &self.symbol);
        let msg_type = match target {
            Some(orig) if crowded || roll < 75 => {
                let order = *self.record(orig);
                record = Sent { kind: Kind::Cancel, orig, ..record };
                self.push_cl_ord_id(41, orig);
                self.message.push(54, if order.buy { '1' } else { '2' });
                "F"
            }
            Some(orig) => {
                let order = *self.record(orig);
                // Half keep their priority (quantity down), half move one tick away from the mid.
                let (lots, price) = if order.lots > 1 && rng.percent(50) {
                    (order.lots - 1, order.price)
                } else if order.buy {
                    (order.lots, order.price - 1)
                } else {
                    (order.lots, order.price + 1)
                };
                record = Sent { kind: Kind::Amend, orig, buy: order.buy, price, lots, ..record };
                self.push_cl_ord_id(41, orig);
                self.push_order_fields(order.buy, "2", lots, Some(price), None);
                "G"
            }
            None => {
                let buy = rng.percent(50);
                let lots = rng.between(1, 10);
                let (kind, price) = match roll {
                    0..=9 => (Kind::Ioc, if buy { mid + 3 } else { mid - 3 }),
                    10..=14 => (Kind::Market, 0),
                    _ if buy => (Kind::Limit, mid + 2 - rng.below(25)),
                    _ => (Kind::Limit, mid - 2 + rng.below(25)),
                };
                record = Sent { kind, buy, price, lots, ..record };
                match kind {
                    Kind::Ioc => self.push_order_fields(buy, "2", lots, Some(price), Some("3")),
                    Kind::Market => self.push_order_fields(buy, "1", lots, None, None),
                    _ => self.push_order_fields(buy, "2", lots, Some(price), Some("1")),
                }
                "D"
            }
        };
        if let Some(orig) = target {
            self.record(orig).resting = false;
        }
        self.queue(clock, msg_type, record);
    }

    fn push_order_fields(
        &mut self,
        buy: bool,
        ord_type: &str,
        lots: u64,
        price: Option<u64>,
        time_in_force: Option<&str>,
    ) {
        self.message.push(54, if buy { '1' } else { '2' });
        self.message.push(40, ord_type);
        self.message.push(38, lots_text(lots));
        if let Some(price) = price {
            self.message.push(44, price);
        }
        if let Some(time_in_force) = time_in_force {
            self.message.push(59, time_in_force);
        }
    }

    /// A ClOrdID field: the client's prefix and the MsgSeqNum of the message that carried it.
    fn push_cl_ord_id(&mut self, tag: u32, seq: u64) {
        let mut text = String::with_capacity(self.id_prefix.len() + 20);
        text.push_str(&self.id_prefix);
        gateway::message::push_decimal(&mut text, seq);
        self.message.push(tag, text);
    }
}

/// The three latency histograms (by [`Kind::histogram`]) and the counts of the current phase.
#[derive(Debug)]
struct Tally {
    latency_ns: [Histogram<u64>; 3],
    /// NewOrderSingle's latency in two parts: from its due time to the start of the write that
    /// sent it, and from there to its first answer.
    new_order_split_ns: [Histogram<u64>; 2],
    /// NewOrderSingle's latency from its due time to its first answer's arrival at the socket
    /// (the kernel's receive timestamp), and the generator's delay in reading it after that.
    new_order_arrival_ns: [Histogram<u64>; 2],
    counts: Counts,
    /// Arrival of the last answer to a measured message.
    last_measured_answer_ns: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_ns: [
                runner::latency_histogram(),
                runner::latency_histogram(),
                runner::latency_histogram(),
            ],
            new_order_split_ns: [runner::latency_histogram(), runner::latency_histogram()],
            new_order_arrival_ns: [runner::latency_histogram(), runner::latency_histogram()],
            counts: Counts::default(),
            last_measured_answer_ns: 0,
        }
    }
}

impl Client {
    /// Writes what the socket takes now; true if anything was written.
    fn flush(&mut self, clock: &Clock) -> Result<bool, BenchError> {
        if self.outgoing.is_empty() {
            return Ok(false);
        }
        // Taken before the write: on loopback the node's thread may run (and answer) before
        // the write returns to the generator.
        let started_ns = clock.now_ns();
        match self.stream.write(&self.outgoing) {
            Ok(0) => Err(closed_error(&self.comp_id)),
            Ok(written) => {
                self.outgoing.drain(..written);
                if self.outgoing.is_empty() {
                    // Only the last message of a partial write is split between writes; it
                    // counts as written by the write that finished it.
                    let from = usize::try_from(self.unwritten_seq).expect("seq fits usize");
                    for sent in self.sent.get_mut(from..).unwrap_or_default() {
                        sent.written_ns = started_ns;
                    }
                    self.unwritten_seq = self.next_seq;
                }
                Ok(true)
            }
            Err(error) if would_block(&error) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Reads what has arrived and handles every whole message; true if anything arrived.
    fn poll(&mut self, clock: &Clock, tally: &mut Tally) -> Result<bool, BenchError> {
        if self.closed {
            return Ok(false);
        }
        let (read, stamp) = match self.receive() {
            Ok((0, _)) => {
                self.closed = true;
                return Ok(true);
            }
            Ok(received) => received,
            Err(error) if would_block(&error) => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        // Arrival is when the bytes reach the generator, before any of them is parsed.
        let now_ns = clock.now_ns();
        // The stamp is on the wall clock: its age, read on the same clock now, places it on
        // the generator's. A read that takes several segments carries the last one's stamp,
        // so an earlier answer in it is placed late, never early.
        self.arrived_ns = stamp.map_or(now_ns, |stamp| {
            let age = SystemTime::now().duration_since(stamp).unwrap_or_default();
            now_ns.saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX))
        });
        self.frames.extend(&self.read_buffer[..read]);
        while let Some(frame) = self.frames.next_frame() {
            // A frame with a bad BodyLength or CheckSum is ignored, as the standard says; the
            // message it held stays unanswered and shows as lost.
            let Ok(range) = frame else { continue };
            let inbound = scan(self.frames.frame(range));
            self.handle(clock, now_ns, &inbound, tally);
        }
        Ok(true)
    }

    /// Reads what the socket has, with the kernel's receive timestamp of the last segment
    /// read, if it gave one.
    fn receive(&mut self) -> std::io::Result<(usize, Option<SystemTime>)> {
        let mut buffers = [IoSliceMut::new(&mut self.read_buffer)];
        let message = recvmsg::<()>(
            self.stream.as_raw_fd(),
            &mut buffers,
            Some(&mut self.control_buffer),
            MsgFlags::empty(),
        )
        .map_err(std::io::Error::from)?;
        let stamp =
            message.cmsgs().map_err(std::io::Error::from)?.find_map(|control| match control {
                ControlMessageOwned::ScmTimestampns(stamp) => {
                    Some(UNIX_EPOCH + Duration::from(stamp))
                }
                _ => None,
            });
        Ok((message.bytes, stamp))
    }

    /// Records the first answer to message `seq`; false if it was answered before.
    fn answer(&mut self, seq: u64, now_ns: u64, tally: &mut Tally) -> bool {
        let Some(sent) = usize::try_from(seq).ok().and_then(|index| self.sent.get_mut(index))
        else {
            return false;
        };
        if sent.answered {
            return false;
        }
        sent.answered = true;
        self.unanswered -= 1;
        tally.counts.answered += 1;
        if let (true, Some(histogram)) = (sent.measured, sent.kind.histogram()) {
            tally.latency_ns[histogram].saturating_record(now_ns.saturating_sub(sent.due_ns));
            if histogram == 0 {
                let [sending, answering] = &mut tally.new_order_split_ns;
                sending.saturating_record(sent.written_ns.saturating_sub(sent.due_ns));
                answering.saturating_record(now_ns.saturating_sub(sent.written_ns));
                let arrived_ns = self.arrived_ns.min(now_ns);
                let [at_socket, reading] = &mut tally.new_order_arrival_ns;
                at_socket.saturating_record(arrived_ns.saturating_sub(sent.due_ns));
                reading.saturating_record(now_ns - arrived_ns);
            }
            tally.last_measured_answer_ns = tally.last_measured_answer_ns.max(now_ns);
        }
        true
    }

    /// Marks every unanswered message answered, so that a late answer after the phase that
    /// counted it as lost changes nothing.
    /// Returns how many of them were measured.
    fn forget_unanswered(&mut self) -> u64 {
        let mut measured = 0;
        for sent in &mut self.sent {
            measured += u64::from(sent.measured && !sent.answered);
            sent.answered = true;
        }
        self.unanswered = 0;
        measured
    }

    /// After a reject of an amend, the original order is still there to cancel later.
    fn restore_orig(&mut self, seq: u64) {
        let Some(&sent) = usize::try_from(seq).ok().and_then(|index| self.sent.get(index)) else {
            return;
        };
        if sent.kind == Kind::Amend && !self.record(sent.orig).done {
            self.record(sent.orig).resting = true;
            self.resting.push_back(sent.orig);
        }
    }

    fn handle(&mut self, clock: &Clock, now_ns: u64, inbound: &Inbound, tally: &mut Tally) {
        let in_range = |seq: u64, client: &Client| {
            usize::try_from(seq).is_ok_and(|index| index > 0 && index < client.sent.len())
        };
        match inbound.msg_type {
            b'8' => {
                tally.counts.execution_reports += 1;
                match inbound.exec_type {
                    b'F' => tally.counts.fills += 1,
                    b'8' => tally.counts.order_rejects += 1,
                    _ => {}
                }
                let Some(seq) = inbound.cl_ord.filter(|&seq| in_range(seq, self)) else { return };
                if self.answer(seq, now_ns, tally) {
                    tally.counts.acknowledged += 1;
                }
                self.execution_report(seq, inbound);
            }
            b'9' | b'j' | b'3' => {
                let counter = match inbound.msg_type {
                    b'9' => &mut tally.counts.cancel_rejects,
                    b'j' => &mut tally.counts.business_rejects,
                    _ => &mut tally.counts.session_rejects,
                };
                *counter += 1;
                let seq = match inbound.msg_type {
                    b'9' => inbound.cl_ord,
                    _ => inbound.ref_seq.or(inbound.ref_cl_ord),
                };
                if let Some(seq) = seq.filter(|&seq| in_range(seq, self)) {
                    if self.answer(seq, now_ns, tally) && inbound.msg_type == b'9' {
                        tally.counts.acknowledged += 1;
                    }
                    self.restore_orig(seq);
                }
            }
            b'1' => {
                tally.counts.test_requests += 1;
                let id = inbound.test_req_id.clone().unwrap_or_default();
                self.queue_session(clock, Message::new("0").with(112, id));
            }
            b'2' => tally.counts.resend_requests += 1,
            b'A' => self.logged_on = true,
            b'5' => {
                self.logged_out = true;
                self.logout_text.clone_from(&inbound.text);
            }
            _ => {}
        }
    }

    /// Follows an order's life from its reports, so cancels and amends pick live orders.
    fn execution_report(&mut self, seq: u64, inbound: &Inbound) {
        let sent = *self.record(seq);
        match (sent.kind, inbound.exec_type) {
            (Kind::Limit, b'0') if !sent.done => {
                self.record(seq).resting = true;
                self.resting.push_back(seq);
            }
            (Kind::Cancel, b'4') => self.record(sent.orig).done = true,
            (Kind::Amend, b'5') => {
                self.record(sent.orig).done = true;
                if !sent.done {
                    self.record(seq).resting = true;
                    self.resting.push_back(seq);
                }
            }
            _ => {}
        }
        if matches!(inbound.ord_status, b'2' | b'4' | b'8' | b'C') {
            let sent = self.record(seq);
            sent.done = true;
            sent.resting = false;
        }
    }
}

fn would_block(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

fn closed_error(comp_id: &str) -> BenchError {
    BenchError::Report(std::io::Error::new(
        ErrorKind::ConnectionAborted,
        format!("session {comp_id}: the node closed the connection"),
    ))
}

/// The generator's state: every session, the clock and the order mix's randomness.
#[derive(Debug)]
struct Generator {
    clock: Clock,
    clients: Vec<Client>,
    rng: SplitMix64,
    tally: Tally,
    window: usize,
    /// When the generator last sent or received anything.
    active_ns: u64,
}

/// What one open-loop part measured.
#[derive(Debug)]
struct OpenPhase {
    offered_per_sec: u64,
    measured: u64,
    /// From the first measured due time to the last measured answer.
    elapsed_ns: u64,
    lost: u64,
    tally: Tally,
}

impl OpenPhase {
    fn achieved_per_sec(&self) -> f64 {
        runner::per_sec(self.measured, self.elapsed_ns)
    }

    /// Kept up: nothing lost, and finished within 10% (plus a millisecond) of its schedule.
    fn sustained(&self) -> bool {
        let schedule_ns = self.measured.saturating_mul(1_000_000_000) / self.offered_per_sec;
        self.lost == 0 && self.elapsed_ns <= schedule_ns + schedule_ns / 10 + 1_000_000
    }
}

/// What the closed-loop part measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClosedLoopReport {
    /// Unanswered messages per session.
    pub window: usize,
    pub elapsed_ns: u64,
    /// Order-entry messages acknowledged by the engine within the part.
    pub acknowledged: u64,
    pub acknowledged_per_sec: f64,
    pub counts: Counts,
}

impl Generator {
    fn unanswered(&self) -> usize {
        self.clients.iter().map(|client| client.unanswered).sum()
    }

    /// Waits for the next thing to do: a session with bytes to read (or room for bytes it
    /// refused before), or `until_ns`, when the next message is due.
    ///
    /// The node's FIX thread shares this core on two cores, so how the generator waits is part
    /// of what it measures. Spinning all the time makes it a second busy thread there: the
    /// scheduler then holds the FIX thread back for whole time slices (milliseconds) to be
    /// fair to the generator. Sleeping all the time lets the core halt between messages, and
    /// on a virtual machine every wake-up from a halt then costs tens of microseconds. So the
    /// generator spins (yielding) only within
    /// `SPIN_NS` of its last activity or of the next due time, when an answer or a send is
    /// imminent, and sleeps in poll(2) otherwise, waking `SPIN_NS` before the next due time.
    /// A late wake-up is charged to the message, as every delay in sending is. It keeps its
    /// normal priority: at the lowest, the closed loop measured how little CPU the generator
    /// was left (32k/s against 41k/s), not the node.
    fn wait(&self, until_ns: u64) -> Result<(), BenchError> {
        let now_ns = self.clock.now_ns();
        let sleep_until_ns = until_ns.saturating_sub(SPIN_NS);
        if now_ns.saturating_sub(self.active_ns) < SPIN_NS || now_ns >= sleep_until_ns {
            std::thread::yield_now();
            return Ok(());
        }
        let wait_ns = (sleep_until_ns - now_ns).min(WAIT_MAX_NS);
        let mut fds: Vec<PollFd<'_>> = self
            .clients
            .iter()
            .map(|client| {
                let mut flags = PollFlags::IN;
                if !client.outgoing.is_empty() {
                    flags |= PollFlags::OUT;
                }
                PollFd::new(&client.stream, flags)
            })
            .collect();
        let timeout = Timespec { tv_sec: 0, tv_nsec: i64::try_from(wait_ns).unwrap_or(0) };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(error) => Err(std::io::Error::from(error).into()),
        }
    }

    /// Writes and reads every session once; true if anything moved.
    fn pump(&mut self) -> Result<bool, BenchError> {
        let mut busy = false;
        for client in &mut self.clients {
            busy |= client.flush(&self.clock)?;
            busy |= client.poll(&self.clock, &mut self.tally)?;
            if client.closed {
                return Err(closed_error(&client.comp_id));
            }
        }
        if busy {
            self.active_ns = self.clock.now_ns();
        }
        Ok(busy)
    }

    /// Logs every session on and waits for the Logon answers.
    fn logon(&mut self, logins: &[FixLogin]) -> Result<(), BenchError> {
        for (client, login) in self.clients.iter_mut().zip(logins) {
            client.queue_logon(&self.clock, login.password.as_deref());
        }
        let deadline = Instant::now() + SESSION_TIMEOUT;
        while !self.clients.iter().all(|client| client.logged_on) {
            if let Some(client) = self.clients.iter().find(|client| client.logged_out) {
                let reason = client.logout_text.clone().unwrap_or_default();
                return Err(BenchError::InvalidSetting(format!(
                    "session {}: Logon refused: {reason}",
                    client.comp_id
                )));
            }
            if Instant::now() > deadline {
                return Err(BenchError::InvalidSetting("no Logon answer in time".to_string()));
            }
            if !self.pump()? {
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Logs every session out and waits (bounded) for the answers.
    fn logout(&mut self) -> Result<(), BenchError> {
        self.clock.refresh(self.clock.now_ns());
        for client in &mut self.clients {
            client.queue_session(&self.clock, Message::new("5"));
        }
        let deadline = Instant::now() + SESSION_TIMEOUT;
        while Instant::now() < deadline
            && !self.clients.iter().all(|client| client.logged_out || client.closed)
        {
            for client in &mut self.clients {
                client.flush(&self.clock)?;
                client.poll(&self.clock, &mut self.tally)?;
            }
            self.wait(self.clock.now_ns() + WAIT_MAX_NS)?;
        }
        Ok(())
    }

    /// Sends `warmup` then `measured` messages at `rate`, open loop, and waits for the answers.
    fn open_loop(
        &mut self,
        rate: u64,
        warmup: u64,
        measured: u64,
    ) -> Result<OpenPhase, BenchError> {
        self.tally = Tally::new();
        let sessions = self.clients.len();
        let total = warmup + measured;
        let mut schedule = Schedule::new(self.clock.now_ns() + START_LEAD_NS, rate);
        let mut first_measured_due_ns = 0;
        let mut last_due_ns = 0;
        let mut index = 0u64;
        loop {
            let now_ns = self.clock.now_ns();
            let mut busy = false;
            if index < total && schedule.due_ns() <= now_ns {
                self.clock.refresh(now_ns);
                // Everything due goes out now, each message keeping its own due time.
                while index < total && schedule.due_ns() <= now_ns {
                    let due_ns = schedule.due_ns();
                    if index == warmup {
                        first_measured_due_ns = due_ns;
                    }
                    let slot = usize::try_from(index).expect("index fits usize") % sessions;
                    let measuring = index >= warmup;
                    self.clients[slot].queue_order(&self.clock, &mut self.rng, due_ns, measuring);
                    last_due_ns = due_ns;
                    schedule.advance();
                    index += 1;
                }
                busy = true;
            }
            busy |= self.pump()?;
            if index == total
                && (self.unanswered() == 0 || now_ns > last_due_ns.saturating_add(DRAIN_NS))
            {
                break;
            }
            if !busy {
                let next_ns = if index < total { schedule.due_ns() } else { now_ns + WAIT_MAX_NS };
                self.wait(next_ns)?;
            }
        }
        self.tally.counts.sent = total;
        let lost = self.clients.iter_mut().map(Client::forget_unanswered).sum();
        // A part that lost messages ran until the drain gave up; one that did not, until its
        // last answer.
        let end_ns =
            if lost == 0 { self.tally.last_measured_answer_ns } else { self.clock.now_ns() };
        let elapsed_ns = end_ns.saturating_sub(first_measured_due_ns).max(1);
        Ok(OpenPhase {
            offered_per_sec: rate,
            measured: measured.saturating_sub(lost),
            elapsed_ns,
            lost,
            tally: std::mem::replace(&mut self.tally, Tally::new()),
        })
    }

    /// Waits until nothing has arrived for half a second (at most thirty seconds), so that an
    /// overloaded part's backlog does not count in the next one.
    fn settle(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_arrival = Instant::now();
        while last_arrival.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
            if self.pump()? {
                last_arrival = Instant::now();
            } else {
                self.wait(self.clock.now_ns() + WAIT_MAX_NS)?;
            }
        }
        Ok(())
    }

    /// Keeps `window` messages unanswered on every session for `length_ns`.
    fn closed_loop(&mut self, length_ns: u64) -> Result<ClosedLoopReport, BenchError> {
        self.tally = Tally::new();
        let start_ns = self.clock.now_ns();
        let end_ns = start_ns + length_ns;
        let mut answered_at_end = None;
        let mut sent = 0u64;
        loop {
            let now_ns = self.clock.now_ns();
            if now_ns < end_ns {
                self.clock.refresh(now_ns);
                for client in &mut self.clients {
                    while client.unanswered < self.window {
                        client.queue_order(&self.clock, &mut self.rng, now_ns, false);
                        sent += 1;
                    }
                }
            } else if answered_at_end.is_none() {
                answered_at_end = Some(self.tally.counts.acknowledged);
            }
            let busy = self.pump()?;
            if answered_at_end.is_some()
                && (self.unanswered() == 0 || now_ns > end_ns.saturating_add(DRAIN_NS))
            {
                break;
            }
            if !busy {
                self.wait(now_ns + WAIT_MAX_NS)?;
            }
        }
        for client in &mut self.clients {
            client.forget_unanswered();
        }
        let answered = answered_at_end.unwrap_or(0);
        self.tally.counts.sent = sent;
        Ok(ClosedLoopReport {
            window: self.window,
            elapsed_ns: length_ns,
            acknowledged: answered,
            acknowledged_per_sec: runner::per_sec(answered, length_ns),
            counts: self.tally.counts,
        })
    }
}

/// One offered rate's results: the three latency distributions and what went wrong.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FixRateReport {
    pub offered_per_sec: u64,
    /// Measured messages over the time from the first one's due time to the last answer.
    pub achieved_per_sec: f64,
    pub sustained: bool,
    pub measured_messages: u64,
    /// Measured messages never answered (within five seconds of the last send); the figures
    /// above cover only the answered ones.
    pub lost: u64,
    pub new_orders: LatencySummary,
    /// NewOrderSingle's latency split in two: from its due time to the start of the write that
    /// sent it (the generator waiting for its core)…
    pub new_orders_send_delay: LatencySummary,
    /// …and from the start of that write to the first answer read.
    pub new_orders_from_write: LatencySummary,
    /// NewOrderSingle from its due time to its first answer's arrival at the generator's
    /// socket, by the kernel's receive timestamp: `new_orders` without the generator's own
    /// delay in reading.
    pub new_orders_at_socket: LatencySummary,
    pub cancels: LatencySummary,
    pub amends: LatencySummary,
    /// Counts over the whole part, warm-up included.
    pub counts: Counts,
}

/// The FIX run's results. Top-level latency figures are NewOrderSingle → first
/// ExecutionReport at the first offered rate; `commands_per_sec` is the closed loop's acknowledged
/// order-entry messages per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FixBenchReport {
    pub bench: &'static str,
    pub commands_per_sec: f64,
    pub offered_per_sec: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub durability: String,
    pub release: String,
    pub sessions: usize,
    pub rates: Vec<FixRateReport>,
    pub closed_loop: Option<ClosedLoopReport>,
    pub plot: Option<PathBuf>,
    pub machine: Machine,
    pub generator_pinning: Pinning,
    pub node: String,
}

impl FixBenchReport {
    pub fn to_json_line(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string(self)?)
    }
}

/// Messages of a part of `length` at `rate`.
fn messages(length: Length, rate: u64) -> u64 {
    match length {
        Length::Messages(count) => count,
        Length::Nanos(nanos) => {
            let count = u128::from(nanos) * u128::from(rate) / 1_000_000_000;
            u64::try_from(count).unwrap_or(u64::MAX).max(1)
        }
    }
}

/// Everything the generator thread measured.
#[derive(Debug)]
struct Measured {
    opens: Vec<OpenPhase>,
    closed: Option<ClosedLoopReport>,
    pinning: Pinning,
}

/// The generator thread: pinned to the first core, it connects, logs on, runs every part and
/// logs out.
fn generate(config: &FixBenchConfig) -> Result<Measured, BenchError> {
    let pinning = pin(false);
    // Timed waits (see Generator::wait) end when due, not up to the default 50 µs later. A
    // thread may always set its own slack; should it fail, the waits are only less punctual.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let sessions = config.sessions.len();
    let open_total: u64 = config
        .rates_per_sec
        .iter()
        .map(|&rate| {
            messages(Length::Nanos(config.warmup_ns), rate) + messages(config.measured, rate)
        })
        .sum();
    // Room for every open-loop message up front, so that no reallocation lands in a measured
    // part, plus a guess at the closed loop's (which may still grow the table: it is untimed).
    let closed_guess = messages(Length::Nanos(config.closed_loop_ns), 300_000);
    let capacity = usize::try_from((open_total + closed_guess) / sessions as u64 + 1024)
        .expect("capacity fits usize");
    // ClOrdIDs must be unique for the node's lifetime: a run tag from the clock keeps runs
    // against the same node apart.
    let run_tag = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
        % 1_000_000_000;
    let mut clients = Vec::with_capacity(sessions);
    for (index, login) in config.sessions.iter().enumerate() {
        let prefix = format!("B{run_tag}S{index}-");
        clients.push(Client::connect(config, login, prefix, capacity)?);
    }
    let mut generator = Generator {
        clock: Clock::new(),
        clients,
        rng: SplitMix64::new(config.seed),
        tally: Tally::new(),
        window: config.window,
        active_ns: 0,
    };
    generator.logon(&config.sessions)?;
    let mut opens = Vec::new();
    for &rate in &config.rates_per_sec {
        let warmup = messages(Length::Nanos(config.warmup_ns), rate);
        opens.push(generator.open_loop(rate, warmup, messages(config.measured, rate))?);
        generator.settle()?;
    }
    let closed = if config.closed_loop_ns > 0 {
        Some(generator.closed_loop(config.closed_loop_ns)?)
    } else {
        None
    };
    generator.logout()?;
    Ok(Measured { opens, closed, pinning })
}

/// Prints one open-loop part's tables and writes its `.hgrm` files.
fn report_open(
    config: &FixBenchConfig,
    phase: &OpenPhase,
    out: &mut dyn Write,
) -> Result<FixRateReport, BenchError> {
    let rate = phase.offered_per_sec;
    writeln!(
        out,
        "open loop at {} messages/s offered: {} measured after {} warm-up, achieved {}/s{}{}",
        human_rate(rate as f64),
        human_rate(phase.measured as f64),
        human_ns(config.warmup_ns),
        human_rate(phase.achieved_per_sec()),
        if phase.sustained() { "" } else { ", NOT sustained" },
        if phase.lost > 0 {
            format!(", {} LOST (never answered)", phase.lost)
        } else {
            String::new()
        },
    )?;
    let counts = &phase.tally.counts;
    writeln!(
        out,
        "  answers: {} execution reports ({} fills, {} order rejects), {} cancel rejects, {} \
         business rejects, {} session rejects, {} resend requests",
        counts.execution_reports,
        counts.fills,
        counts.order_rejects,
        counts.cancel_rejects,
        counts.business_rejects,
        counts.session_rejects,
        counts.resend_requests,
    )?;
    let mut summaries = Vec::new();
    for (histogram, name) in phase.tally.latency_ns.iter().zip(HISTOGRAM_NAMES) {
        writeln!(out, "  {name} → first answer ({} samples):", histogram.len())?;
        write!(out, "{}", percentile_table(histogram))?;
        let mut summary = LatencySummary::new(rate, phase.achieved_per_sec(), histogram);
        if !histogram.is_empty() {
            let path =
                config.out_dir.join(format!("fix-{}-at-{rate}-per-sec.hgrm", name.to_lowercase()));
            report::write_file(&path, &report::hgrm_text(histogram))?;
            writeln!(out, "  written: {}", path.display())?;
            summary.hgrm = Some(path);
        }
        summaries.push(summary);
    }
    let [sending, answering] = &phase.tally.new_order_split_ns;
    writeln!(
        out,
        "  NewOrderSingle, split: due → write began p50 {}, p99 {}, p99.9 {}; write began → \
         first answer p50 {}, p99 {}, p99.9 {}",
        human_ns(sending.value_at_quantile(0.5)),
        human_ns(sending.value_at_quantile(0.99)),
        human_ns(sending.value_at_quantile(0.999)),
        human_ns(answering.value_at_quantile(0.5)),
        human_ns(answering.value_at_quantile(0.99)),
        human_ns(answering.value_at_quantile(0.999)),
    )?;
    let [at_socket, reading] = &phase.tally.new_order_arrival_ns;
    writeln!(
        out,
        "  NewOrderSingle → first answer at the generator's socket (kernel receive timestamp): \
         p50 {}, p99 {}, p99.9 {}; read by the generator after it arrived: p50 {}, p99 {}, \
         p99.9 {}",
        human_ns(at_socket.value_at_quantile(0.5)),
        human_ns(at_socket.value_at_quantile(0.99)),
        human_ns(at_socket.value_at_quantile(0.999)),
        human_ns(reading.value_at_quantile(0.5)),
        human_ns(reading.value_at_quantile(0.99)),
        human_ns(reading.value_at_quantile(0.999)),
    )?;
    let achieved = phase.achieved_per_sec();
    let new_orders_send_delay = LatencySummary::new(rate, achieved, sending);
    let new_orders_from_write = LatencySummary::new(rate, achieved, answering);
    let new_orders_at_socket = LatencySummary::new(rate, achieved, at_socket);
    let mut summaries = summaries.into_iter();
    let mut next = || summaries.next().expect("three histograms");
    Ok(FixRateReport {
        offered_per_sec: rate,
        achieved_per_sec: phase.achieved_per_sec(),
        sustained: phase.sustained(),
        measured_messages: phase.measured,
        lost: phase.lost,
        new_orders: next(),
        new_orders_send_delay,
        new_orders_from_write,
        new_orders_at_socket,
        cancels: next(),
        amends: next(),
        counts: *counts,
    })
}

/// Runs the FIX benchmark against the node at `config.address` and prints its report.
// tidy: long function, a report printed top to bottom reads best as one sequence.
pub fn run(config: &FixBenchConfig, out: &mut dyn Write) -> Result<FixBenchReport, BenchError> {
    config.validate()?;
    report::create_dir(&config.out_dir)?;
    let machine = Machine::detect();
    writeln!(out, "exchange bench fix")?;
    writeln!(
        out,
        "machine: {} ({} logical CPUs, {})",
        machine.cpu_model, machine.logical_cpus, machine.os
    )?;
    writeln!(
        out,
        "node: {}; durability {}; reports released when {}",
        config.node, config.durability, config.release
    )?;
    writeln!(
        out,
        "load: {} FIX 4.4 sessions ({}) on {} over loopback TCP, one generator thread; mix on \
         {} around {}: ~55% limit GTC (both sides, some crossing), 20% cancels of the oldest \
         resting order, 10% amends, 10% IOC crossing, 5% market; at most {} resting orders per \
         session",
        config.sessions.len(),
        config.sessions.iter().map(|login| login.comp_id.as_str()).collect::<Vec<_>>().join(","),
        config.address,
        config.symbol,
        config.mid_price,
        config.live_orders_max,
    )?;
    writeln!(
        out,
        "latency = first answer (ExecutionReport, OrderCancelReject or reject) read by the \
         generator − the message's intended send time (open loop, coordinated omission \
         corrected); reports leave the node only once released under its policy (above)"
    )?;
    out.flush()?;
    let thread_config = config.clone();
    let measured = std::thread::Builder::new()
        .name("bench-fix-generator".to_string())
        .spawn(move || generate(&thread_config))?
        .join()
        .map_err(|_| BenchError::ThreadPanicked)??;
    writeln!(
        out,
        "generator thread (every session, sends and reads): {}; it yields when idle",
        describe_pinning(&measured.pinning, "first")
    )?;
    let mut rates = Vec::new();
    for phase in &measured.opens {
        writeln!(out)?;
        rates.push(report_open(config, phase, out)?);
    }
    if let Some(closed) = &measured.closed {
        writeln!(out)?;
        writeln!(
            out,
            "closed loop (window {} per session, {}): {} messages acknowledged by the engine/s ({} \
             acknowledged, {} fills, {} order rejects, {} gateway or throttle rejects)",
            closed.window,
            human_ns(closed.elapsed_ns),
            human_rate(closed.acknowledged_per_sec),
            closed.acknowledged,
            closed.counts.fills,
            closed.counts.order_rejects,
            closed.counts.business_rejects + closed.counts.session_rejects,
        )?;
    }
    let path = config.out_dir.join("fix.png");
    let first = &measured.opens[0];
    let mut series: Vec<(String, &Histogram<u64>)> = measured
        .opens
        .iter()
        .map(|phase| {
            let rate = human_rate(phase.offered_per_sec as f64);
            (format!("NewOrderSingle, {rate}/s offered"), &phase.tally.latency_ns[0])
        })
        .collect();
    let rate = human_rate(first.offered_per_sec as f64);
    for (histogram, name) in first.tally.latency_ns.iter().zip(HISTOGRAM_NAMES).skip(1) {
        if !histogram.is_empty() {
            series.push((format!("{name}, {rate}/s offered"), histogram));
        }
    }
    let title =
        format!("FIX wire-to-wire, {} sessions, {}", config.sessions.len(), policies(config));
    crate::plot::percentile_plot(&path, &title, &series)?;
    writeln!(out, "plot: {}", path.display())?;
    let headline = rates[0].new_orders.clone();
    writeln!(
        out,
        "headline: NewOrderSingle → ExecutionReport at {}/s offered, {}: p50 {}, p99 {}, p99.9 \
         {} (targets at 50,000/s, 4 sessions, group-commit: p50 ≤ 15 µs, p99 ≤ 40 µs, p99.9 ≤ \
         100 µs); sustained closed loop {}/s (target ≥ 200,000/s)",
        human_rate(headline.offered_per_sec as f64),
        policies(config),
        human_ns(headline.p50_ns),
        human_ns(headline.p99_ns),
        human_ns(headline.p999_ns),
        measured.closed.as_ref().map_or("-".to_string(), |c| human_rate(c.acknowledged_per_sec)),
    )?;
    Ok(FixBenchReport {
        bench: "fix",
        commands_per_sec: measured
            .closed
            .as_ref()
            .map_or(0.0, |closed| closed.acknowledged_per_sec),
        offered_per_sec: headline.offered_per_sec,
        mean_ns: headline.mean_ns,
        p50_ns: headline.p50_ns,
        p90_ns: headline.p90_ns,
        p99_ns: headline.p99_ns,
        p999_ns: headline.p999_ns,
        p9999_ns: headline.p9999_ns,
        max_ns: headline.max_ns,
        durability: config.durability.clone(),
        release: config.release.clone(),
        sessions: config.sessions.len(),
        rates,
        closed_loop: measured.closed,
        plot: Some(path),
        machine,
        generator_pinning: measured.pinning,
        node: config.node.clone(),
    })
}

/// The durability and release policies, as titles and headlines name them.
fn policies(config: &FixBenchConfig) -> String {
    format!("{}, released when {}", config.durability, config.release)
}
