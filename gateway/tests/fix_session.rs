//! The session state machine, driven message by message with injected time: every rule of the
//! session layer without sockets or sleeping.

use gateway::fix::codec::{encode, format_utc_timestamp, DecoderTables, FixDecoder, FrameBuffer};
use gateway::fix::codec::{Header, Inbound};
use gateway::fix::ThrottleConfig;
use gateway::fix::{FixStore, MemoryStore, Session, SessionConfig, SessionEvent, SessionStore};
use gateway::Message;

const S: u64 = 1_000_000_000;
const T0: u64 = 1_704_164_645_000_000_000;

struct Harness {
    session: Session,
    decoder: FixDecoder,
    now: u64,
    seq: u64,
}

/// One message the session sent, decoded back.
#[derive(Debug)]
struct Sent(Inbound);

impl Sent {
    fn msg_type(&self) -> &str {
        &self.0.message.msg_type
    }
    fn get(&self, tag: u32) -> Option<&str> {
        self.0.message.get(tag)
    }
}

fn config() -> SessionConfig {
    let mut config = SessionConfig::new("EXCH", "CLIENT");
    config.password = Some("secret".to_owned());
    config
}

impl Harness {
    fn new(config: SessionConfig) -> Harness {
        Harness::with_store(config, Box::new(MemoryStore::default()))
    }

    fn with_store(config: SessionConfig, store: Box<dyn SessionStore>) -> Harness {
        let session = Session::new(config, store).unwrap();
        Harness { session, decoder: FixDecoder::new(DecoderTables::fix44()), now: T0, seq: 1 }
    }

    fn logged_on() -> Harness {
        Harness::logged_on_with(Box::new(MemoryStore::default()))
    }

    fn logged_on_with(store: Box<dyn SessionStore>) -> Harness {
        let mut harness = Harness::with_store(config(), store);
        harness.logon(30);
        let sent = harness.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].msg_type(), "A");
        assert_eq!(harness.events(), vec![SessionEvent::LoggedOn]);
        harness
    }

    fn logon(&mut self, heartbeat_s: u32) {
        let fields = [(98, "0"), (108, &*heartbeat_s.to_string()), (554, "secret")];
        self.send("A", &fields);
    }

    /// Builds a client message with the next sequence number and feeds it to the session.
    fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) {
        let seq = self.seq;
        self.seq += 1;
        self.send_with(seq, "CLIENT", self.now, None, msg_type, fields);
    }

    fn send_with(
        &mut self,
        seq: u64,
        sender: &str,
        sending_ns: u64,
        orig: Option<&str>,
        msg_type: &str,
        fields: &[(u32, &str)],
    ) {
        let mut time = String::new();
        format_utc_timestamp(sending_ns, &mut time);
        let header = Header {
            sender_comp_id: sender,
            target_comp_id: "EXCH",
            seq,
            sending_time: &time,
            orig_sending_time: orig,
        };
        let mut message = Message::new(msg_type);
        for (tag, value) in fields {
            message.push(*tag, value);
        }
        let mut bytes = Vec::new();
        encode(&mut bytes, &header, msg_type, message.body());
        let inbound = self.decoder.decode(&bytes).unwrap();
        self.session.handle_inbound(self.now, inbound).unwrap();
    }

    fn sent(&mut self) -> Vec<Sent> {
        let mut bytes = Vec::new();
        self.session.drain_transmit(&mut bytes);
        let mut frames = FrameBuffer::new(1 << 16);
        frames.extend(&bytes);
        let mut sent = Vec::new();
        while let Some(frame) = frames.next_frame() {
            let range = frame.expect("the session writes well-formed frames");
            sent.push(Sent(self.decoder.decode(frames.frame(range)).unwrap()));
        }
        sent
    }

    fn events(&mut self) -> Vec<SessionEvent> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn advance(&mut self, ns: u64) {
        self.now += ns;
        self.session.handle_timeout(self.now).unwrap();
    }
}

fn disconnected(events: &[SessionEvent]) -> bool {
    events.iter().any(|event| matches!(event, SessionEvent::Disconnect { .. }))
}

#[test]
fn logon_then_logout() {
    let mut harness = Harness::logged_on();
    assert_eq!((harness.session.next_inbound(), harness.session.next_outbound()), (2, 2));
    harness.send("5", &[]);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "5");
    let events = harness.events();
    assert_eq!(
        events,
        vec![SessionEvent::Disconnect { reason: "Logout".to_owned(), logged_on: true }]
    );
    assert!(!harness.session.is_logged_on());
}

#[test]
fn logout_we_start_waits_for_the_reply() {
    let mut harness = Harness::logged_on();
    harness.session.logout(harness.now, "bye").unwrap();
    assert_eq!(harness.sent()[0].get(58), Some("bye"));
    harness.send("5", &[]);
    assert!(harness.sent().is_empty(), "a Logout reply is not answered");
    assert!(disconnected(&harness.events()));
}

#[test]
fn wrong_password_gets_a_logout_and_no_session() {
    let mut harness = Harness::new(config());
    harness.send("A", &[(98, "0"), (108, "30"), (554, "wrong")]);
    let sent = harness.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msg_type(), "5");
    assert_eq!(sent[0].get(58), Some("invalid username or password"));
    assert!(matches!(harness.events()[..], [SessionEvent::Disconnect { logged_on: false, .. }]));
    assert_eq!((harness.session.next_inbound(), harness.session.next_outbound()), (1, 1));
}

#[test]
fn heartbeat_interval_out_of_bounds_is_refused() {
    let mut harness = Harness::new(config());
    harness.logon(0);
    assert_eq!(harness.sent()[0].msg_type(), "5");
    assert!(!harness.session.is_logged_on());
}

#[test]
fn first_message_not_a_logon_disconnects_silently() {
    let mut harness = Harness::new(config());
    harness.send("D", &[(11, "x")]);
    assert!(harness.sent().is_empty());
    assert!(disconnected(&harness.events()));
}

#[test]
fn heartbeat_test_request_and_timeout() {
    let mut harness = Harness::logged_on();
    // Outbound silence of one interval: a Heartbeat.
    harness.advance(30 * S);
    let sent = harness.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msg_type(), "0");
    // Inbound silence of 1.2 intervals: a TestRequest, once.
    harness.advance(6 * S - 1);
    assert!(harness.sent().is_empty());
    harness.advance(1);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "1");
    let id = sent[0].get(112).unwrap().to_owned();
    harness.advance(S);
    assert!(harness.sent().is_empty());
    // The answer clears it and counts as traffic.
    harness.send("0", &[(112, &id)]);
    harness.advance(36 * S - 1);
    assert!(harness.sent().iter().all(|sent| sent.msg_type() == "0"));
    harness.advance(1);
    assert_eq!(harness.sent()[0].msg_type(), "1");
    // No answer: 2.4 intervals of silence end the connection.
    harness.advance(36 * S - 1);
    assert!(!disconnected(&harness.events()));
    harness.advance(1);
    let sent = harness.sent();
    assert_eq!(sent.last().unwrap().msg_type(), "5");
    assert!(disconnected(&harness.events()));
}

#[test]
fn test_request_is_answered_with_its_id() {
    let mut harness = Harness::logged_on();
    harness.send("1", &[(112, "abc")]);
    let sent = harness.sent();
    assert_eq!((sent[0].msg_type(), sent[0].get(112)), ("0", Some("abc")));
}

#[test]
fn missing_required_tag_is_rejected_with_reason_and_tag() {
    let mut harness = Harness::logged_on();
    harness.send("1", &[]);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "3");
    assert_eq!(sent[0].get(45), Some("2"));
    assert_eq!(sent[0].get(371), Some("112"));
    assert_eq!(sent[0].get(372), Some("1"));
    assert_eq!(sent[0].get(373), Some("1"));
    assert_eq!(harness.session.next_inbound(), 3, "a rejected message is consumed");
}

#[test]
fn bad_format_and_invalid_msg_type_are_rejected() {
    let mut harness = Harness::logged_on();
    harness.send("2", &[(7, "x"), (16, "0")]);
    let sent = harness.sent();
    assert_eq!((sent[0].get(373), sent[0].get(371)), (Some("6"), Some("7")));
    harness.send("ZZ", &[]);
    let sent = harness.sent();
    assert_eq!((sent[0].get(373), sent[0].get(372)), (Some("11"), Some("ZZ")));
}

#[test]
fn sequence_too_high_is_queued_until_the_gap_is_filled() {
    let mut harness = Harness::logged_on();
    harness.seq = 4;
    harness.send("D", &[(11, "four")]);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "2");
    assert_eq!((sent[0].get(7), sent[0].get(16)), (Some("2"), Some("0")));
    assert!(harness.events().is_empty());
    harness.send("D", &[(11, "five")]);
    assert!(harness.sent().is_empty(), "one ResendRequest per gap");
    // The counterparty resends 2 and gap-fills 3.
    let orig = "20240102-03:04:00.000";
    harness.send_with(2, "CLIENT", harness.now, Some(orig), "D", &[(11, "two")]);
    harness.send_with(3, "CLIENT", harness.now, Some(orig), "4", &[(123, "Y"), (36, "4")]);
    let delivered: Vec<String> = harness
        .events()
        .into_iter()
        .filter_map(|event| match event {
            SessionEvent::Application { message, .. } => message.get(11).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, vec!["two", "four", "five"]);
    assert_eq!(harness.session.next_inbound(), 6);
}

#[test]
fn sequence_too_low_without_poss_dup_logs_out() {
    let mut harness = Harness::logged_on();
    harness.send("0", &[]);
    harness.send_with(2, "CLIENT", harness.now, None, "0", &[]);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "5");
    assert_eq!(sent[0].get(58), Some("MsgSeqNum too low, expecting 3 but received 2"));
    assert!(disconnected(&harness.events()));
}

#[test]
fn sequence_too_low_with_poss_dup_is_ignored() {
    let mut harness = Harness::logged_on();
    harness.send("D", &[(11, "a")]);
    harness.events();
    let orig = "20240102-03:04:00.000";
    harness.send_with(2, "CLIENT", harness.now, Some(orig), "D", &[(11, "a")]);
    assert!(harness.sent().is_empty());
    assert!(harness.events().is_empty());
    assert!(harness.session.is_logged_on());
}

#[test]
fn resend_request_replays_application_messages_and_gap_fills_session_messages() {
    let mut harness = Harness::logged_on();
    // Ours: 1 Logon, 2 ExecutionReport, 3 Heartbeat, 4 ExecutionReport.
    let report = |id: &str| Message::new("8").with(11, id).with(150, '0');
    assert_eq!(harness.session.send_application(harness.now, &report("a")).unwrap(), 2);
    harness.advance(30 * S);
    harness.send("0", &[]);
    harness.session.send_application(harness.now, &report("b")).unwrap();
    let originals = harness.sent();
    assert_eq!(originals.len(), 3);
    harness.send("2", &[(7, "1"), (16, "0")]);
    let resent = harness.sent();
    let summary: Vec<(Option<u64>, String, Option<&str>)> = resent
        .iter()
        .map(|sent| (sent.0.seq, sent.msg_type().to_owned(), sent.get(36).or(sent.get(11))))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some(1), "4".to_owned(), Some("2")),
            (Some(2), "8".to_owned(), Some("a")),
            (Some(3), "4".to_owned(), Some("4")),
            (Some(4), "8".to_owned(), Some("b")),
        ]
    );
    for sent in &resent {
        assert!(sent.0.poss_dup);
        assert!(sent.0.orig_sending_time.is_some());
    }
    assert_eq!(resent[0].get(123), Some("Y"));
    assert_eq!(resent[1].0.orig_sending_time, originals[0].0.sending_time);
    assert_eq!(harness.session.next_outbound(), 5, "resends take no new numbers");
    // A bounded range.
    harness.send("2", &[(7, "2"), (16, "2")]);
    let resent = harness.sent();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].get(11), Some("a"));
}

#[test]
fn sequence_reset_in_both_modes() {
    let mut harness = Harness::logged_on();
    // Reset mode ignores MsgSeqNum.
    harness.send_with(99, "CLIENT", harness.now, None, "4", &[(36, "10")]);
    assert_eq!(harness.session.next_inbound(), 10);
    harness.send_with(1, "CLIENT", harness.now, None, "4", &[(36, "5")]);
    let sent = harness.sent();
    assert_eq!((sent[0].msg_type(), sent[0].get(373)), ("3", Some("5")));
    // Gap-fill mode, in sequence.
    harness.seq = 10;
    harness.send("4", &[(123, "Y"), (36, "20")]);
    assert_eq!(harness.session.next_inbound(), 20);
    harness.seq = 20;
    harness.send("4", &[(123, "Y"), (36, "20")]);
    assert_eq!(harness.sent()[0].get(373), Some("5"));
    assert_eq!(harness.session.next_inbound(), 21);
}

#[test]
fn sending_time_outside_the_window_rejects_and_logs_out() {
    let mut harness = Harness::logged_on();
    harness.send_with(2, "CLIENT", harness.now - 121 * S, None, "0", &[]);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "3");
    assert_eq!((sent[0].get(373), sent[0].get(371)), (Some("10"), Some("52")));
    assert_eq!(sent[1].msg_type(), "5");
    assert!(disconnected(&harness.events()));
}

#[test]
fn comp_id_mismatch_after_logon_rejects_and_logs_out() {
    let mut harness = Harness::logged_on();
    harness.send_with(2, "OTHER", harness.now, None, "0", &[]);
    let sent = harness.sent();
    assert_eq!((sent[0].msg_type(), sent[0].get(373)), ("3", Some("9")));
    assert_eq!(sent[1].msg_type(), "5");
    assert!(disconnected(&harness.events()));
}

#[test]
fn throttle_rejects_excess_and_ends_sustained_abuse() {
    let mut config = config();
    config.throttle = ThrottleConfig { rate_per_s: 1, burst: 2, rejects_max: 2 };
    let mut harness = Harness::new(config);
    harness.logon(30);
    harness.sent();
    harness.events();
    for id in ["1", "2", "3"] {
        harness.send("D", &[(11, id)]);
    }
    assert_eq!(harness.events().len(), 2);
    let sent = harness.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msg_type(), "j");
    assert_eq!((sent[0].get(380), sent[0].get(58)), (Some("99"), Some("throttle exceeded")));
    assert_eq!((sent[0].get(45), sent[0].get(372)), (Some("4"), Some("D")));
    // A second later one token is back, and a success clears the abuse count.
    harness.now += S;
    harness.send("D", &[(11, "4")]);
    assert_eq!(harness.events().len(), 1);
    for id in ["5", "6"] {
        harness.send("D", &[(11, id)]);
    }
    assert!(harness.session.is_logged_on());
    harness.send("D", &[(11, "7")]);
    let sent = harness.sent();
    assert_eq!(sent.last().unwrap().msg_type(), "5");
    assert!(disconnected(&harness.events()));
}

#[test]
fn reset_seq_num_flag_restarts_both_sequences() {
    let mut harness = Harness::logged_on();
    harness.send("0", &[]);
    harness.session.disconnect();
    harness.seq = 1;
    harness.send("A", &[(98, "0"), (108, "30"), (554, "secret"), (141, "Y")]);
    let sent = harness.sent();
    assert_eq!((sent[0].0.seq, sent[0].get(141)), (Some(1), Some("Y")));
    assert_eq!((harness.session.next_inbound(), harness.session.next_outbound()), (2, 2));
}

#[test]
fn messages_sent_while_disconnected_are_resent_after_reconnect() {
    let mut harness = Harness::logged_on();
    harness.session.disconnect();
    let seq = harness.session.send_application(harness.now, &Message::new("8").with(11, "x"));
    assert_eq!(seq, Ok(2));
    assert!(harness.sent().is_empty());
    harness.logon(30);
    harness.send("2", &[(7, "2"), (16, "0")]);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "A");
    assert_eq!(sent[0].0.seq, Some(3));
    assert_eq!((sent[1].0.seq, sent[1].get(11), sent[1].0.poss_dup), (Some(2), Some("x"), true));
    assert_eq!(sent[2].msg_type(), "4");
}

#[test]
fn a_message_the_store_refuses_is_neither_sent_nor_numbered() {
    let dir = std::env::temp_dir().join(format!("fix-session-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = FixStore::open(&dir).unwrap();
    let mut harness = Harness::logged_on_with(Box::new(store.session("EXCH", "CLIENT").unwrap()));
    // Larger than a log record may be.
    let huge = Message::new("8").with(11, "big").with(58, "x".repeat(70_000));
    assert!(harness.session.send_application(harness.now, &huge).is_err());
    assert!(harness.sent().is_empty(), "nothing unstored goes out");
    let seq = harness.session.send_application(harness.now, &Message::new("8").with(11, "ok"));
    assert_eq!(seq, Ok(2), "the refused message's number is used again");
    let sent = harness.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.seq, sent[0].get(11)), (Some(2), Some("ok")));
    drop((harness, store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logon_with_a_gap_is_accepted_and_asks_for_a_resend() {
    let mut harness = Harness::new(config());
    harness.seq = 5;
    harness.logon(30);
    let sent = harness.sent();
    assert_eq!(sent[0].msg_type(), "A");
    assert_eq!((sent[1].msg_type(), sent[1].get(7)), ("2", Some("1")));
    harness.send_with(
        1,
        "CLIENT",
        harness.now,
        Some("20240102-03:04:00.000"),
        "4",
        &[(123, "Y"), (36, "5")],
    );
    assert_eq!(harness.session.next_inbound(), 6);
}
