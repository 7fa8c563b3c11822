//! The FIX 4.4 session layer as a pure state machine.
//!
//! A [`Session`] is handed decoded inbound messages ([`Session::handle_inbound`]) and the
//! passing of time ([`Session::handle_timeout`]), always with the current time as an argument;
//! it never reads a clock or touches a socket. What it wants done comes out as bytes to write
//! ([`Session::drain_transmit`]) and events ([`Session::poll_event`]): a logon, an application
//! message for the layer above, or the end of the connection. That makes every rule of the
//! session protocol testable by injecting messages and times.
//!
//! A `Session` outlives connections: it exists for each configured counterparty, and each TCP
//! connection that logs on to it continues its sequence numbers, which its [`SessionStore`]
//! keeps across restarts.

use std::collections::{BTreeMap, VecDeque};

use super::codec::{
    encode, format_utc_timestamp, parse_decimal, parse_utc_timestamp, Header, Inbound, SOH,
};
use super::store::{SessionStore, StoreError};
use crate::message::Message;

const NS_PER_S: u64 = 1_000_000_000;

/// A token bucket's settings: `rate_per_s` application messages per second on average, at
/// most `burst` at once. More than `rejects_max` consecutive throttled messages end the
/// session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub rate_per_s: u32,
    pub burst: u32,
    pub rejects_max: u32,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig { rate_per_s: 1_000, burst: 100, rejects_max: 100 }
    }
}

/// One configured FIX session: who may log on, with what, and under which limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our CompID: SenderCompID (49) on what we send, TargetCompID (56) on what we receive.
    pub sender_comp_id: String,
    /// The counterparty's CompID.
    pub target_comp_id: String,
    /// If set, Logon must carry this Username (553).
    pub username: Option<String>,
    /// If set, Logon must carry this Password (554).
    pub password: Option<String>,
    /// The accounts this session may trade for; enforced by the application layer.
    pub accounts: Vec<u32>,
    pub throttle: ThrottleConfig,
    /// Start both sequences at 1 on every Logon, whatever the counterparty asks.
    pub reset_on_logon: bool,
    /// Whether the application should cancel the session's orders when it disconnects; the
    /// session layer only carries the flag.
    pub cancel_on_disconnect: bool,
    /// Accepted HeartBtInt (108) range, in seconds.
    pub heartbeat_s_min: u32,
    pub heartbeat_s_max: u32,
    /// How far SendingTime (52) may be from our clock, in milliseconds.
    pub sending_time_window_ms: u64,
}

impl SessionConfig {
    /// A session with defaults: no credentials, no accounts, the default throttle, HeartBtInt
    /// from 1 to 300 seconds and a SendingTime window of 120 seconds.
    pub fn new(sender_comp_id: &str, target_comp_id: &str) -> SessionConfig {
        SessionConfig {
            sender_comp_id: sender_comp_id.to_owned(),
            target_comp_id: target_comp_id.to_owned(),
            username: None,
            password: None,
            accounts: Vec::new(),
            throttle: ThrottleConfig::default(),
            reset_on_logon: false,
            cancel_on_disconnect: false,
            heartbeat_s_min: 1,
            heartbeat_s_max: 300,
            sending_time_window_ms: 120_000,
        }
    }
}

/// What a session asks of the layer that drives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A Logon was accepted; the session is ready for application messages.
    LoggedOn,
    /// An application message in sequence, within the throttle, for the application layer,
    /// with its MsgSeqNum (34) so that a reject from the application can name it (45).
    Application { message: Message, seq: u64 },
    /// Close the connection once the pending bytes are written. `logged_on` says whether the
    /// connection had logged on (and the application was told so).
    Disconnect { reason: String, logged_on: bool },
}

/// Why [`Session::send_application`] refused a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("MsgType {0:?} is session-level; the session layer sends those itself")]
    SessionLevel(String),
    #[error(transparent)]
    Store(#[from] StoreErrorText),
}

/// A store error flattened to text, so that [`SendError`] stays `Clone` and comparable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreErrorText(pub String);

/// Whether a MsgType belongs to the session layer (never handed up, gap-filled on resend).
pub fn is_session_level(msg_type: &str) -> bool {
    matches!(msg_type, "0" | "1" | "2" | "3" | "4" | "5" | "A")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Waiting for a Logon.
    Disconnected,
    Active,
    /// We sent a Logout and wait for the reply until the deadline.
    LoggingOut {
        since_ns: u64,
    },
}

/// An inbound message that arrived ahead of a gap.
#[derive(Debug)]
enum Queued {
    Message(Box<Inbound>),
    /// Already acted on when it arrived (a Logon or a ResendRequest); only its number counts.
    Processed,
}

/// A token bucket in nanotokens, so that refills need no division.
#[derive(Clone, Copy, Debug)]
struct TokenBucket {
    tokens: u128,
    capacity: u128,
    rate_per_s: u128,
    updated_ns: u64,
}

impl TokenBucket {
    fn full(config: ThrottleConfig, now_ns: u64) -> TokenBucket {
        let capacity = u128::from(config.burst) * u128::from(NS_PER_S);
        TokenBucket {
            tokens: capacity,
            capacity,
            rate_per_s: u128::from(config.rate_per_s),
            updated_ns: now_ns,
        }
    }

    fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = u128::from(now_ns.saturating_sub(self.updated_ns));
        self.updated_ns = self.updated_ns.max(now_ns);
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.capacity);
        if self.tokens >= u128::from(NS_PER_S) {
            self.tokens -= u128::from(NS_PER_S);
            true
        } else {
            false
        }
    }
}

/// The reason a Reject (3) carries, as SessionRejectReason (373).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RejectReason {
    InvalidTag = 0,
    RequiredTagMissing = 1,
    ValueOutOfRange = 5,
    IncorrectDataFormat = 6,
    CompIdProblem = 9,
    SendingTimeAccuracy = 10,
    InvalidMsgType = 11,
}

/// One configured session and, while a connection is logged on, that connection's state.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    store: Box<dyn SessionStore>,
    next_inbound: u64,
    next_outbound: u64,
    status: Status,
    heartbeat_ns: u64,
    last_inbound_ns: u64,
    last_outbound_ns: u64,
    /// The TestReqID (112) of an unanswered TestRequest.
    test_request: Option<u64>,
    test_requests_sent: u64,
    queue: BTreeMap<u64, Queued>,
    resend_requested: bool,
    throttle: TokenBucket,
    throttle_rejects: u32,
    transmit: Vec<u8>,
    time_text: String,
    events: VecDeque<SessionEvent>,
}

/// Whether a handler consumed the inbound sequence number or must stop.
enum Next {
    /// The next expected inbound number is this.
    Expect(u64),
    /// The connection is ending; nothing more is processed.
    Stop,
}

impl Session {
    /// A session over `store`, continuing the sequence numbers it holds.
    pub fn new(config: SessionConfig, store: Box<dyn SessionStore>) -> Result<Session, StoreError> {
        let (next_inbound, next_outbound) = store.sequence_numbers()?;
        Ok(Session {
            throttle: TokenBucket::full(config.throttle, 0),
            config,
            store,
            next_inbound,
            next_outbound,
            status: Status::Disconnected,
            heartbeat_ns: 30 * NS_PER_S,
            last_inbound_ns: 0,
            last_outbound_ns: 0,
            test_request: None,
            test_requests_sent: 0,
            queue: BTreeMap::new(),
            resend_requested: false,
            throttle_rejects: 0,
            transmit: Vec::with_capacity(4096),
            time_text: String::with_capacity(32),
            events: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The MsgSeqNum the next inbound message must carry.
    pub fn next_inbound(&self) -> u64 {
        self.next_inbound
    }

    /// The MsgSeqNum of the next message we send.
    pub fn next_outbound(&self) -> u64 {
        self.next_outbound
    }

    /// Whether a connection is logged on (including while a Logout is pending).
    pub fn is_logged_on(&self) -> bool {
        self.status != Status::Disconnected
    }

    /// The HeartBtInt agreed at Logon, in nanoseconds.
    pub fn heartbeat_ns(&self) -> u64 {
        self.heartbeat_ns
    }

    /// Moves the bytes to write to the connection into `out`.
    pub fn drain_transmit(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.transmit);
        self.transmit.clear();
    }

    /// The next event for the driving layer.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Takes one token from the throttle: whether an application message arriving now is
    /// within the session's rate.
    pub fn throttle_allows(&mut self, now_ns: u64) -> bool {
        self.throttle.take(now_ns)
    }

    /// Handles one decoded inbound message of this session's connection.
    pub fn handle_inbound(&mut self, now_ns: u64, inbound: Inbound) -> Result<(), StoreError> {
        match self.status {
            Status::Disconnected => self.handle_logon(now_ns, inbound),
            Status::Active | Status::LoggingOut { .. } => self.handle_active(now_ns, inbound),
        }
    }

    /// Heartbeats, TestRequests, and the deadlines for silence and for a Logout reply.
    pub fn handle_timeout(&mut self, now_ns: u64) -> Result<(), StoreError> {
        match self.status {
            Status::Disconnected => Ok(()),
            Status::LoggingOut { since_ns } => {
                if now_ns.saturating_sub(since_ns) >= self.heartbeat_ns {
                    self.close("no Logout reply");
                }
                Ok(())
            }
            Status::Active => {
                let silence_ns = now_ns.saturating_sub(self.last_inbound_ns);
                if silence_ns >= self.heartbeat_ns * 24 / 10 {
                    self.terminate(now_ns, "heartbeat timeout")?;
                    return Ok(());
                }
                if silence_ns >= self.heartbeat_ns * 12 / 10 && self.test_request.is_none() {
                    self.test_requests_sent += 1;
                    let id = self.test_requests_sent;
                    self.test_request = Some(id);
                    self.send(now_ns, &Message::new("1").with(112, format!("TEST{id}")))?;
                }
                if now_ns.saturating_sub(self.last_outbound_ns) >= self.heartbeat_ns {
                    self.send(now_ns, &Message::new("0"))?;
                }
                Ok(())
            }
        }
    }

    /// Sends an application message. It is numbered and stored even while no connection is
    /// logged on, so that the counterparty can ask for it after reconnecting; it goes on the
    /// wire only while logged on. Returns its MsgSeqNum.
    pub fn send_application(&mut self, now_ns: u64, message: &Message) -> Result<u64, SendError> {
        if is_session_level(&message.msg_type) {
            return Err(SendError::SessionLevel(message.msg_type.clone()));
        }
        self.send_from_application(now_ns, message)
    }

    /// Sends a Reject (3) the application wrote about a message it could not read (a missing or
    /// malformed field); the only session-level message an application may send.
    pub fn send_application_reject(
        &mut self,
        now_ns: u64,
        message: &Message,
    ) -> Result<u64, SendError> {
        if message.msg_type != "3" {
            return Err(SendError::SessionLevel(message.msg_type.clone()));
        }
        self.send_from_application(now_ns, message)
    }

    /// Numbers, stores and (while logged on) transmits a message the application checked.
    fn send_from_application(&mut self, now_ns: u64, message: &Message) -> Result<u64, SendError> {
        let seq = self.next_outbound;
        let mark = self.transmit.len();
        self.send(now_ns, message).map_err(|error| StoreErrorText(error.to_string()))?;
        if self.status == Status::Disconnected {
            self.transmit.truncate(mark);
        }
        Ok(seq)
    }

    /// Starts an orderly Logout (shutdown, or the application ending the session).
    pub fn logout(&mut self, now_ns: u64, text: &str) -> Result<(), StoreError> {
        if self.status == Status::Active {
            self.send(now_ns, &Message::new("5").with(58, text))?;
            self.status = Status::LoggingOut { since_ns: now_ns };
        }
        Ok(())
    }

    /// The connection is gone (closed by the peer, an I/O error, or after a Disconnect
    /// event). Returns whether it had logged on. Unsent bytes and queued messages are dropped;
    /// sequence numbers stay.
    pub fn disconnect(&mut self) -> bool {
        let was_logged_on = self.status != Status::Disconnected;
        self.status = Status::Disconnected;
        self.queue.clear();
        self.resend_requested = false;
        self.test_request = None;
        self.transmit.clear();
        self.events.retain(|event| !matches!(event, SessionEvent::Disconnect { .. }));
        was_logged_on
    }

    fn handle_logon(&mut self, now_ns: u64, inbound: Inbound) -> Result<(), StoreError> {
        if inbound.message.msg_type != "A" {
            self.close("first message not a Logon");
            return Ok(());
        }
        let comp_ids_match = inbound.sender_comp_id.as_deref()
            == Some(self.config.target_comp_id.as_str())
            && inbound.target_comp_id.as_deref() == Some(self.config.sender_comp_id.as_str());
        if !comp_ids_match {
            self.refuse(now_ns, "unknown CompID");
            return Ok(());
        }
        let Some(seq) = inbound.seq else {
            self.refuse(now_ns, "MsgSeqNum missing");
            return Ok(());
        };
        if let Err(text) = self.check_credentials(&inbound.message) {
            self.refuse(now_ns, text);
            return Ok(());
        }
        let heartbeat_s = match inbound.message.required_u64(108) {
            Ok(value) => value,
            Err(error) => {
                self.refuse(now_ns, &format!("HeartBtInt: {error}"));
                return Ok(());
            }
        };
        let range = u64::from(self.config.heartbeat_s_min)..=u64::from(self.config.heartbeat_s_max);
        if !range.contains(&heartbeat_s) {
            self.refuse(now_ns, &format!("HeartBtInt {heartbeat_s} outside {range:?}"));
            return Ok(());
        }
        if self.sending_time_problem(now_ns, &inbound).is_some() {
            self.refuse(now_ns, "SendingTime accuracy problem");
            return Ok(());
        }
        let reset_requested = inbound.message.get(141) == Some("Y");
        if reset_requested || self.config.reset_on_logon {
            self.store.reset()?;
            self.next_inbound = 1;
            self.next_outbound = 1;
        }
        if seq < self.next_inbound && !inbound.poss_dup {
            let text = self.too_low_text(seq);
            self.refuse(now_ns, &text);
            return Ok(());
        }
        self.status = Status::Active;
        self.heartbeat_ns = heartbeat_s * NS_PER_S;
        self.last_inbound_ns = now_ns;
        self.throttle = TokenBucket::full(self.config.throttle, now_ns);
        self.throttle_rejects = 0;
        self.test_request = None;
        let mut reply = Message::new("A").with(98, '0').with(108, heartbeat_s);
        if reset_requested || self.config.reset_on_logon {
            reply.push(141, 'Y');
        }
        self.send(now_ns, &reply)?;
        self.events.push_back(SessionEvent::LoggedOn);
        if seq == self.next_inbound {
            self.set_next_inbound(seq + 1)?;
        } else if seq > self.next_inbound {
            self.queue.insert(seq, Queued::Processed);
            self.request_resend(now_ns)?;
        }
        Ok(())
    }

    fn check_credentials(&self, logon: &Message) -> Result<(), &'static str> {
        if let Some(username) = &self.config.username {
            if logon.get(553) != Some(username.as_str()) {
                return Err("invalid username or password");
            }
        }
        if let Some(password) = &self.config.password {
            if logon.get(554) != Some(password.as_str()) {
                return Err("invalid username or password");
            }
        }
        Ok(())
    }

    fn handle_active(&mut self, now_ns: u64, inbound: Inbound) -> Result<(), StoreError> {
        self.last_inbound_ns = now_ns;
        let seq = inbound.seq;
        let expected = seq == Some(self.next_inbound);
        if inbound.sender_comp_id.as_deref() != Some(self.config.target_comp_id.as_str())
            || inbound.target_comp_id.as_deref() != Some(self.config.sender_comp_id.as_str())
        {
            let tag =
                if inbound.sender_comp_id.as_deref() != Some(self.config.target_comp_id.as_str()) {
                    49
                } else {
                    56
                };
            self.reject(
                now_ns,
                &inbound,
                RejectReason::CompIdProblem,
                Some(tag),
                "CompID problem",
            )?;
            if expected {
                self.set_next_inbound(self.next_inbound + 1)?;
            }
            return self.terminate(now_ns, "CompID problem");
        }
        let Some(seq) = seq else {
            return self.terminate(now_ns, "MsgSeqNum (34) missing or not a number");
        };
        if inbound.message.msg_type == "4" && inbound.message.get(123) != Some("Y") {
            return self.handle_sequence_reset(now_ns, &inbound);
        }
        if let Some((reason, text)) = self.sending_time_problem(now_ns, &inbound) {
            self.reject(now_ns, &inbound, reason, Some(52), text)?;
            if expected {
                self.set_next_inbound(seq + 1)?;
            }
            if reason == RejectReason::SendingTimeAccuracy {
                return self.terminate(now_ns, "SendingTime accuracy problem");
            }
            return Ok(());
        }
        if inbound.poss_dup && inbound.orig_sending_time.is_none() && seq >= self.next_inbound {
            let text = "OrigSendingTime (122) required with PossDupFlag";
            self.reject(now_ns, &inbound, RejectReason::RequiredTagMissing, Some(122), text)?;
            if expected {
                self.set_next_inbound(seq + 1)?;
            }
            return Ok(());
        }
        if seq > self.next_inbound {
            return self.handle_ahead(now_ns, seq, inbound);
        }
        if seq < self.next_inbound {
            if inbound.poss_dup {
                // A duplicate we have already processed.
                return Ok(());
            }
            let text = self.too_low_text(seq);
            return self.terminate(now_ns, &text);
        }
        match self.dispatch(now_ns, seq, inbound)? {
            Next::Stop => Ok(()),
            Next::Expect(next) => {
                self.set_next_inbound(next)?;
                self.drain_queue(now_ns)
            }
        }
    }

    /// A message with a sequence number beyond the expected one: a gap.
    fn handle_ahead(&mut self, now_ns: u64, seq: u64, inbound: Inbound) -> Result<(), StoreError> {
        match inbound.message.msg_type.as_str() {
            // A Logout ends the session whatever its number.
            "5" => {
                self.answer_logout(now_ns)?;
                return Ok(());
            }
            // A ResendRequest is answered at once so that two sides with gaps cannot wait for
            // each other; its number is filled in later.
            "2" => {
                self.serve_resend(now_ns, &inbound)?;
                self.queue.insert(seq, Queued::Processed);
            }
            _ => {
                self.queue.insert(seq, Queued::Message(Box::new(inbound)));
            }
        }
        self.request_resend(now_ns)
    }

    fn request_resend(&mut self, now_ns: u64) -> Result<(), StoreError> {
        if !self.resend_requested {
            self.resend_requested = true;
            let request = Message::new("2").with(7, self.next_inbound).with(16, '0');
            self.send(now_ns, &request)?;
        }
        Ok(())
    }

    /// Processes queued messages that the gap has caught up with.
    fn drain_queue(&mut self, now_ns: u64) -> Result<(), StoreError> {
        while self.status != Status::Disconnected {
            // A gap fill may have skipped queued numbers; those messages are obsolete.
            let kept = self.queue.split_off(&self.next_inbound);
            self.queue = kept;
            let Some(entry) = self.queue.remove(&self.next_inbound) else { break };
            let seq = self.next_inbound;
            let next = match entry {
                Queued::Processed => Next::Expect(seq + 1),
                Queued::Message(inbound) => self.dispatch(now_ns, seq, *inbound)?,
            };
            match next {
                Next::Stop => return Ok(()),
                Next::Expect(next) => self.set_next_inbound(next)?,
            }
        }
        if self.queue.is_empty() {
            self.resend_requested = false;
        }
        Ok(())
    }

    fn dispatch(&mut self, now_ns: u64, seq: u64, inbound: Inbound) -> Result<Next, StoreError> {
        let message = &inbound.message;
        match message.msg_type.as_str() {
            "0" => {
                if self
                    .test_request
                    .is_some_and(|id| message.get(112) == Some(&format!("TEST{id}")))
                {
                    self.test_request = None;
                }
            }
            "1" => match message.required(112) {
                Ok(id) => {
                    let heartbeat = Message::new("0").with(112, id);
                    self.send(now_ns, &heartbeat)?;
                }
                Err(_) => {
                    let reason = RejectReason::RequiredTagMissing;
                    self.reject(now_ns, &inbound, reason, Some(112), "TestReqID missing")?;
                }
            },
            "2" => self.serve_resend(now_ns, &inbound)?,
            "3" => {}
            "4" => return self.handle_gap_fill(now_ns, seq, &inbound),
            "5" => {
                self.set_next_inbound(seq + 1)?;
                self.answer_logout(now_ns)?;
                return Ok(Next::Stop);
            }
            "A" => {
                self.set_next_inbound(seq + 1)?;
                self.terminate(now_ns, "Logon while logged on")?;
                return Ok(Next::Stop);
            }
            _ if !inbound.msg_type_known => {
                let text = "invalid MsgType";
                self.reject(now_ns, &inbound, RejectReason::InvalidMsgType, Some(35), text)?;
            }
            _ if inbound.unknown_tag.is_some() => {
                let tag = inbound.unknown_tag;
                self.reject(now_ns, &inbound, RejectReason::InvalidTag, tag, "invalid tag")?;
            }
            _ => return self.handle_application(now_ns, seq, inbound),
        }
        Ok(Next::Expect(seq + 1))
    }

    fn handle_application(
        &mut self,
        now_ns: u64,
        seq: u64,
        inbound: Inbound,
    ) -> Result<Next, StoreError> {
        if self.throttle.take(now_ns) {
            self.throttle_rejects = 0;
            self.events.push_back(SessionEvent::Application { message: inbound.message, seq });
            return Ok(Next::Expect(seq + 1));
        }
        self.throttle_rejects += 1;
        let reject = Message::new("j")
            .with(45, seq)
            .with(372, &inbound.message.msg_type)
            .with(380, 99u32)
            .with(58, "throttle exceeded");
        self.send(now_ns, &reject)?;
        if self.throttle_rejects > self.config.throttle.rejects_max {
            self.set_next_inbound(seq + 1)?;
            self.terminate(now_ns, "throttle exceeded repeatedly")?;
            return Ok(Next::Stop);
        }
        Ok(Next::Expect(seq + 1))
    }

    /// SequenceReset with GapFillFlag: only valid in sequence, and only forwards.
    fn handle_gap_fill(
        &mut self,
        now_ns: u64,
        seq: u64,
        inbound: &Inbound,
    ) -> Result<Next, StoreError> {
        match inbound.message.required_u64(36) {
            Ok(new_seq) if new_seq > seq => Ok(Next::Expect(new_seq)),
            Ok(_) => {
                let text = "NewSeqNo must be above MsgSeqNum";
                self.reject(now_ns, inbound, RejectReason::ValueOutOfRange, Some(36), text)?;
                Ok(Next::Expect(seq + 1))
            }
            Err(error) => {
                let reason = reject_reason_of(&error);
                self.reject(now_ns, inbound, reason, Some(36), &error.to_string())?;
                Ok(Next::Expect(seq + 1))
            }
        }
    }

    /// SequenceReset in reset mode: MsgSeqNum is ignored and NewSeqNo may only move forwards.
    fn handle_sequence_reset(&mut self, now_ns: u64, inbound: &Inbound) -> Result<(), StoreError> {
        match inbound.message.required_u64(36) {
            Ok(new_seq) if new_seq >= self.next_inbound => {
                self.set_next_inbound(new_seq)?;
                self.drain_queue(now_ns)
            }
            Ok(_) => {
                let text = "NewSeqNo below the expected MsgSeqNum";
                self.reject(now_ns, inbound, RejectReason::ValueOutOfRange, Some(36), text)
            }
            Err(error) => {
                let reason = reject_reason_of(&error);
                self.reject(now_ns, inbound, reason, Some(36), &error.to_string())
            }
        }
    }

    fn answer_logout(&mut self, now_ns: u64) -> Result<(), StoreError> {
        if self.status == Status::Active {
            self.send(now_ns, &Message::new("5"))?;
        }
        self.close("Logout");
        Ok(())
    }

    /// Answers a ResendRequest: stored application messages again with PossDupFlag and
    /// OrigSendingTime; session-level or missing messages as SequenceReset-GapFill.
    fn serve_resend(&mut self, now_ns: u64, inbound: &Inbound) -> Result<(), StoreError> {
        let range = inbound
            .message
            .required_u64(7)
            .and_then(|begin| inbound.message.required_u64(16).map(|end| (begin, end)));
        let (begin, end) = match range {
            Ok(range) => range,
            Err(error) => {
                let reason = reject_reason_of(&error);
                return self.reject(now_ns, inbound, reason, Some(error.tag()), &error.to_string());
            }
        };
        let last = self.next_outbound - 1;
        let begin = begin.max(1);
        let end = if end == 0 || end > last { last } else { end };
        if begin > end {
            return Ok(());
        }
        let mut stored = Vec::new();
        self.store
            .outbound_range(begin, end, &mut |seq, bytes| stored.push((seq, bytes.to_vec())))?;
        self.time_text.clear();
        format_utc_timestamp(now_ns, &mut self.time_text);
        let now_text = std::mem::take(&mut self.time_text);
        let mut gap_start: Option<u64> = None;
        let mut cursor = begin;
        for (seq, bytes) in &stored {
            if *seq > cursor {
                gap_start.get_or_insert(cursor);
            }
            match parse_stored(bytes).filter(|stored| !is_session_level(&stored.message.msg_type)) {
                None => {
                    gap_start.get_or_insert(*seq);
                }
                Some(stored) => {
                    if let Some(start) = gap_start.take() {
                        self.gap_fill(start, *seq, &now_text);
                    }
                    let header = Header {
                        sender_comp_id: &self.config.sender_comp_id,
                        target_comp_id: &self.config.target_comp_id,
                        seq: *seq,
                        sending_time: &now_text,
                        orig_sending_time: Some(&stored.sending_time),
                    };
                    let body = stored.message.body();
                    encode(&mut self.transmit, &header, &stored.message.msg_type, body);
                }
            }
            cursor = seq + 1;
        }
        if cursor <= end {
            gap_start.get_or_insert(cursor);
        }
        if let Some(start) = gap_start {
            self.gap_fill(start, end + 1, &now_text);
        }
        self.time_text = now_text;
        self.last_outbound_ns = now_ns;
        Ok(())
    }

    fn gap_fill(&mut self, seq: u64, new_seq: u64, now_text: &str) {
        let header = Header {
            sender_comp_id: &self.config.sender_comp_id,
            target_comp_id: &self.config.target_comp_id,
            seq,
            sending_time: now_text,
            orig_sending_time: Some(now_text),
        };
        let gap_fill = Message::new("4").with(123, 'Y').with(36, new_seq);
        encode(&mut self.transmit, &header, "4", gap_fill.body());
    }

    /// Checks SendingTime (52): present, well formed, and within the accuracy window.
    fn sending_time_problem(
        &self,
        now_ns: u64,
        inbound: &Inbound,
    ) -> Option<(RejectReason, &'static str)> {
        let Some(text) = inbound.sending_time.as_deref() else {
            return Some((RejectReason::RequiredTagMissing, "SendingTime missing"));
        };
        let Some(sending_ns) = parse_utc_timestamp(text) else {
            return Some((RejectReason::IncorrectDataFormat, "SendingTime format"));
        };
        let window_ns = self.config.sending_time_window_ms.saturating_mul(1_000_000);
        if sending_ns.abs_diff(now_ns) > window_ns {
            return Some((RejectReason::SendingTimeAccuracy, "SendingTime accuracy problem"));
        }
        None
    }

    fn too_low_text(&self, seq: u64) -> String {
        format!("MsgSeqNum too low, expecting {} but received {seq}", self.next_inbound)
    }

    fn set_next_inbound(&mut self, next: u64) -> Result<(), StoreError> {
        self.next_inbound = next;
        self.store.set_next_inbound(next)
    }

    fn reject(
        &mut self,
        now_ns: u64,
        inbound: &Inbound,
        reason: RejectReason,
        tag: Option<u32>,
        text: &str,
    ) -> Result<(), StoreError> {
        let mut reject = Message::new("3");
        if let Some(seq) = inbound.seq {
            reject.push(45, seq);
        }
        if let Some(tag) = tag {
            reject.push(371, tag);
        }
        reject.push(372, &inbound.message.msg_type);
        reject.push(373, reason as u32);
        reject.push(58, text);
        self.send(now_ns, &reject)
    }

    /// Sends a Logout with a reason and closes the connection without waiting for a reply.
    fn terminate(&mut self, now_ns: u64, text: &str) -> Result<(), StoreError> {
        if self.status != Status::Disconnected {
            self.send(now_ns, &Message::new("5").with(58, text))?;
        }
        self.close(text);
        Ok(())
    }

    /// Refuses a Logon: a Logout with the reason, outside the session's sequence (it is
    /// neither stored nor counted, because no session was established), then disconnect.
    fn refuse(&mut self, now_ns: u64, text: &str) {
        self.time_text.clear();
        format_utc_timestamp(now_ns, &mut self.time_text);
        let header = Header {
            sender_comp_id: &self.config.sender_comp_id,
            target_comp_id: &self.config.target_comp_id,
            seq: self.next_outbound,
            sending_time: &self.time_text,
            orig_sending_time: None,
        };
        let logout = Message::new("5").with(58, text);
        encode(&mut self.transmit, &header, "5", logout.body());
        self.close(text);
    }

    fn close(&mut self, reason: &str) {
        let logged_on = self.status != Status::Disconnected;
        self.status = Status::Disconnected;
        self.queue.clear();
        self.resend_requested = false;
        self.events.push_back(SessionEvent::Disconnect { reason: reason.to_owned(), logged_on });
    }

    /// Encodes, stores and queues for the wire one message with the next outbound number.
    fn send(&mut self, now_ns: u64, message: &Message) -> Result<(), StoreError> {
        self.time_text.clear();
        format_utc_timestamp(now_ns, &mut self.time_text);
        let seq = self.next_outbound;
        let header = Header {
            sender_comp_id: &self.config.sender_comp_id,
            target_comp_id: &self.config.target_comp_id,
            seq,
            sending_time: &self.time_text,
            orig_sending_time: None,
        };
        let start = self.transmit.len();
        encode(&mut self.transmit, &header, &message.msg_type, message.body());
        if let Err(error) = self.store.append_outbound(seq, &self.transmit[start..]) {
            // Unstored, it must not go out: the number is used again by the next message.
            self.transmit.truncate(start);
            return Err(error);
        }
        self.next_outbound = seq + 1;
        self.last_outbound_ns = now_ns;
        Ok(())
    }
}

fn reject_reason_of(error: &crate::message::FieldError) -> RejectReason {
    match error.session_reject_reason() {
        1 => RejectReason::RequiredTagMissing,
        5 => RejectReason::ValueOutOfRange,
        _ => RejectReason::IncorrectDataFormat,
    }
}

/// A message we encoded and stored, read back for a resend.
struct Stored {
    sending_time: String,
    message: Message,
}

/// MsgType, SendingTime and body fields of a message we encoded and stored.
fn parse_stored(bytes: &[u8]) -> Option<Stored> {
    let mut msg_type = None;
    let mut sending_time = None;
    let mut message = Message::new("");
    for field in bytes.split(|&b| b == SOH).filter(|field| !field.is_empty()) {
        let equals = field.iter().position(|&b| b == b'=')?;
        let tag = u32::try_from(parse_decimal(&field[..equals])?).ok()?;
        let value = String::from_utf8_lossy(&field[equals + 1..]);
        match tag {
            35 => msg_type = Some(value.into_owned()),
            52 => sending_time = Some(value.into_owned()),
            8 | 9 | 10 | 34 | 43 | 49 | 56 | 122 => {}
            _ => message.push(tag, &*value),
        }
    }
    message.msg_type = msg_type?;
    Some(Stored { sending_time: sending_time?, message })
}

/// Which configured session a Logon is for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogonRefusal {
    /// The first message is not a Logon: disconnect without an answer.
    #[error("first message not a Logon")]
    NotLogon,
    /// No session is configured for the CompID pair: answer with a Logout, then disconnect.
    #[error("unknown CompID")]
    UnknownCompId,
}

/// Finds the configured session a first message logs on to.
pub fn route_logon<'a>(
    configs: impl IntoIterator<Item = &'a SessionConfig>,
    inbound: &Inbound,
) -> Result<usize, LogonRefusal> {
    if inbound.message.msg_type != "A" {
        return Err(LogonRefusal::NotLogon);
    }
    configs
        .into_iter()
        .position(|config| {
            inbound.sender_comp_id.as_deref() == Some(config.target_comp_id.as_str())
                && inbound.target_comp_id.as_deref() == Some(config.sender_comp_id.as_str())
        })
        .ok_or(LogonRefusal::UnknownCompId)
}

/// A Logout answering a Logon for which no session exists, addressed back to whoever sent it.
pub fn encode_refusal(out: &mut Vec<u8>, now_ns: u64, inbound: &Inbound, text: &str) {
    let mut time_text = String::new();
    format_utc_timestamp(now_ns, &mut time_text);
    let header = Header {
        sender_comp_id: inbound.target_comp_id.as_deref().unwrap_or(""),
        target_comp_id: inbound.sender_comp_id.as_deref().unwrap_or(""),
        seq: 1,
        sending_time: &time_text,
        orig_sending_time: None,
    };
    encode(out, &header, "5", Message::new("5").with(58, text).body());
}
