//! The TCP side: one thread, non-blocking sockets, every connection and every session served
//! by one poll loop that also drives the timers and the application's outbox.
//!
//! One thread for all sessions suits a two-core machine: the other core belongs to the
//! application loop. The sockets are registered with epoll (through `mio`), so a pass reads only
//! the connections that have data and accepts only when a connection is waiting, and an idle
//! thread sleeps in `epoll_wait` until a socket is ready, instead of parking for a guessed time
//! and then probing every socket. While the application awaits the answer to a command it has
//! submitted ([`Application::busy`]), the thread does not sleep: the answer comes through a
//! ring, which epoll cannot watch, within microseconds.
//!
//! A connection that sends garbage, stalls mid-message or fails on I/O is dropped alone;
//! nothing it sends can reach another connection's state.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sequencer::ring::{BackoffConfig, IdleConfig};

use super::codec::{DecoderTables, FixDecoder, FrameBuffer};
use super::session::SessionEvent;
use super::session::{encode_refusal, route_logon, LogonRefusal, Session, SessionConfig};
use super::store::{FixStore, MemoryStore, SessionStore, StoreError};
use super::{Application, Outbox, SessionKey};

/// How the acceptor listens and which sessions it serves.
#[derive(Clone, Debug)]
pub struct AcceptorConfig {
    pub listen: SocketAddr,
    pub sessions: Vec<SessionConfig>,
    /// Directory of the session log (sequence numbers and outbound messages); `None` keeps them in
    /// memory, lost on restart.
    pub store_path: Option<PathBuf>,
    pub idle: IdleConfig,
    /// A connection that has not logged on within this time is dropped.
    pub logon_timeout_ms: u64,
    /// How long shutdown waits for Logout replies.
    pub shutdown_grace_ms: u64,
    /// Larger messages are dropped as having a bad BodyLength.
    pub body_length_max: usize,
    /// Connections beyond this (logged on or not) are refused at accept.
    pub connections_max: usize,
}

impl AcceptorConfig {
    pub fn new(listen: SocketAddr, sessions: Vec<SessionConfig>) -> AcceptorConfig {
        AcceptorConfig {
            listen,
            sessions,
            store_path: None,
            idle: IdleConfig::Backoff(BackoffConfig::default()),
            logon_timeout_ms: 10_000,
            shutdown_grace_ms: 2_000,
            body_length_max: 16 * 1024,
            connections_max: 1024,
        }
    }
}

/// Failures of the acceptor as a whole; per-connection failures only drop that connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptorError {
    #[error("FIX acceptor cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("FIX acceptor cannot create its epoll instance: {0}")]
    Poll(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("two sessions share the CompID pair {sender}/{target}")]
    DuplicateSession { sender: String, target: String },
}

/// Counters for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptorStats {
    pub connections_accepted: u64,
    pub connections_dropped: u64,
    /// Frames ignored for a bad BodyLength or CheckSum, or bytes skipped as garbage.
    pub frames_ignored: u64,
    pub messages_received: u64,
    /// Outbox messages that could not be sent (unknown session, session-level type, store).
    pub sends_failed: u64,
    /// Times the session store could not write what a pass stored; every connection was
    /// dropped each time, since nothing unstored may be sent.
    pub store_failures: u64,
}

struct Connection {
    stream: TcpStream,
    frames: FrameBuffer,
    decoder: FixDecoder,
    write: Vec<u8>,
    session: Option<usize>,
    opened_ns: u64,
    /// Write what is pending, then close; read nothing more.
    closing: bool,
    /// The socket may have unread bytes: epoll said so and no read has drained it since.
    readable: bool,
    /// Epoll reported the peer's end closed (or an error): reads continue until they say so,
    /// since no further edge will come.
    hung_up: bool,
    /// The socket may take more bytes: no write has hit a full send buffer since epoll said so.
    writable: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session", &self.session)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Slot {
    session: Session,
    connection: Option<usize>,
}

/// The acceptor's state; [`Acceptor::spawn`] runs it on its own thread.
#[derive(Debug)]
pub struct Acceptor {
    config: AcceptorConfig,
    listener: TcpListener,
    /// A connection may be waiting to be accepted.
    listener_ready: bool,
    poller: Poll,
    events: Events,
    /// Where the sessions' stores write; flushed once per pass, before any byte is sent.
    store: Option<FixStore>,
    local_addr: SocketAddr,
    tables: Arc<DecoderTables>,
    slots: Vec<Slot>,
    connections: Vec<Option<Connection>>,
    outbox: Outbox,
    read_buffer: Vec<u8>,
    stats: AcceptorStats,
}

/// Reads per connection per pass, and the bytes one read takes: together they bound how much
/// input a pass handles before it looks at the application's output again. In steady flow a
/// read returns a few messages; after a stall the sockets hold thousands, and four reads of
/// 64 KiB per connection made one pass handle up to 7,000 orders, 20-30 ms in which no report
/// went out (caught at 50,000 orders/s, the output ring growing past 20,000 records meanwhile).
/// One read of 16 KiB is about a hundred orders per connection.
const READS_PER_PASS: usize = 1;
const READ_CHUNK: usize = 16 * 1024;
/// The listener's epoll token; connection `id` has token `id + 1`.
const LISTENER: Token = Token(0);
/// Readiness events taken per `epoll_wait`.
const EVENTS_MAX: usize = 256;
/// Longest sleep in `epoll_wait` when idle, so that timers and output that arrives through the
/// rings without a socket event (another source's commands) are served within it.
const SLEEP_MAX: Duration = Duration::from_millis(1);
/// How often a thread spinning for answers asks epoll what is ready; see `Acceptor::run`. An
/// empty pass with the system call took about 0.27 µs on the benchmark VM, and these passes
/// were about 4% of the core the FIX thread shares at 50,000 orders/s.
const SPIN_EPOLL_NS: u64 = 2_000;

/// Whether a pass starting at `now_ns` first asks epoll what is ready. While the thread spins
/// for answers (the last pass found nothing and the application awaits some), most passes find
/// no socket ready either: epoll is asked at most every [`SPIN_EPOLL_NS`] since `epoll_ns`, so
/// that such a pass costs a look at the ring rather than a system call, and a message arriving
/// meanwhile waits at most that long. Otherwise every pass asks.
fn asks_epoll(spinning: bool, now_ns: u64, epoll_ns: u64) -> bool {
    !spinning || now_ns.saturating_sub(epoll_ns) >= SPIN_EPOLL_NS
}

fn token(id: usize) -> Token {
    Token(id + 1)
}

/// Nanoseconds since the Unix epoch from the system clock; the acceptor is the only place the
/// session layer's time comes from.
pub fn now_ns() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

impl Acceptor {
    /// Opens the store, restores every session's sequence numbers and starts listening.
    pub fn bind(config: AcceptorConfig) -> Result<Acceptor, AcceptorError> {
        for (index, session) in config.sessions.iter().enumerate() {
            let duplicate = config.sessions[..index].iter().any(|other| {
                other.sender_comp_id == session.sender_comp_id
                    && other.target_comp_id == session.target_comp_id
            });
            if duplicate {
                return Err(AcceptorError::DuplicateSession {
                    sender: session.sender_comp_id.clone(),
                    target: session.target_comp_id.clone(),
                });
            }
        }
        let store = config.store_path.as_deref().map(FixStore::open).transpose()?;
        let mut slots = Vec::with_capacity(config.sessions.len());
        for session_config in &config.sessions {
            let session_store: Box<dyn SessionStore> = match &store {
                Some(store) => Box::new(
                    store
                        .session(&session_config.sender_comp_id, &session_config.target_comp_id)?,
                ),
                None => Box::new(MemoryStore::default()),
            };
            let session = Session::new(session_config.clone(), session_store)?;
            slots.push(Slot { session, connection: None });
        }
        let address = config.listen;
        let listen_error = |source| AcceptorError::Listen { address, source };
        let listener = std::net::TcpListener::bind(address).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;
        let mut listener = TcpListener::from_std(listener);
        let poller = Poll::new().map_err(AcceptorError::Poll)?;
        poller
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(AcceptorError::Poll)?;
        Ok(Acceptor {
            config,
            listener,
            listener_ready: true,
            poller,
            events: Events::with_capacity(EVENTS_MAX),
            store,
            local_addr,
            tables: DecoderTables::fix44(),
            slots,
            connections: Vec::new(),
            outbox: Outbox::default(),
            read_buffer: vec![0; READ_CHUNK],
            stats: AcceptorStats::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> AcceptorStats {
        self.stats
    }

    /// Runs the poll loop on a new thread until [`AcceptorHandle::stop`].
    pub fn spawn<A: Application + Send + 'static>(self, application: A) -> AcceptorHandle<A> {
        let stop = Arc::new(AtomicBool::new(false));
        let local_addr = self.local_addr;
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fix-acceptor".to_owned())
            .spawn(move || {
                let mut acceptor = self;
                let mut application = application;
                acceptor.run(&mut application, &thread_stop);
                (application, acceptor.stats)
            })
            .expect("spawning the FIX acceptor thread");
        AcceptorHandle { stop, thread, local_addr }
    }

    /// The loop: poll until `stop` is set, then log every session out and close.
    ///
    /// After a pass that did work, or while the application awaits answers, the next pass
    /// starts at once; otherwise the configured idle strategy decides: busy-spin and yield
    /// never sleep (for a thread with a core of its own), backoff sleeps in `epoll_wait` until a
    /// socket is ready or a millisecond has passed.
    pub fn run<A: Application>(&mut self, application: &mut A, stop: &AtomicBool) {
        let sleep = match self.config.idle {
            IdleConfig::Backoff(_) => Some(SLEEP_MAX),
            IdleConfig::BusySpin | IdleConfig::Yield => None,
        };
        let mut timeout = Duration::ZERO;
        let mut spinning = false;
        let mut epoll_ns = 0;
        while !stop.load(Ordering::Acquire) {
            let mut now = now_ns();
            if asks_epoll(spinning, now, epoll_ns) {
                self.wait_ready(timeout);
                epoll_ns = now;
                if !timeout.is_zero() {
                    // The wait may have slept: the pass's timers need the time after it.
                    now = now_ns();
                }
            }
            let work = self.pass(application, now);
            timeout = Duration::ZERO;
            let busy = application.busy();
            spinning = work == 0 && busy;
            if work == 0 && !busy {
                match sleep {
                    Some(sleep) => {
                        // What a pass stored without sending anything (inbound sequence
                        // numbers) is written before the thread sleeps.
                        self.flush_store(application);
                        timeout = sleep;
                    }
                    None if self.config.idle == IdleConfig::Yield => std::thread::yield_now(),
                    None => std::hint::spin_loop(),
                }
            }
        }
        self.shut_down(application);
    }

    /// One pass over the listener, every connection, the outbox and the timers, after taking
    /// the readiness epoll has without waiting. Returns how much work it did. Public so that a
    /// caller can drive the acceptor from its own loop.
    pub fn poll<A: Application>(&mut self, application: &mut A, now_ns: u64) -> usize {
        self.wait_ready(Duration::ZERO);
        self.pass(application, now_ns)
    }

    /// Waits up to `timeout` for a socket to be ready and marks what is.
    fn wait_ready(&mut self, timeout: Duration) {
        // An interrupted wait is an empty one; the next pass waits again.
        if self.poller.poll(&mut self.events, Some(timeout)).is_err() {
            return;
        }
        for event in &self.events {
            if event.token() == LISTENER {
                self.listener_ready = true;
                continue;
            }
            let id = event.token().0 - 1;
            let Some(Some(connection)) = self.connections.get_mut(id) else { continue };
            // Errors and hang-ups show up as a read that fails or returns 0.
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                connection.readable = true;
            }
            if event.is_read_closed() || event.is_error() {
                connection.hung_up = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                connection.writable = true;
            }
        }
    }

    fn pass<A: Application>(&mut self, application: &mut A, now_ns: u64) -> usize {
        let mut work = self.accept(now_ns);
        if application.accepts_input() {
            for id in 0..self.connections.len() {
                work += self.read_connection(id, application, now_ns);
            }
        }
        work += application.poll(&mut self.outbox);
        work += self.drain_outbox(now_ns);
        self.timers(application, now_ns);
        let sending = self.connections.iter().flatten().any(|c| !c.write.is_empty());
        if sending || self.store.as_ref().is_some_and(FixStore::has_outbound) {
            self.flush_store(application);
        }
        for id in 0..self.connections.len() {
            work += self.write_connection(id, application);
        }
        work
    }

    /// Ends the pass in the session log: in a pass that has bytes to send or stored an outbound
    /// message, before any of them is sent, otherwise before the thread sleeps. Every message
    /// is in the log's page cache from the moment it was stored, so a message the counterparty
    /// has seen can always be resent after a restart; a log that reports a failure here (its
    /// group commit, under a policy that syncs) may not be trusted with what follows, so every
    /// connection is dropped.
    fn flush_store<A: Application>(&mut self, app: &mut A) {
        let Some(store) = &self.store else { return };
        if let Err(error) = store.flush() {
            eprintln!("fix: session store: {error}; dropping every connection");
            self.stats.store_failures += 1;
            for id in 0..self.connections.len() {
                if let Some(connection) = self.connections[id].as_mut() {
                    connection.write.clear();
                }
                self.drop_connection(id, app);
            }
        }
    }

    fn accept(&mut self, now_ns: u64) -> usize {
        let mut accepted = 0;
        while self.listener_ready {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return accepted;
                }
                // Other accept errors (a peer that reset before we accepted, descriptor
                // exhaustion) are retried on the next pass.
                Err(_) => return accepted,
            };
            accepted += 1;
            let open = self.connections.iter().filter(|c| c.is_some()).count();
            let id = self.connections.iter().position(Option::is_none);
            let id = id.unwrap_or(self.connections.len());
            if open >= self.config.connections_max
                || stream.set_nodelay(true).is_err()
                || self
                    .poller
                    .registry()
                    .register(&mut stream, token(id), Interest::READABLE | Interest::WRITABLE)
                    .is_err()
            {
                continue;
            }
            self.stats.connections_accepted += 1;
            let connection = Connection {
                stream,
                frames: FrameBuffer::new(self.config.body_length_max),
                decoder: FixDecoder::new(Arc::clone(&self.tables)),
                write: Vec::with_capacity(4096),
                session: None,
                opened_ns: now_ns,
                closing: false,
                readable: true,
                hung_up: false,
                writable: true,
            };
            if id == self.connections.len() {
                self.connections.push(Some(connection));
            } else {
                self.connections[id] = Some(connection);
            }
        }
        accepted
    }

    fn read_connection<A: Application>(&mut self, id: usize, app: &mut A, now_ns: u64) -> usize {
        let mut work = 0;
        for _ in 0..READS_PER_PASS {
            let Some(connection) = self.connections[id].as_mut() else { return work };
            if connection.closing || !connection.readable {
                return work;
            }
            match connection.stream.read(&mut self.read_buffer) {
                Ok(0) => {
                    self.drop_connection(id, app);
                    return work + 1;
                }
                Ok(count) => {
                    // A TCP read returns everything queued up to the buffer's size, so a short
                    // read drained the socket, and bytes arriving later raise a new edge: no
                    // second read is needed to learn that the socket is empty. The end of the
                    // stream raises no new edge, so after a hang-up reading goes on to the 0.
                    connection.readable = count == self.read_buffer.len() || connection.hung_up;
                    connection.frames.extend(&self.read_buffer[..count]);
                    work += 1;
                    self.handle_frames(id, app, now_ns);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    connection.readable = false;
                    return work;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_connection(id, app);
                    return work + 1;
                }
            }
        }
        work
    }

    fn handle_frames<A: Application>(&mut self, id: usize, app: &mut A, now_ns: u64) {
        loop {
            let Some(connection) = self.connections[id].as_mut() else { return };
            if connection.closing {
                return;
            }
            let Some(frame) = connection.frames.next_frame() else { return };
            let decoded = match frame {
                Ok(range) => connection.decoder.decode(connection.frames.frame(range)).ok(),
                Err(_) => None,
            };
            let Some(inbound) = decoded else {
                self.stats.frames_ignored += 1;
                // Before Logon nothing is known about the peer, so anything malformed ends the
                // connection; afterwards the standard says to ignore the message.
                if connection.session.is_none() {
                    self.drop_connection(id, app);
                    return;
                }
                continue;
            };
            self.stats.messages_received += 1;
            let index = match connection.session {
                Some(index) => index,
                None => match self.attach(id, &inbound, now_ns) {
                    Some(index) => index,
                    None => return,
                },
            };
            if let Err(_error) = self.slots[index].session.handle_inbound(now_ns, inbound) {
                self.drop_connection(id, app);
                return;
            }
            self.after_session(index, app);
            self.drain_outbox(now_ns);
        }
    }

    /// Routes a first message to its session; refuses (and closes) otherwise.
    fn attach(&mut self, id: usize, inbound: &super::codec::Inbound, now_ns: u64) -> Option<usize> {
        let connection = self.connections[id].as_mut()?;
        let routed = route_logon(self.slots.iter().map(|slot| slot.session.config()), inbound);
        match routed {
            Ok(index) if self.slots[index].connection.is_none() => {
                connection.session = Some(index);
                self.slots[index].connection = Some(id);
                Some(index)
            }
            Ok(_) => {
                encode_refusal(&mut connection.write, now_ns, inbound, "session already logged on");
                connection.closing = true;
                None
            }
            Err(LogonRefusal::UnknownCompId) => {
                encode_refusal(&mut connection.write, now_ns, inbound, "unknown CompID");
                connection.closing = true;
                None
            }
            Err(_) => {
                connection.write.clear();
                connection.closing = true;
                None
            }
        }
    }

    /// Moves a session's events to the application and its bytes to its connection.
    fn after_session<A: Application>(&mut self, index: usize, app: &mut A) {
        let key = SessionKey(u32::try_from(index).expect("session count fits u32"));
        while let Some(event) = self.slots[index].session.poll_event() {
            let config = self.slots[index].session.config();
            match event {
                SessionEvent::LoggedOn => app.on_logon(key, config, &mut self.outbox),
                SessionEvent::Application { message, seq } => {
                    self.outbox.set_handling(Some((key, seq)));
                    app.on_message(key, config, message, &mut self.outbox);
                    self.outbox.set_handling(None);
                }
                SessionEvent::Disconnect { logged_on, .. } => {
                    if logged_on {
                        app.on_logout(key, config, &mut self.outbox);
                    }
                    if let Some(id) = self.slots[index].connection.take() {
                        let slot_session = &mut self.slots[index].session;
                        if let Some(connection) = self.connections[id].as_mut() {
                            slot_session.drain_transmit(&mut connection.write);
                            connection.closing = true;
                            connection.session = None;
                        }
                    }
                }
            }
        }
        if let Some(id) = self.slots[index].connection {
            if let Some(connection) = self.connections[id].as_mut() {
                self.slots[index].session.drain_transmit(&mut connection.write);
            }
        }
    }

    fn drain_outbox(&mut self, now_ns: u64) -> usize {
        let mut sent = 0;
        while let Some((key, message)) = self.outbox.pop() {
            sent += 1;
            let Some(slot) = usize::try_from(key.0).ok().and_then(|i| self.slots.get_mut(i)) else {
                self.stats.sends_failed += 1;
                continue;
            };
            let result = if message.msg_type == "3" {
                slot.session.send_application_reject(now_ns, &message)
            } else {
                slot.session.send_application(now_ns, &message)
            };
            if result.is_err() {
                self.stats.sends_failed += 1;
                continue;
            }
            if let Some(connection) = slot.connection.and_then(|id| self.connections[id].as_mut()) {
                slot.session.drain_transmit(&mut connection.write);
            }
        }
        sent
    }

    fn timers<A: Application>(&mut self, app: &mut A, now_ns: u64) {
        for index in 0..self.slots.len() {
            if self.slots[index].connection.is_none() {
                continue;
            }
            if self.slots[index].session.handle_timeout(now_ns).is_err() {
                if let Some(id) = self.slots[index].connection {
                    self.drop_connection(id, app);
                }
                continue;
            }
            self.after_session(index, app);
        }
        let logon_timeout_ns = self.config.logon_timeout_ms.saturating_mul(1_000_000);
        for id in 0..self.connections.len() {
            let expired = self.connections[id].as_ref().is_some_and(|connection| {
                connection.session.is_none()
                    && now_ns.saturating_sub(connection.opened_ns) > logon_timeout_ns
            });
            if expired {
                self.drop_connection(id, app);
            }
        }
        self.drain_outbox(now_ns);
    }

    fn write_connection<A: Application>(&mut self, id: usize, app: &mut A) -> usize {
        let Some(connection) = self.connections[id].as_mut() else { return 0 };
        let mut written = 0;
        while connection.writable && written < connection.write.len() {
            match connection.stream.write(&connection.write[written..]) {
                Ok(0) => break,
                Ok(count) => written += count,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    connection.writable = false;
                    break;
                }
                Err(_) => {
                    self.drop_connection(id, app);
                    return 1;
                }
            }
        }
        connection.write.drain(..written);
        if connection.closing && connection.write.is_empty() {
            self.drop_connection(id, app);
            return 1;
        }
        usize::from(written > 0)
    }

    /// Closes a connection; if it was a session's logged-on connection, tells the application.
    fn drop_connection<A: Application>(&mut self, id: usize, app: &mut A) {
        let Some(mut connection) = self.connections[id].take() else { return };
        self.stats.connections_dropped += 1;
        let _ = self.poller.registry().deregister(&mut connection.stream);
        let _ = connection.stream.shutdown(Shutdown::Both);
        let Some(index) = connection.session else { return };
        if self.slots[index].connection != Some(id) {
            return;
        }
        self.slots[index].connection = None;
        if self.slots[index].session.disconnect() {
            let key = SessionKey(u32::try_from(index).expect("session count fits u32"));
            app.on_logout(key, self.slots[index].session.config(), &mut self.outbox);
        }
    }

    /// Logs every session out, waits for the replies within the grace period, and closes.
    fn shut_down<A: Application>(&mut self, app: &mut A) {
        let start_ns = now_ns();
        for index in 0..self.slots.len() {
            if self.slots[index].connection.is_some() {
                let now = now_ns();
                if self.slots[index].session.logout(now, "acceptor shutting down").is_err() {
                    continue;
                }
                self.after_session(index, app);
            }
        }
        let grace_ns = self.config.shutdown_grace_ms.saturating_mul(1_000_000);
        loop {
            let now = now_ns();
            let waiting = self.slots.iter().any(|slot| slot.connection.is_some());
            if !waiting || now.saturating_sub(start_ns) > grace_ns {
                break;
            }
            for id in 0..self.connections.len() {
                self.read_connection(id, app, now);
            }
            self.flush_store(app);
            for id in 0..self.connections.len() {
                self.write_connection(id, app);
            }
            self.wait_ready(SLEEP_MAX);
        }
        self.flush_store(app);
        for id in 0..self.connections.len() {
            self.write_connection(id, app);
            self.drop_connection(id, app);
        }
        // A clean stop leaves the session log on disk, not only in the page cache.
        if let Some(Err(error)) = self.store.as_ref().map(FixStore::sync) {
            eprintln!("fix: syncing the session log at shutdown: {error}");
        }
    }
}

/// The running acceptor thread.
#[derive(Debug)]
pub struct AcceptorHandle<A> {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(A, AcceptorStats)>,
    local_addr: SocketAddr,
}

impl<A> AcceptorHandle<A> {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Logs every session out, closes every connection, and returns the application and the
    /// final counters. Panics if the acceptor thread panicked.
    pub fn stop(self) -> (A, AcceptorStats) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().expect("the FIX acceptor thread panicked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_asks_epoll_only_once_the_interval_has_passed() {
        // Not spinning: every pass asks, however recently the last one did.
        assert!(asks_epoll(false, 1_000, 1_000));
        // Spinning: not within the interval, then again once it has passed.
        assert!(!asks_epoll(true, 1_000 + SPIN_EPOLL_NS - 1, 1_000));
        assert!(asks_epoll(true, 1_000 + SPIN_EPOLL_NS, 1_000));
        // A reading before the last ask counts as no time passed, rather than wrapping round
        // to a huge interval.
        assert!(!asks_epoll(true, 500, 1_000));
    }
}
