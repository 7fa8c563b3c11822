//! The FIX 4.4 acceptor: TCP connections in, application messages up, application messages
//! down, all on one I/O thread that never runs engine code.
//!
//! - [`codec`]: framing of the byte stream (BodyLength, CheckSum), decoding with `fefix`, and
//!   our own encoder.
//! - [`session`]: the session layer as a pure state machine ([`Session`]), time passed in.
//! - [`store`]: sequence numbers and outbound messages per session, in an append-only log.
//! - [`acceptor`]: the TCP listener and the poll loop that drives sessions and timers.
//! - [`fuzzing`]: a byte-driven exerciser of codec and session for fuzz and property tests.
//!
//! # The application interface
//!
//! The layer above (order entry) implements [`Application`]. The acceptor calls it on its own
//! thread: [`Application::on_logon`] when a session logs on, [`Application::on_message`] for
//! every application message that arrives in sequence and within the session's throttle,
//! [`Application::on_logout`] when a logged-on connection ends, and [`Application::poll`]
//! once per loop iteration so that the application can move work from elsewhere (the
//! application loop's rings) to sessions. Every call gets an [`Outbox`]; a message put there
//! with [`Outbox::send`] is numbered, stored and written to that session's connection in the
//! same loop iteration. A message for a session that is not logged on is numbered and stored
//! all the same, so the counterparty receives it as a resend after it logs on again.
//!
//! Sessions are named by [`SessionKey`], the position of their [`SessionConfig`] in
//! [`AcceptorConfig::sessions`]; it stays the same across reconnects and restarts as long as
//! the configuration does.
//!
//! ```no_run
//! use gateway::fix::{Acceptor, AcceptorConfig, Application, Outbox, SessionConfig, SessionKey};
//! use gateway::Message;
//!
//! /// Acknowledges every NewOrderSingle.
//! struct Acknowledger;
//!
//! impl Application for Acknowledger {
//!     fn on_message(
//!         &mut self,
//!         session: SessionKey,
//!         _config: &SessionConfig,
//!         message: Message,
//!         outbox: &mut Outbox,
//!     ) {
//!         if message.msg_type == "D" {
//!             let id = message.get(11).unwrap_or_default().to_owned();
//!             outbox.send(session, Message::new("8").with(11, id).with(150, '0'));
//!         }
//!     }
//! }
//!
//! let sessions = vec![SessionConfig::new("EXCH", "CLIENT1")];
//! let mut config = AcceptorConfig::new("127.0.0.1:9878".parse().unwrap(), sessions);
//! config.store_path = Some("data/fix".into());
//! let handle = Acceptor::bind(config).unwrap().spawn(Acknowledger);
//! // ... later: log every session out and join the thread.
//! let (_application, _stats) = handle.stop();
//! ```

pub mod acceptor;
pub mod codec;
pub mod fuzzing;
pub mod session;
pub mod store;

use std::collections::VecDeque;

pub use acceptor::{Acceptor, AcceptorConfig, AcceptorError, AcceptorHandle, AcceptorStats};
pub use session::{Session, SessionConfig, SessionEvent, ThrottleConfig};
pub use store::{FixStore, MemoryStore, SessionStore, StoreError};

use crate::message::Message;

/// A configured session: its index in [`AcceptorConfig::sessions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u32);

/// Outbound application messages, addressed by session, waiting for the acceptor to send them.
#[derive(Debug, Default)]
pub struct Outbox {
    messages: VecDeque<(SessionKey, Message)>,
    /// The session and MsgSeqNum of the inbound message the application is handling.
    handling: Option<(SessionKey, u64)>,
}

impl Outbox {
    /// Queues `message` (an application MsgType such as `8`, `9`, `j`, or a Reject `3` about
    /// the message being handled) for `session`. A Reject or BusinessMessageReject sent while an
    /// inbound message of the same session is being handled gets that message's MsgSeqNum as
    /// RefSeqNum (45) unless it has one.
    pub fn send(&mut self, session: SessionKey, mut message: Message) {
        if let Some((reference_session, seq)) = self.handling {
            let is_reject = matches!(message.msg_type.as_str(), "3" | "j");
            if is_reject && reference_session == session && message.get(45).is_none() {
                message.insert_first(45, seq);
            }
        }
        self.messages.push_back((session, message));
    }

    /// Marks the inbound message being handled, for [`Outbox::send`]; `None` when done.
    pub(crate) fn set_handling(&mut self, handling: Option<(SessionKey, u64)>) {
        self.handling = handling;
    }

    /// What [`Outbox::set_handling`] last set, to restore it when answering later.
    pub(crate) fn handling(&self) -> Option<(SessionKey, u64)> {
        self.handling
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The oldest queued message; the acceptor drains the outbox with this.
    pub fn pop(&mut self) -> Option<(SessionKey, Message)> {
        self.messages.pop_front()
    }
}

/// The layer above the session layer. All methods run on the acceptor's thread and must not
/// block: the same thread serves every connection.
pub trait Application {
    /// A connection logged on to `session`.
    fn on_logon(&mut self, session: SessionKey, config: &SessionConfig, outbox: &mut Outbox) {
        let _ = (session, config, outbox);
    }

    /// An application message arrived in sequence and within the throttle. Session-level
    /// messages never arrive here.
    fn on_message(
        &mut self,
        session: SessionKey,
        config: &SessionConfig,
        message: Message,
        outbox: &mut Outbox,
    );

    /// The logged-on connection of `session` ended (Logout, error, timeout or shutdown).
    /// `config.cancel_on_disconnect` says whether its orders should be cancelled now.
    fn on_logout(&mut self, session: SessionKey, config: &SessionConfig, outbox: &mut Outbox) {
        let _ = (session, config, outbox);
    }

    /// Called once per loop iteration; returns how much work it did (zero lets the loop idle).
    fn poll(&mut self, outbox: &mut Outbox) -> usize {
        let _ = outbox;
        0
    }

    /// Whether the application expects work soon without any socket becoming ready, such as
    /// the answers to commands it has submitted; the acceptor then keeps polling instead of
    /// sleeping in `epoll_wait`.
    fn busy(&self) -> bool {
        false
    }

    /// Whether the application takes more inbound messages now. While it does not (its
    /// answers are backing up), the acceptor leaves what the sockets hold unread, so that
    /// back-pressure reaches the counterparties through TCP; it still polls the application,
    /// sends, and runs the session timers.
    fn accepts_input(&self) -> bool {
        true
    }
}
