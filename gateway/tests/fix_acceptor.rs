//! The acceptor over real TCP sockets on 127.0.0.1, with a test client that writes FIX bytes
//! by hand. Timeouts here only bound a failure; no test depends on timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway::fix::codec::format_utc_timestamp;
use gateway::fix::{
    Acceptor, AcceptorConfig, AcceptorHandle, Application, Outbox, SessionConfig, SessionKey,
    ThrottleConfig,
};
use gateway::Message;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Answers every NewOrderSingle with an ExecutionReport quoting its ClOrdID, and records
/// what the acceptor told it.
#[derive(Debug, Default, Clone)]
struct EchoApp {
    log: Arc<Mutex<Vec<String>>>,
    /// Set: the app takes no input, as a bridge whose answers back up.
    paused: Arc<AtomicBool>,
}

impl Application for EchoApp {
    fn on_logon(&mut self, session: SessionKey, _: &SessionConfig, _: &mut Outbox) {
        self.log.lock().unwrap().push(format!("logon {}", session.0));
    }

    fn on_message(
        &mut self,
        session: SessionKey,
        _: &SessionConfig,
        message: Message,
        outbox: &mut Outbox,
    ) {
        let id = message.get(11).unwrap_or("").to_owned();
        self.log.lock().unwrap().push(format!("{} {}", message.msg_type, id));
        outbox.send(session, Message::new("8").with(11, id).with(150, '0').with(39, '0'));
    }

    fn on_logout(&mut self, session: SessionKey, _: &SessionConfig, _: &mut Outbox) {
        self.log.lock().unwrap().push(format!("logout {}", session.0));
    }

    fn accepts_input(&self) -> bool {
        !self.paused.load(Ordering::Relaxed)
    }
}

fn sessions() -> Vec<SessionConfig> {
    let mut first = SessionConfig::new("EXCH", "C1");
    first.password = Some("pw1".to_owned());
    let second = SessionConfig::new("EXCH", "C2");
    vec![first, second]
}

fn start(config: AcceptorConfig) -> (AcceptorHandle<EchoApp>, Arc<Mutex<Vec<String>>>) {
    let app = EchoApp::default();
    let log = Arc::clone(&app.log);
    let acceptor = Acceptor::bind(config).unwrap();
    (acceptor.spawn(app), log)
}

fn start_default() -> (AcceptorHandle<EchoApp>, Arc<Mutex<Vec<String>>>) {
    start(AcceptorConfig::new("127.0.0.1:0".parse().unwrap(), sessions()))
}

fn now_text() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let mut text = String::new();
    format_utc_timestamp(u64::try_from(now).unwrap(), &mut text);
    text
}

/// A FIX message written by hand: `fields` joined with SOH, BodyLength and CheckSum computed
/// here, independently of the gateway's encoder.
fn frame(fields: &[(u32, String)]) -> Vec<u8> {
    let body: String = fields.iter().map(|(tag, value)| format!("{tag}={value}\x01")).collect();
    let mut bytes = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
    let sum = bytes.iter().map(|&b| u32::from(b)).sum::<u32>() % 256;
    bytes.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    bytes
}

/// A message received by the client, as tag/value pairs.
#[derive(Debug)]
struct Received(Vec<(u32, String)>);

impl Received {
    fn get(&self, tag: u32) -> Option<&str> {
        self.0.iter().find(|(t, _)| *t == tag).map(|(_, value)| value.as_str())
    }
    fn msg_type(&self) -> &str {
        self.get(35).unwrap()
    }
    fn seq(&self) -> u64 {
        self.get(34).unwrap().parse().unwrap()
    }
}

struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
    sender: String,
    seq: u64,
}

impl Client {
    fn connect(address: SocketAddr, sender: &str) -> Client {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client { stream, buffer: Vec::new(), sender: sender.to_owned(), seq: 1 }
    }

    fn message(&mut self, seq: u64, msg_type: &str, fields: &[(u32, &str)]) -> Vec<u8> {
        let mut all = vec![
            (35, msg_type.to_owned()),
            (49, self.sender.clone()),
            (56, "EXCH".to_owned()),
            (34, seq.to_string()),
            (52, now_text()),
        ];
        all.extend(fields.iter().map(|(tag, value)| (*tag, (*value).to_owned())));
        frame(&all)
    }

    fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) {
        let seq = self.seq;
        self.seq += 1;
        let bytes = self.message(seq, msg_type, fields);
        self.stream.write_all(&bytes).unwrap();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn logon(&mut self, password: Option<&str>) -> Received {
        let mut fields = vec![(98, "0"), (108, "30")];
        if let Some(password) = password {
            fields.push((554, password));
        }
        self.send("A", &fields);
        self.recv()
    }

    /// Logs on without a password (resuming the session's sequence numbers as stored) and
    /// returns the answer; `None` if the acceptor closed the connection instead.
    fn try_recv_after_logon(&mut self) -> Option<Received> {
        let fields = [(98, "0"), (108, "30"), (141, "Y")];
        self.send("A", &fields);
        self.try_recv()
    }

    /// The next whole message; `None` once the acceptor has closed the connection.
    fn try_recv(&mut self) -> Option<Received> {
        loop {
            if let Some(end) = find_trailer(&self.buffer) {
                let bytes: Vec<u8> = self.buffer.drain(..end).collect();
                let fields = bytes
                    .split(|&b| b == 1)
                    .filter(|field| !field.is_empty())
                    .map(|field| {
                        let text = String::from_utf8(field.to_vec()).unwrap();
                        let (tag, value) = text.split_once('=').unwrap();
                        (tag.parse().unwrap(), value.to_owned())
                    })
                    .collect();
                return Some(Received(fields));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(count) => self.buffer.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("no message within the failure bound: {error}"),
            }
        }
    }

    fn recv(&mut self) -> Received {
        self.try_recv().expect("connection closed")
    }

    /// Reads until the acceptor closes the connection; returns what arrived before.
    fn until_closed(&mut self) -> Vec<Received> {
        std::iter::from_fn(|| self.try_recv()).collect()
    }
}

/// The end of the first whole message in `buffer`, found by its `10=ddd` trailer.
fn find_trailer(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(8)
        .position(|window| window.starts_with(b"\x0110=") && window[7] == 1)
        .map(|position| position + 8)
}

#[test]
fn logon_order_and_logout() {
    let (acceptor, log) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C1");
    let logon = client.logon(Some("pw1"));
    assert_eq!((logon.msg_type(), logon.seq(), logon.get(108)), ("A", 1, Some("30")));
    assert_eq!((logon.get(49), logon.get(56)), (Some("EXCH"), Some("C1")));
    client.send("D", &[(11, "order-1")]);
    let report = client.recv();
    assert_eq!((report.msg_type(), report.get(11), report.seq()), ("8", Some("order-1"), 2));
    client.send("5", &[]);
    assert_eq!(client.recv().msg_type(), "5");
    assert!(client.until_closed().is_empty());
    let (_, stats) = acceptor.stop();
    assert_eq!(*log.lock().unwrap(), vec!["logon 0", "D order-1", "logout 0"]);
    assert_eq!(stats.connections_accepted, 1);
}

#[test]
fn wrong_password_and_unknown_comp_id_get_a_logout_and_no_session() {
    let (acceptor, log) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C1");
    let logout = client.logon(Some("nope"));
    assert_eq!((logout.msg_type(), logout.get(58)), ("5", Some("invalid username or password")));
    assert!(client.until_closed().is_empty());
    let mut stranger = Client::connect(acceptor.local_addr(), "WHO");
    let logout = stranger.logon(None);
    assert_eq!((logout.msg_type(), logout.get(58)), ("5", Some("unknown CompID")));
    assert_eq!(logout.get(56), Some("WHO"));
    assert!(stranger.until_closed().is_empty());
    acceptor.stop();
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn wrong_comp_id_after_logon_rejects_and_logs_out() {
    let (acceptor, _) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    client.sender = "C3".to_owned();
    client.send("0", &[]);
    let reject = client.recv();
    assert_eq!((reject.msg_type(), reject.get(373), reject.get(371)), ("3", Some("9"), Some("49")));
    assert_eq!(client.recv().msg_type(), "5");
    assert!(client.until_closed().is_empty());
    acceptor.stop();
}

#[test]
fn first_message_not_logon_and_garbage_drop_only_that_connection() {
    let (acceptor, _) = start_default();
    let mut healthy = Client::connect(acceptor.local_addr(), "C2");
    healthy.logon(None);
    let mut not_logon = Client::connect(acceptor.local_addr(), "C1");
    not_logon.send("D", &[(11, "x")]);
    assert!(not_logon.until_closed().is_empty());
    let mut garbage = Client::connect(acceptor.local_addr(), "C1");
    garbage.send_raw(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    assert!(garbage.until_closed().is_empty());
    healthy.send("1", &[(112, "still-here")]);
    let heartbeat = healthy.recv();
    assert_eq!((heartbeat.msg_type(), heartbeat.get(112)), ("0", Some("still-here")));
    acceptor.stop();
}

#[test]
fn bad_checksum_and_bad_body_length_are_ignored() {
    let (acceptor, _) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    let mut bad_sum = client.message(2, "1", &[(112, "lost")]);
    let len = bad_sum.len();
    bad_sum[len - 2] = if bad_sum[len - 2] == b'9' { b'8' } else { b'9' };
    client.send_raw(&bad_sum);
    let mut bad_length = client.message(2, "1", &[(112, "lost-too")]);
    // Declare a body one byte shorter than it is.
    let text = String::from_utf8(bad_length.clone()).unwrap();
    let declared: usize = text.split('\x01').nth(1).unwrap()[2..].parse().unwrap();
    bad_length = text
        .replacen(&format!("9={declared}\x01"), &format!("9={}\x01", declared - 1), 1)
        .into_bytes();
    client.send_raw(&bad_length);
    // Neither consumed sequence number 2: this one is in sequence, no ResendRequest comes.
    client.seq = 2;
    client.send("1", &[(112, "kept")]);
    let heartbeat = client.recv();
    assert_eq!((heartbeat.msg_type(), heartbeat.get(112)), ("0", Some("kept")));
    acceptor.stop();
}

#[test]
fn missing_required_tag_gets_a_reject() {
    let (acceptor, _) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    client.send("1", &[]);
    let reject = client.recv();
    assert_eq!(reject.msg_type(), "3");
    assert_eq!(
        (reject.get(371), reject.get(373), reject.get(45)),
        (Some("112"), Some("1"), Some("2"))
    );
    acceptor.stop();
}

#[test]
fn sequence_gap_asks_for_resend_and_processes_after_the_fill() {
    let (acceptor, log) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    client.seq = 3;
    client.send("D", &[(11, "three")]);
    let resend = client.recv();
    assert_eq!((resend.msg_type(), resend.get(7), resend.get(16)), ("2", Some("2"), Some("0")));
    let orig = now_text();
    let replay = client.message(2, "D", &[(43, "Y"), (122, &orig), (11, "two")]);
    client.send_raw(&replay);
    let first = client.recv();
    let second = client.recv();
    assert_eq!((first.get(11), second.get(11)), (Some("two"), Some("three")));
    acceptor.stop();
    assert_eq!(log.lock().unwrap()[1..3], ["D two".to_owned(), "D three".to_owned()]);
}

#[test]
fn sequence_too_low_logs_out() {
    let (acceptor, _) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    client.send("0", &[]);
    client.seq = 2;
    client.send("0", &[]);
    let logout = client.recv();
    assert_eq!(logout.msg_type(), "5");
    assert!(logout.get(58).unwrap().starts_with("MsgSeqNum too low"));
    assert!(client.until_closed().is_empty());
    acceptor.stop();
}

#[test]
fn client_disconnecting_mid_message_leaves_the_session_usable() {
    let (acceptor, log) = start_default();
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    let half = client.message(2, "D", &[(11, "half")]);
    client.send_raw(&half[..half.len() / 2]);
    drop(client);
    // The session is free again once the acceptor has seen the close; a retry loop bounded
    // by the failure timeout waits for that without assuming how long it takes.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut again = loop {
        let mut again = Client::connect(acceptor.local_addr(), "C2");
        again.seq = 2;
        let answer = again.logon(None);
        if answer.msg_type() == "A" {
            break again;
        }
        assert!(std::time::Instant::now() < deadline, "session never freed");
        std::thread::sleep(Duration::from_millis(10));
    };
    again.send("D", &[(11, "whole")]);
    assert_eq!(again.recv().get(11), Some("whole"));
    acceptor.stop();
    let log = log.lock().unwrap();
    assert!(!log.iter().any(|line| line.contains("half")));
    assert_eq!(log.iter().filter(|line| *line == "logout 1").count(), 2);
}

#[test]
fn throttled_messages_get_business_rejects_and_abuse_ends_the_session() {
    let mut configs = sessions();
    configs[1].throttle = ThrottleConfig { rate_per_s: 1, burst: 1, rejects_max: 1 };
    let (acceptor, _) = start(AcceptorConfig::new("127.0.0.1:0".parse().unwrap(), configs));
    let mut client = Client::connect(acceptor.local_addr(), "C2");
    client.logon(None);
    for id in ["a", "b", "c"] {
        client.send("D", &[(11, id)]);
    }
    let answers = client.until_closed();
    let types: Vec<&str> = answers.iter().map(Received::msg_type).collect();
    assert_eq!(types, vec!["8", "j", "j", "5"]);
    assert_eq!((answers[1].get(380), answers[1].get(58)), (Some("99"), Some("throttle exceeded")));
    acceptor.stop();
}

#[test]
fn sessions_survive_an_acceptor_restart_and_resend_old_messages() {
    let dir = std::env::temp_dir().join(format!("fix-acceptor-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = AcceptorConfig::new("127.0.0.1:0".parse().unwrap(), sessions());
    config.store_path = Some(dir.clone());
    let (acceptor, _) = start(config.clone());
    let mut client = Client::connect(acceptor.local_addr(), "C1");
    client.logon(Some("pw1"));
    client.send("D", &[(11, "before-restart")]);
    let report = client.recv();
    assert_eq!(report.seq(), 2);
    // Shutdown logs the session out; the client answers.
    let stopper = std::thread::spawn(move || acceptor.stop());
    assert_eq!(client.recv().msg_type(), "5");
    client.send("5", &[]);
    client.until_closed();
    stopper.join().unwrap();

    let (acceptor, _) = start(config);
    let mut client2 = Client::connect(acceptor.local_addr(), "C1");
    client2.seq = client.seq;
    let logon = client2.logon(Some("pw1"));
    assert_eq!((logon.msg_type(), logon.seq()), ("A", 4), "outbound numbers continue");
    client2.send("2", &[(7, "2"), (16, "2")]);
    let resent = client2.recv();
    assert_eq!((resent.msg_type(), resent.seq()), ("8", 2));
    assert_eq!((resent.get(11), resent.get(43)), (Some("before-restart"), Some("Y")));
    assert_eq!(resent.get(122), report.get(52));
    client2.send("D", &[(11, "after-restart")]);
    assert_eq!(client2.recv().seq(), 5);
    acceptor.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_beyond_the_limit_are_refused_and_freed_slots_serve_new_ones() {
    let mut config = AcceptorConfig::new("127.0.0.1:0".parse().unwrap(), sessions());
    config.connections_max = 2;
    let (acceptor, _) = start(config);
    let mut first = Client::connect(acceptor.local_addr(), "C1");
    first.logon(Some("pw1"));
    let idle = Client::connect(acceptor.local_addr(), "C2");
    // Both slots are taken: a third connection is accepted and closed at once.
    let mut refused = Client::connect(acceptor.local_addr(), "C2");
    assert!(refused.until_closed().is_empty());
    drop(idle);
    // The freed slot (and its epoll token) serves one connection after another; a retry loop
    // bounded by the failure timeout waits for the acceptor to see the close.
    let deadline = std::time::Instant::now() + TIMEOUT;
    for round in 0..10 {
        let mut client = loop {
            let mut client = Client::connect(acceptor.local_addr(), "C2");
            if let Some(answer) = client.try_recv_after_logon() {
                assert_eq!(answer.msg_type(), "A", "round {round}");
                break client;
            }
            assert!(std::time::Instant::now() < deadline, "the slot was never freed");
            std::thread::sleep(Duration::from_millis(10));
        };
        client.send("5", &[]);
        assert_eq!(client.recv().msg_type(), "5");
        assert!(client.until_closed().is_empty());
    }
    first.send("1", &[(112, "still-here")]);
    assert_eq!(first.recv().get(112), Some("still-here"));
    acceptor.stop();
}

#[test]
fn an_application_that_takes_no_input_leaves_it_in_the_socket_until_it_does() {
    // Driven pass by pass on this thread, so that "not read yet" is a fact, not a race.
    let mut acceptor =
        Acceptor::bind(AcceptorConfig::new("127.0.0.1:0".parse().unwrap(), sessions())).unwrap();
    let mut app = EchoApp::default();
    let log = Arc::clone(&app.log);
    let drive = |acceptor: &mut Acceptor, app: &mut EchoApp, entry: &str| {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !log.lock().unwrap().iter().any(|line| line == entry) {
            assert!(std::time::Instant::now() < deadline, "no {entry:?} within the failure bound");
            acceptor.poll(app, gateway::fix::acceptor::now_ns());
        }
    };
    let mut client = Client::connect(acceptor.local_addr(), "C1");
    let logon = client.message(1, "A", &[(98, "0"), (108, "30"), (554, "pw1")]);
    client.seq = 2;
    client.send_raw(&logon);
    drive(&mut acceptor, &mut app, "logon 0");
    assert_eq!(client.recv().msg_type(), "A");

    app.paused.store(true, Ordering::Relaxed);
    client.send("D", &[(11, "held")]);
    // On loopback a write has reached the acceptor's socket when it returns: epoll reports it
    // at the next pass, and the passes below would read it if reading were not held back.
    for _ in 0..1000 {
        acceptor.poll(&mut app, gateway::fix::acceptor::now_ns());
    }
    assert_eq!(*log.lock().unwrap(), vec!["logon 0"], "nothing read while paused");

    // Readiness seen while paused is kept: the bytes are read once input is taken again,
    // without a new edge from the socket.
    app.paused.store(false, Ordering::Relaxed);
    drive(&mut acceptor, &mut app, "D held");
    let report = client.recv();
    assert_eq!((report.msg_type(), report.get(11)), ("8", Some("held")));
}
