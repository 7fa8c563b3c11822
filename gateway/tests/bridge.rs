//! The FIX bridge over a real sequencer, application loop and rings, without sockets: an order
//! whose report never left before the node died is reported after the restart, and one that did
//! leave is not reported twice.

use std::path::Path;
use testkit::TempDir;

use engine::{
    AccountId, Amount, AssetId, CommandBody, EngineConfig, InstrumentSpec, TransactionId,
};
use gateway::bridge::FixBridge;
use gateway::fix::{Application, Outbox, SessionConfig, SessionKey};
use gateway::message::Message;
use gateway::orders::store::OrderStore;
use gateway::orders::{Instrument, Instruments};
use sequencer::app_loop::{AppLoop, LoopConfig};
use sequencer::journal::Durability;
use sequencer::record::RECORD_BYTES;
use sequencer::ring::Ring;
use sequencer::sequencer::{Sequencer, SequencerConfig};

fn spec() -> InstrumentSpec {
    testkit::btc_usd_spec()
}

fn sequencer(data_dir: &Path) -> Sequencer {
    let config = SequencerConfig {
        data_dir: data_dir.to_owned(),
        engine: EngineConfig {
            assets_max: 2,
            instruments_max: 1,
            accounts_max: 4,
            orders_max: 64,
            levels_max: 16,
            orders_per_account_max: 16,
            transactions_max: 64,
            fee_account: AccountId(0),
        },
        durability: Durability::PageCache,
        segment_bytes: 1 << 20,
        truncate_corrupt: false,
        snapshot_every_commands: 0,
        snapshots_kept: 2,
    };
    let mut sequencer = Sequencer::open(&config).unwrap().0;
    if sequencer.seq() == 0 {
        let genesis = [
            CommandBody::AddAsset { asset: AssetId(0), scale: 8 },
            CommandBody::AddAsset { asset: AssetId(1), scale: 2 },
            CommandBody::AddInstrument(spec()),
            CommandBody::CreateAccount { account: AccountId(1) },
            CommandBody::Deposit {
                transaction_id: TransactionId(1),
                account: AccountId(1),
                asset: AssetId(0),
                amount: Amount(100_000_000),
            },
        ];
        for body in genesis {
            sequencer.submit(body, 1).unwrap();
        }
        sequencer.flush().unwrap();
    }
    sequencer
}

/// One node's worth of bridge and loop on `data_dir`.
struct Node {
    bridge: FixBridge,
    app: AppLoop,
    session: SessionConfig,
}

fn start(data_dir: &Path) -> Node {
    let instruments = Instruments::new([Instrument::from_spec("BTC-USD", &spec(), 8, 2).unwrap()]);
    let mut session = SessionConfig::new("EXCHANGE", "ALICE");
    session.accounts = vec![1];
    let (input, input_consumer) = Ring::create_in_memory(64, RECORD_BYTES).unwrap().split();
    let (output_producer, output) = Ring::create_in_memory(64, RECORD_BYTES).unwrap().split();
    let store = OrderStore::open(&data_dir.join("fix-orders"), false).unwrap();
    let sequencer = sequencer(data_dir);
    let bridge = FixBridge::recover(
        instruments,
        std::slice::from_ref(&session),
        store,
        data_dir,
        input,
        output,
    )
    .unwrap();
    let config = LoopConfig { echo_commands: true, ..LoopConfig::default() };
    let app = AppLoop::new(sequencer, input_consumer, Some(output_producer), config);
    Node { bridge, app, session }
}

impl Node {
    /// `message` from the node's one session, as the acceptor hands it over.
    fn send(&mut self, message: Message, outbox: &mut Outbox) {
        self.bridge.on_message(SessionKey(0), &self.session, message, outbox);
    }

    /// Submits `message`, has the loop sequence it and make it durable, and stops the node
    /// before the bridge takes any of its output: as if the node died right then.
    fn sequence_and_die(mut self, message: Message, outbox: &mut Outbox) {
        self.send(message, outbox);
        self.bridge.poll(outbox);
        self.app.control().push(sequencer::app_loop::Control::Flush).unwrap();
        self.app.do_work().unwrap();
    }

    /// Runs loop and bridge long enough for everything submitted to be answered; returns the
    /// reports, as `ClOrdID:ExecType`.
    fn settle(&mut self, outbox: &mut Outbox) -> Vec<String> {
        let mut answered = Vec::new();
        for _ in 0..1_000 {
            self.app.do_work().unwrap();
            self.bridge.poll(outbox);
            answered.extend(reports(outbox));
        }
        answered
    }
}

fn sell(cl_ord_id: &str) -> Message {
    Message::new("D")
        .with(11, cl_ord_id)
        .with(1, 1)
        .with(55, "BTC-USD")
        .with(54, '2')
        .with(38, "0.5")
        .with(40, '2')
        .with(44, "60000")
        .with(59, '1')
        .with(60, "20261123-10:00:00.000")
}

fn reports(outbox: &mut Outbox) -> Vec<String> {
    let mut found = Vec::new();
    while let Some((_, message)) = outbox.pop() {
        if message.msg_type == "8" {
            found.push(format!("{}:{}", message.get(11).unwrap(), message.get(150).unwrap()));
        }
    }
    found
}

#[test]
fn a_report_that_never_left_is_sent_after_the_restart_and_one_that_left_is_not_sent_again() {
    let dir = TempDir::new("gateway-bridge", "delivered");
    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    // a1 is submitted (by the poll after the message), sequenced and its report handed to the
    // session; two polls record it as delivered.
    node.send(sell("a1"), &mut outbox);
    node.bridge.poll(&mut outbox);
    node.app.do_work().unwrap();
    node.bridge.poll(&mut outbox);
    node.bridge.poll(&mut outbox);
    assert_eq!(reports(&mut outbox), vec!["a1:0"]);
    // a2 is sequenced and durable, but the node dies before the bridge takes its report.
    node.sequence_and_die(sell("a2"), &mut outbox);

    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    node.bridge.poll(&mut outbox);
    assert_eq!(reports(&mut outbox), vec!["a2:0"], "a2's report now, a1's not again");
    node.bridge.poll(&mut outbox);
    drop(node);

    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    node.bridge.poll(&mut outbox);
    node.bridge.poll(&mut outbox);
    assert!(reports(&mut outbox).is_empty(), "everything was delivered before this restart");
}

#[test]
fn a_full_input_ring_is_a_business_reject_and_the_order_can_be_sent_again() {
    let dir = TempDir::new("gateway-bridge", "full");
    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    // The input ring holds 64 commands and the loop is not running: the 65th order is refused
    // when the poll after the messages submits them.
    for index in 0..65 {
        node.send(sell(&format!("f{index}")), &mut outbox);
    }
    // A mass cancel in the same pass is refused too (after a refusal nothing later of the pass
    // may overtake it), and its reject names a mass cancel (372 = q).
    let mass_cancel =
        Message::new("q").with(11, "x1").with(530, '7').with(60, "20261123-10:00:00.000");
    node.send(mass_cancel, &mut outbox);
    node.bridge.poll(&mut outbox);
    let mut refusals = Vec::new();
    while let Some((_, message)) = outbox.pop() {
        if message.msg_type == "j" {
            let field = |tag| message.get(tag).unwrap().to_owned();
            refusals.push((field(379), field(372), field(58)));
        }
    }
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert_eq!((refusals[0].0.as_str(), refusals[0].1.as_str()), ("f64", "D"));
    assert_eq!((refusals[1].0.as_str(), refusals[1].1.as_str()), ("x1", "q"));
    assert!(refusals[0].2.contains("input ring full"), "{refusals:?}");
    // Nothing accepted was lost: all 64 are sequenced and reported; the refused ClOrdID is free.
    // (Most are rejected by the engine for funds or the per-account limit; each still gets
    // its report.)
    let answered = node.settle(&mut outbox);
    assert_eq!(answered.len(), 64, "{answered:?}");
    assert!(!answered.iter().any(|report| report.starts_with("f64:")));
    node.send(sell("f64"), &mut outbox);
    node.bridge.poll(&mut outbox);
    node.app.do_work().unwrap();
    node.bridge.poll(&mut outbox);
    // The engine answers it (here: not enough BTC left), so it was submitted, not refused as a
    // duplicate ClOrdID (103=6) by the gateway.
    let (_, report) = outbox.pop().unwrap();
    assert_eq!((report.msg_type.as_str(), report.get(11)), ("8", Some("f64")));
    assert_eq!(report.get(17).map(|id| id.starts_with('X')), Some(false), "an engine event");
    assert_ne!(report.get(103), Some("6"));
}

#[test]
fn the_bridge_is_busy_from_an_order_until_its_answer_arrives() {
    let dir = TempDir::new("gateway-bridge", "busy");
    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    assert!(!node.bridge.busy(), "nothing submitted yet");
    node.send(sell("b1"), &mut outbox);
    assert!(node.bridge.busy(), "a stored request waits for the poll that submits it");
    node.bridge.poll(&mut outbox);
    assert!(node.bridge.busy(), "submitted, not yet answered: the acceptor must not sleep");
    node.app.do_work().unwrap();
    node.bridge.poll(&mut outbox);
    assert!(!node.bridge.busy(), "answered");
    assert_eq!(reports(&mut outbox), vec!["b1:0"]);
}

#[test]
fn reports_are_sent_after_a_restart_that_finds_no_delivered_mark_yet() {
    let dir = TempDir::new("gateway-bridge", "no-mark");
    let node = start(&dir.0);
    let mut outbox = Outbox::default();
    // The first order is sequenced and durable, but the node dies before the bridge takes any
    // output, so no delivered mark was ever stored.
    node.sequence_and_die(sell("n1"), &mut outbox);

    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    node.bridge.poll(&mut outbox);
    assert_eq!(reports(&mut outbox), vec!["n1:0"], "nothing is known to have left");
}

#[test]
fn a_cancel_on_disconnect_that_finds_the_ring_full_waits_and_then_cancels() {
    let dir = TempDir::new("gateway-bridge", "disconnect-full");
    let mut node = start(&dir.0);
    node.session.cancel_on_disconnect = true;
    let mut outbox = Outbox::default();
    // Two orders that rest (the account holds 1 BTC), then enough to fill the 64-slot ring.
    for index in 0..64 {
        node.send(sell(&format!("c{index}")), &mut outbox);
    }
    node.bridge.poll(&mut outbox);
    node.bridge.on_logout(SessionKey(0), &node.session, &mut outbox);
    assert!(node.bridge.busy(), "the cancel waits for room and the acceptor must keep polling");
    let answered = node.settle(&mut outbox);
    // Both resting orders are cancelled once the cancel got in behind them.
    let cancelled: Vec<&String> = answered.iter().filter(|report| report.ends_with(":4")).collect();
    assert_eq!(cancelled, ["c0:4", "c1:4"], "{answered:?}");
    assert!(!node.bridge.busy());
}

#[test]
fn snapshots_are_stored_off_the_bridge_and_a_restart_resumes_from_the_newest() {
    let dir = TempDir::new("gateway-bridge", "snapshot");
    let mut node = start(&dir.0);
    node.bridge.set_snapshot_every(3);
    let mut outbox = Outbox::default();
    // Each order is a command: snapshots fall due as they are answered, and each is written by
    // a thread of its own while the bridge goes on.
    let mut answered = Vec::new();
    for index in 0..8 {
        node.send(sell(&format!("s{index}")), &mut outbox);
        answered.extend(node.settle(&mut outbox));
    }
    assert_eq!(answered.len(), 8, "{answered:?}");
    let stored = node.bridge.finish_snapshot();
    // The bridge itself cut the request log behind the stored snapshot: the eight orders'
    // requests are not all still there.
    let kept = node.bridge.order_store().requests_from(0).unwrap();
    assert!(kept.len() < 8, "requests kept after the snapshot: {kept:?}");
    // The genesis is commands 1-5 and s0 is command 6: the snapshot must hold s0 for the
    // restart below to know it, since the replay starts after the snapshot.
    assert!(stored > 6, "a snapshot after s0's command, at {stored}");
    drop(node);

    let store = OrderStore::open(&dir.0.join("fix-orders"), false).unwrap();
    let snapshot = store.latest_snapshot().unwrap().expect("a snapshot was stored");
    assert_eq!(snapshot.seq, stored);
    let known: Vec<&str> = snapshot.orders.iter().map(|order| order.cl_ord_id.as_str()).collect();
    assert!(known.contains(&"s0"), "the orders before it are in it: {known:?}");
    drop(store);

    // After the restart every ClOrdID is still known (from the snapshot, and the journal after
    // it), so reusing one is refused as a duplicate, and a new one is answered by the engine.
    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    for cl_ord_id in ["s0", "s7", "t0"] {
        node.send(sell(cl_ord_id), &mut outbox);
        node.bridge.poll(&mut outbox);
        node.app.do_work().unwrap();
        node.bridge.poll(&mut outbox);
        let (_, report) = outbox.pop().unwrap();
        assert_eq!((report.msg_type.as_str(), report.get(11)), ("8", Some(cl_ord_id)));
        let duplicate = report.get(103) == Some("6");
        assert_eq!(duplicate, cl_ord_id != "t0", "{cl_ord_id}: {report:?}");
    }
}

#[test]
fn the_bridge_takes_no_input_while_its_answers_back_up() {
    let dir = TempDir::new("gateway-bridge", "backlog");
    let mut node = start(&dir.0);
    let mut outbox = Outbox::default();
    assert!(node.bridge.accepts_input());
    // Orders submitted, then sequenced by the loop, whose records wait in the output ring
    // (64 slots here) until the bridge polls: past an eighth of it, input waits.
    for index in 0..4 {
        node.send(sell(&format!("b{index}")), &mut outbox);
    }
    node.bridge.poll(&mut outbox);
    node.app.do_work().unwrap();
    assert!(!node.bridge.accepts_input(), "records wait beyond an eighth of the ring");
    node.bridge.poll(&mut outbox);
    assert!(node.bridge.accepts_input(), "a poll took them");
    assert_eq!(reports(&mut outbox).len(), 4);
}
