//! Order entry against a real engine: every message type, the report figures of partial fills
//! across price levels, fills between sessions, amends, cancels, mass cancels, rejects, and a
//! restart from the store plus a replay of the stream.

use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, Engine, EngineConfig, Event, InstrumentId,
    InstrumentSpec, Price, Quantity, Side, TransactionId,
};
use gateway::message::FieldValue;
use gateway::orders::store::OrderStore;
use gateway::orders::{
    origin, EntrySnapshot, Instrument, Instruments, OrderEntry, OrderEntryConfig, Response,
    SessionId, CL_ORD_ID_LEN_MAX, SOURCE_FIX,
};
use gateway::{FieldError, Message};
use sequencer::record::EventRecord;
use testkit::TempDir;

const T0: u64 = 1_700_000_000_000_000_000;
/// Operator commands pass by with this source.
const SOURCE_OPERATOR: u8 = 3;

const ALICE: (&str, &[AccountId]) = ("ALICE", &[AccountId(1)]);
const BOB: (&str, &[AccountId]) = ("BOB", &[AccountId(2)]);
const DESK: (&str, &[AccountId]) = ("DESK", &[AccountId(3), AccountId(4)]);

fn spec(id: u32, base: u16, base_per_lot: u64, reference: u64) -> InstrumentSpec {
    InstrumentSpec {
        instrument: InstrumentId(id),
        base_asset: AssetId(base),
        quote_asset: AssetId(1),
        tick_size: Price(1),
        lot_size: Quantity(1),
        quantity_min: Quantity(1),
        quantity_max: Quantity(100_000),
        base_per_lot,
        quote_per_tick_lot: 1,
        reference_price: Price(reference),
        band_bps: 1000,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
    }
}

/// BTC-USD as the default configuration has it (tick 1 USD, lot 0.01 BTC) and ETH-USD (tick
/// 0.1 USD, lot 0.1 ETH).
fn specs() -> [(&'static str, InstrumentSpec, u8, u8); 2] {
    [
        ("BTC-USD", spec(0, 0, 1_000_000, 60_000), 8, 2),
        ("ETH-USD", spec(1, 2, 10_000_000, 30_000), 8, 2),
    ]
}

fn instruments() -> Instruments {
    Instruments::new(specs().iter().map(|(symbol, spec, base_scale, quote_scale)| {
        Instrument::from_spec(symbol, spec, *base_scale, *quote_scale).unwrap()
    }))
}

/// An entry in the recorded output stream, for replays.
#[derive(Clone, Debug)]
enum Item {
    Echo(u32, Command),
    Event(EventRecord),
}

/// An engine, an order entry and the stream between them, sequenced by hand.
struct Exchange {
    engine: Engine,
    entry: OrderEntry,
    seq: u64,
    stream: Vec<Item>,
    store: Option<OrderStore>,
    operator_requests: u64,
}

impl Exchange {
    fn new() -> Exchange {
        Exchange::with_config(OrderEntryConfig::default())
    }

    fn with_config(config: OrderEntryConfig) -> Exchange {
        let mut exchange = Exchange {
            engine: Engine::new(EngineConfig::default()),
            entry: OrderEntry::new(instruments(), config),
            seq: 0,
            stream: Vec::new(),
            store: None,
            operator_requests: 0,
        };
        let mut genesis = vec![
            CommandBody::AddAsset { asset: AssetId(0), scale: 8 },
            CommandBody::AddAsset { asset: AssetId(1), scale: 2 },
            CommandBody::AddAsset { asset: AssetId(2), scale: 8 },
        ];
        genesis.extend(specs().map(|(_, spec, _, _)| CommandBody::AddInstrument(spec)));
        for account in 1..=4 {
            genesis.push(CommandBody::CreateAccount { account: AccountId(account) });
            for (asset, amount) in [(0, 10 * 100_000_000), (1, 100_000_000), (2, 100 * 100_000_000)]
            {
                genesis.push(CommandBody::Deposit {
                    transaction_id: TransactionId(u128::from(account) << 8 | asset),
                    account: AccountId(account),
                    asset: AssetId(u16::try_from(asset).unwrap()),
                    amount: Amount(amount),
                });
            }
        }
        for body in genesis {
            exchange.operator(body);
        }
        exchange.drain();
        exchange
    }

    /// Sequences one command, feeding its echo and events to the order entry as they happen.
    fn run(&mut self, origin: u32, body: CommandBody) {
        self.seq += 1;
        let command = Command { seq: self.seq, timestamp_ns: T0 + self.seq * 1_000_000, body };
        self.entry.on_echo(origin, &command);
        self.stream.push(Item::Echo(origin, command));
        let mut events = Vec::new();
        self.engine.handle(&command, &mut events);
        for (index, event) in events.into_iter().enumerate() {
            let index = u32::try_from(index).unwrap();
            let record =
                EventRecord { seq: command.seq, timestamp_ns: command.timestamp_ns, index, event };
            self.entry.on_event(&record);
            self.stream.push(Item::Event(record));
        }
    }

    fn operator(&mut self, body: CommandBody) -> Vec<(SessionId, Message)> {
        self.operator_requests += 1;
        self.run(origin(SOURCE_OPERATOR, self.operator_requests), body);
        self.entry.flush();
        self.drain()
    }

    fn drain(&mut self) -> Vec<(SessionId, Message)> {
        std::iter::from_fn(|| self.entry.poll_outbound()).collect()
    }

    /// Hands a message to the order entry and, if it submits, sequences the commands at once.
    fn try_send(
        &mut self,
        (session, accounts): (&str, &[AccountId]),
        message: &Message,
    ) -> Result<Vec<(SessionId, Message)>, FieldError> {
        let session = SessionId::new(session);
        match self.entry.on_message(&session, accounts, message, T0)? {
            Response::Reply(reply) => Ok(vec![(session, reply)]),
            Response::Submit(submission) => {
                if let Some(store) = &self.store {
                    store.put_request(&submission.request).unwrap();
                    store.flush().unwrap();
                }
                for (origin, body) in submission.commands {
                    self.run(origin, body);
                }
                self.entry.flush();
                Ok(self.drain())
            }
        }
    }

    /// The messages for `session` that a message of its causes (others may get fills too).
    fn send(&mut self, session: (&str, &[AccountId]), message: &Message) -> Vec<Message> {
        let out = self.try_send(session, message).unwrap();
        out.into_iter()
            .filter(|(to, _)| to.as_str() == session.0)
            .map(|(_, message)| message)
            .collect()
    }

    /// Submits without sequencing: the commands are run later, as if other commands got ahead.
    fn submit_only(
        &mut self,
        (session, accounts): (&str, &[AccountId]),
        message: &Message,
    ) -> Vec<(u32, CommandBody)> {
        let session = SessionId::new(session);
        match self.entry.on_message(&session, accounts, message, T0).unwrap() {
            Response::Submit(submission) => submission.commands.into_vec(),
            Response::Reply(reply) => panic!("expected a submission, got {reply:?}"),
        }
    }
}

fn field(message: &Message, tag: u32) -> &str {
    message.get(tag).unwrap_or_else(|| panic!("tag {tag} missing in {message:?}"))
}

/// Asserts tag values of a message.
fn expect(message: &Message, msg_type: &str, fields: &[(u32, &str)]) {
    assert_eq!(message.msg_type, msg_type, "{message:?}");
    for (tag, value) in fields {
        assert_eq!(message.get(*tag), Some(*value), "tag {tag} in {message:?}");
    }
}

fn limit(cl_ord_id: &str, side: char, quantity: &str, price: &str) -> Message {
    Message::new("D")
        .with(11, cl_ord_id)
        .with(55, "BTC-USD")
        .with(54, side)
        .with(40, '2')
        .with(38, quantity)
        .with(44, price)
        .with(59, '1')
        .with(60, "20240101-00:00:00.000")
}

/// The message with `tag` set to `value`, replacing any occurrence.
fn set(mut message: Message, tag: u32, value: impl FieldValue) -> Message {
    message.retain(|existing, _| existing != tag);
    message.with(tag, value)
}

/// The message without `tag`.
fn without(mut message: Message, tag: u32) -> Message {
    message.retain(|existing, _| existing != tag);
    message
}

fn cancel(cl_ord_id: &str, orig: &str) -> Message {
    Message::new("F").with(11, cl_ord_id).with(41, orig).with(55, "BTC-USD").with(54, '1')
}

fn replace(cl_ord_id: &str, orig: &str, quantity: &str, price: &str) -> Message {
    Message::new("G")
        .with(11, cl_ord_id)
        .with(41, orig)
        .with(55, "BTC-USD")
        .with(54, '2')
        .with(40, '2')
        .with(38, quantity)
        .with(44, price)
}

fn status(cl_ord_id: &str) -> Message {
    Message::new("H").with(11, cl_ord_id).with(55, "BTC-USD").with(54, '1')
}

#[test]
fn new_order_rests_with_a_new_report_and_answers_status() {
    let mut exchange = Exchange::new();
    let out = exchange.send(ALICE, &limit("a1", '1', "0.5", "59990"));
    assert_eq!(out.len(), 1);
    let order_id = (u64::from(SOURCE_FIX) << 56 | 1).to_string();
    expect(
        &out[0],
        "8",
        &[
            (37, &order_id),
            (11, "a1"),
            (17, &format!("{}-0", exchange.seq)),
            (150, "0"),
            (39, "0"),
            (1, "1"),
            (55, "BTC-USD"),
            (54, "1"),
            (40, "2"),
            (44, "59990"),
            (38, "0.5"),
            (59, "1"),
            (151, "0.5"),
            (14, "0"),
            (6, "0"),
        ],
    );
    assert_eq!(
        field(&out[0], 60),
        "20231114-22:13:20.0".to_owned() + &format!("{:02}", exchange.seq)
    );
    assert_eq!(
        exchange.engine.best_level(InstrumentId(0), Side::Buy),
        Some((Price(59_990), Quantity(50)))
    );

    let out = exchange.send(ALICE, &status("a1"));
    expect(&out[0], "8", &[(37, &order_id), (11, "a1"), (150, "I"), (39, "0"), (151, "0.5")]);
    let out = exchange.send(ALICE, &Message::new("H").with(11, "x").with(37, &order_id));
    expect(&out[0], "8", &[(11, "a1"), (150, "I"), (39, "0")]);
    let out = exchange.send(ALICE, &status("never"));
    expect(&out[0], "8", &[(150, "I"), (39, "8"), (103, "5"), (37, "NONE")]);
}

#[test]
fn partial_fills_across_levels_carry_exact_figures_to_both_sessions() {
    let mut exchange = Exchange::new();
    exchange.send(BOB, &limit("b1", '2', "0.5", "60000"));
    exchange.send(BOB, &limit("b2", '2', "0.3", "60010"));
    let out = exchange.try_send(ALICE, &limit("a1", '1', "1", "60020")).unwrap();
    let to = |session: &str| -> Vec<&Message> {
        out.iter().filter(|(to, _)| to.as_str() == session).map(|(_, m)| m).collect()
    };
    let alice = to("ALICE");
    assert_eq!(alice.len(), 3, "{alice:?}");
    expect(alice[0], "8", &[(150, "0"), (39, "0"), (151, "1"), (14, "0")]);
    expect(
        alice[1],
        "8",
        &[
            (150, "F"),
            (39, "1"),
            (31, "60000"),
            (32, "0.5"),
            (151, "0.5"),
            (14, "0.5"),
            (6, "60000"),
        ],
    );
    expect(
        alice[2],
        "8",
        &[
            (150, "F"),
            (39, "1"),
            (31, "60010"),
            (32, "0.3"),
            (151, "0.2"),
            (14, "0.8"),
            (6, "60003.75"),
        ],
    );
    let bob = to("BOB");
    assert_eq!(bob.len(), 2, "{bob:?}");
    expect(
        bob[0],
        "8",
        &[
            (11, "b1"),
            (150, "F"),
            (39, "2"),
            (31, "60000"),
            (32, "0.5"),
            (151, "0"),
            (14, "0.5"),
            (6, "60000"),
        ],
    );
    expect(
        bob[1],
        "8",
        &[(11, "b2"), (150, "F"), (39, "2"), (31, "60010"), (151, "0"), (14, "0.3")],
    );
    assert_ne!(field(alice[1], 17), field(bob[0], 17), "each side has its own ExecID");

    // The rest fills against a third level: 0.5 × 60000 + 0.3 × 60010 + 0.2 × 60020 = 60007.
    let out = exchange.try_send(BOB, &limit("b3", '2', "0.2", "60020")).unwrap();
    let (_, last) =
        out.iter().find(|(to, m)| to.as_str() == "ALICE" && m.get(150) == Some("F")).unwrap();
    expect(
        last,
        "8",
        &[(39, "2"), (31, "60020"), (32, "0.2"), (151, "0"), (14, "1"), (6, "60007")],
    );
    let out = exchange.send(ALICE, &status("a1"));
    expect(&out[0], "8", &[(150, "I"), (39, "2"), (14, "1"), (6, "60007")]);
}

#[test]
fn average_price_beyond_the_scale_is_rounded_at_six_extra_digits() {
    let mut exchange = Exchange::new();
    exchange.send(BOB, &limit("b1", '2', "0.01", "60000"));
    exchange.send(BOB, &limit("b2", '2', "0.02", "60001"));
    let out = exchange.send(ALICE, &limit("a1", '1', "0.03", "60001"));
    // (60000 + 2 × 60001) / 3 = 60000.666…
    expect(out.last().unwrap(), "8", &[(39, "2"), (6, "60000.66666667")]);
}

#[test]
fn cancel_reports_canceled_and_a_filled_order_cannot_be_cancelled() {
    let mut exchange = Exchange::new();
    exchange.send(ALICE, &limit("a1", '1', "0.5", "59990"));
    let out = exchange.send(ALICE, &cancel("c1", "a1"));
    expect(&out[0], "8", &[(11, "c1"), (41, "a1"), (150, "4"), (39, "4"), (151, "0"), (14, "0")]);
    assert_eq!(exchange.engine.best_level(InstrumentId(0), Side::Buy), None);
    let out = exchange.send(ALICE, &status("c1"));
    expect(&out[0], "8", &[(11, "c1"), (39, "4")]);

    // Known to be filled: refused at once as too late.
    exchange.send(BOB, &limit("b1", '2', "0.1", "60000"));
    exchange.send(ALICE, &limit("a2", '1', "0.1", "60000"));
    let out = exchange.send(ALICE, &cancel("c2", "a2"));
    expect(&out[0], "9", &[(11, "c2"), (41, "a2"), (39, "2"), (434, "1"), (102, "0")]);

    // Filled after the cancel was submitted but before it was sequenced: the engine refuses it.
    exchange.send(ALICE, &limit("a3", '1', "0.1", "59000"));
    let commands = exchange.submit_only(ALICE, &cancel("c3", "a3"));
    exchange.send(BOB, &limit("b2", '2', "0.1", "59000"));
    for (origin, body) in commands {
        exchange.run(origin, body);
    }
    exchange.entry.flush();
    let out = exchange.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    expect(
        &out[0].1,
        "9",
        &[(11, "c3"), (41, "a3"), (39, "2"), (434, "1"), (102, "0"), (58, "unknown order")],
    );
}

#[test]
fn another_sessions_order_is_unknown_and_never_leaked() {
    let mut exchange = Exchange::new();
    let out = exchange.send(ALICE, &limit("a1", '1', "0.5", "59990"));
    let order_id = field(&out[0], 37).to_owned();
    for message in [
        cancel("x1", "a1"),
        Message::new("F").with(11, "x2").with(37, &order_id),
        replace("x3", "a1", "0.4", "59990"),
    ] {
        let out = exchange.send(BOB, &message);
        expect(&out[0], "9", &[(37, "NONE"), (39, "8"), (102, "1")]);
        assert!(out[0].fields().all(|(_, value)| value != order_id), "{out:?}");
    }
    let out = exchange.send(BOB, &status("a1"));
    expect(&out[0], "8", &[(150, "I"), (39, "8"), (103, "5")]);
    let out = exchange.send(BOB, &Message::new("H").with(11, "a1").with(37, &order_id));
    expect(&out[0], "8", &[(39, "8")]);
    // Bob may reuse Alice's ClOrdID: uniqueness is per session.
    let out = exchange.send(BOB, &limit("a1", '2', "0.1", "60100"));
    expect(&out[0], "8", &[(150, "0")]);
}

#[test]
fn amend_down_keeps_priority_and_a_price_change_loses_it() {
    let mut exchange = Exchange::new();
    let first = exchange.send(BOB, &limit("b1", '2', "0.5", "60100"));
    exchange.send(BOB, &limit("b2", '2', "0.5", "60100"));
    let id = |message: &Message| engine::OrderId(field(message, 37).parse().unwrap());
    let level = |exchange: &Exchange| {
        exchange.engine.level_orders(InstrumentId(0), Side::Sell, Price(60_100))
    };

    let out = exchange.send(BOB, &replace("b1r", "b1", "0.3", "60100"));
    expect(
        &out[0],
        "8",
        &[(11, "b1r"), (41, "b1"), (150, "5"), (39, "0"), (38, "0.3"), (151, "0.3"), (44, "60100")],
    );
    assert_eq!(level(&exchange)[0], id(&first[0]), "quantity down keeps the place");

    let out = exchange.send(BOB, &replace("b1rr", "b1r", "0.3", "60101"));
    expect(&out[0], "8", &[(11, "b1rr"), (41, "b1r"), (150, "5"), (44, "60101")]);
    let out = exchange.send(BOB, &replace("b1rrr", "b1rr", "0.3", "60100"));
    expect(&out[0], "8", &[(150, "5")]);
    assert_eq!(level(&exchange)[1], id(&first[0]), "a price change goes to the back");

    // Any ClOrdID of the chain names the order; the engine refuses an amend that changes nothing.
    let out = exchange.send(BOB, &replace("b1z", "b1", "0.3", "60100"));
    expect(&out[0], "9", &[(11, "b1z"), (41, "b1rrr"), (434, "2"), (102, "99"), (39, "0")]);
    assert_eq!(field(&out[0], 58), "amend changes neither price nor quantity");

    // A partial fill, then an amend below the filled quantity is refused, above it accepted.
    exchange.send(ALICE, &limit("a1", '1', "0.6", "60100"));
    let out = exchange.send(BOB, &status("b1rrr"));
    expect(&out[0], "8", &[(39, "1"), (14, "0.1"), (151, "0.2")]);
    let out = exchange.send(BOB, &replace("b1y", "b1rrr", "0.1", "60100"));
    expect(&out[0], "9", &[(102, "99"), (39, "1")]);
    let out = exchange.send(BOB, &replace("b1x", "b1rrr", "0.2", "60100"));
    expect(&out[0], "8", &[(150, "5"), (39, "1"), (38, "0.2"), (151, "0.1"), (14, "0.1")]);
    let out = exchange.send(BOB, &replace("b1w", "gone", "0.2", "60100"));
    expect(&out[0], "9", &[(434, "2"), (102, "1")]);
}

#[test]
fn duplicate_clordid_is_rejected_while_live_and_after() {
    let mut exchange = Exchange::new();
    exchange.send(ALICE, &limit("a1", '1', "0.5", "59990"));
    let out = exchange.send(ALICE, &limit("a1", '1', "0.5", "59990"));
    expect(&out[0], "8", &[(11, "a1"), (150, "8"), (39, "8"), (103, "6"), (37, "NONE")]);
    exchange.send(ALICE, &cancel("c1", "a1"));
    for cl_ord_id in ["a1", "c1"] {
        let out = exchange.send(ALICE, &limit(cl_ord_id, '1', "0.5", "59990"));
        expect(&out[0], "8", &[(150, "8"), (103, "6")]);
    }
    let out = exchange.send(ALICE, &cancel("c1", "a1"));
    expect(&out[0], "9", &[(102, "6")]);
}

#[test]
fn unknown_symbol_and_unsupported_messages_get_business_rejects() {
    let mut exchange = Exchange::new();
    let message = set(limit("a1", '1', "1", "1"), 55, "DOGE-USD");
    let out = exchange.send(ALICE, &message);
    expect(&out[0], "j", &[(372, "D"), (379, "a1"), (380, "2")]);
    let out = exchange.send(ALICE, &Message::new("AE").with(571, "r1"));
    expect(&out[0], "j", &[(372, "AE"), (380, "3")]);
    // Several accounts and none named: Account is conditionally required.
    let out = exchange.send(DESK, &limit("d1", '1', "0.1", "59000"));
    expect(&out[0], "j", &[(380, "5")]);
    let out = exchange.send(DESK, &limit("d1", '1', "0.1", "59000").with(1, 4));
    expect(&out[0], "8", &[(150, "0"), (1, "4")]);
    let out = exchange.send(ALICE, &limit("a2", '1', "0.1", "59000").with(1, 2));
    expect(&out[0], "8", &[(150, "8"), (103, "15")]);
}

#[test]
fn field_errors_go_back_to_the_session_layer_and_business_errors_are_reports() {
    let mut exchange = Exchange::new();
    let message = without(limit("a1", '1', "1", "60000"), 11);
    assert_eq!(exchange.try_send(ALICE, &message).unwrap_err(), FieldError::Missing(11));
    let error = exchange.try_send(ALICE, &limit("a1", '1', "1", "6e4")).unwrap_err();
    assert_eq!((error.session_reject_reason(), error.tag()), (6, 44));
    let error = exchange.try_send(ALICE, &limit("a1", '!', "1", "60000")).unwrap_err();
    assert_eq!((error.session_reject_reason(), error.tag()), (5, 54));
    let message = without(limit("a1", '1', "1", "60000"), 44);
    assert_eq!(exchange.try_send(ALICE, &message).unwrap_err(), FieldError::Missing(44));
    assert_eq!(
        exchange.try_send(ALICE, &Message::new("F").with(11, "c")).unwrap_err(),
        FieldError::Missing(41)
    );

    let out = exchange.send(ALICE, &limit("a1", '1', "1", "60000.5"));
    expect(&out[0], "8", &[(150, "8"), (103, "18")]);
    let out = exchange.send(ALICE, &limit("a2", '1', "0.001", "60000"));
    expect(&out[0], "8", &[(150, "8"), (103, "13")]);
    let out = exchange.send(ALICE, &limit("a3", '5', "0.1", "60000"));
    expect(&out[0], "8", &[(150, "8"), (103, "11")]);
    // The engine's own rejects carry its reason in Text.
    let out = exchange.send(ALICE, &limit("a4", '1', "0.1", "70000"));
    expect(
        &out[0],
        "8",
        &[
            (150, "8"),
            (39, "8"),
            (103, "16"),
            (58, "price is outside the instrument's price band"),
            (151, "0"),
        ],
    );
    let out = exchange.send(ALICE, &limit("a5", '1', "100", "60000"));
    expect(&out[0], "8", &[(150, "8"), (103, "3"), (58, "insufficient available balance")]);
    let out = exchange.send(ALICE, &status("a5"));
    expect(&out[0], "8", &[(150, "I"), (39, "8")]);
}

#[test]
fn time_in_force_post_only_and_market_orders() {
    let mut exchange = Exchange::new();
    exchange.send(BOB, &limit("b1", '2', "0.2", "60000"));
    // IOC: fills what it can, the rest is cancelled.
    let out = exchange.send(ALICE, &set(limit("a1", '1', "0.5", "60000"), 59, '3'));
    let types: Vec<&str> = out.iter().map(|m| field(m, 150)).collect();
    assert_eq!(types, ["0", "F", "4"]);
    expect(&out[2], "8", &[(39, "4"), (151, "0"), (14, "0.2"), (6, "60000")]);
    // FOK that cannot fill: nothing trades.
    exchange.send(BOB, &limit("b2", '2', "0.2", "60000"));
    let out = exchange.send(ALICE, &set(limit("a2", '1', "0.5", "60000"), 59, '4'));
    let types: Vec<&str> = out.iter().map(|m| field(m, 150)).collect();
    assert_eq!(types, ["0", "4"]);
    expect(&out[1], "8", &[(14, "0"), (58, "fill or kill order could not fill entirely")]);
    // Post-only that would take is refused.
    let out = exchange.send(ALICE, &limit("a3", '1', "0.1", "60000").with(18, "6"));
    expect(&out[0], "8", &[(150, "8"), (103, "11")]);
    // A market buy with only a budget spends it: 0.1 BTC at 60000 plus 0.2 % fee is 6012.
    let market = Message::new("D")
        .with(11, "a4")
        .with(55, "BTC-USD")
        .with(54, '1')
        .with(40, '1')
        .with(152, "6012");
    let out = exchange.send(ALICE, &market);
    let types: Vec<&str> = out.iter().map(|m| field(m, 150)).collect();
    assert_eq!(types, ["0", "F", "4"], "{out:?}");
    expect(&out[1], "8", &[(40, "1"), (59, "3"), (152, "6012"), (32, "0.1"), (31, "60000")]);
    expect(&out[2], "8", &[(39, "4"), (14, "0.1")]);
}

#[test]
fn mass_cancel_reports_counts_once_the_events_are_in() {
    let mut exchange = Exchange::new();
    exchange.send(ALICE, &limit("a1", '1', "0.1", "59000"));
    exchange.send(ALICE, &limit("a2", '1', "0.1", "59001"));
    let eth = set(limit("a3", '1', "1", "3000"), 55, "ETH-USD");
    exchange.send(ALICE, &eth);
    exchange.send(BOB, &limit("b1", '1', "0.1", "59000"));

    let by_symbol = Message::new("q").with(11, "m1").with(530, '1').with(55, "BTC-USD");
    let out = exchange.send(ALICE, &by_symbol);
    assert_eq!(out.len(), 3, "{out:?}");
    expect(&out[0], "8", &[(11, "a1"), (150, "4"), (58, "mass cancel")]);
    expect(&out[1], "8", &[(11, "a2"), (150, "4")]);
    expect(&out[2], "r", &[(11, "m1"), (530, "1"), (531, "1"), (533, "2"), (55, "BTC-USD")]);
    assert_eq!(exchange.entry.live_orders(), 2, "Alice's ETH order and Bob's order remain");

    let out = exchange.send(ALICE, &Message::new("q").with(11, "m2").with(530, '7'));
    expect(out.last().unwrap(), "r", &[(531, "7"), (533, "1")]);
    let out = exchange.send(ALICE, &Message::new("q").with(11, "m3").with(530, '7'));
    expect(&out[0], "r", &[(531, "7"), (533, "0")]);
    let out = exchange.send(ALICE, &Message::new("q").with(11, "m4").with(530, '1').with(55, "X"));
    expect(&out[0], "r", &[(531, "0"), (532, "1")]);
    let out = exchange.send(ALICE, &Message::new("q").with(11, "m5").with(530, '3'));
    expect(&out[0], "r", &[(531, "0"), (532, "0")]);

    // A session with two accounts cancels both, one command each, and reports once.
    exchange.send(DESK, &limit("d1", '1', "0.1", "59000").with(1, 3));
    exchange.send(DESK, &limit("d2", '1', "0.1", "59000").with(1, 4));
    exchange.send(DESK, &limit("d3", '1', "0.1", "59000").with(1, 4));
    let out = exchange.send(DESK, &Message::new("q").with(11, "m6").with(530, '7'));
    let reports: Vec<&Message> = out.iter().filter(|m| m.msg_type == "r").collect();
    assert_eq!(reports.len(), 1);
    expect(reports[0], "r", &[(531, "7"), (533, "3")]);
    assert_eq!(exchange.entry.live_orders(), 1, "only Bob's order is left");
}

#[test]
fn other_sources_cancelling_and_expiring_orders_still_report_to_the_owner() {
    let mut exchange = Exchange::new();
    let day = without(limit("a1", '1', "0.1", "59000"), 59);
    exchange.send(ALICE, &day);
    exchange.send(ALICE, &limit("a2", '1', "0.1", "59000"));
    let out = exchange.operator(CommandBody::EndOfDay { instrument: None });
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, SessionId::new("ALICE"));
    expect(&out[0].1, "8", &[(11, "a1"), (150, "C"), (39, "C"), (59, "0")]);
    let out = exchange.operator(CommandBody::MassCancel { account: None, instrument: None });
    expect(&out[0].1, "8", &[(11, "a2"), (150, "4"), (39, "4")]);
    assert!(out[0].1.get(41).is_none());
    // Orders of other sources pass by without reports.
    let foreign = engine::NewOrder {
        order_id: engine::OrderId(u64::from(2u8) << 56 | 1),
        account: AccountId(2),
        instrument: InstrumentId(0),
        side: Side::Sell,
        order_type: engine::OrderType::Limit,
        time_in_force: engine::TimeInForce::Gtc,
        post_only: false,
        self_trade_prevention: engine::SelfTradePrevention::None,
        price: Price(60_000),
        quantity: Quantity(10),
        quote_budget: Amount::ZERO,
    };
    assert!(exchange.operator(CommandBody::NewOrder(foreign)).is_empty());
    let out = exchange.try_send(ALICE, &limit("a3", '1', "0.1", "60000")).unwrap();
    assert!(out.iter().all(|(to, _)| to.as_str() == "ALICE"));
    expect(&out[1].1, "8", &[(150, "F"), (39, "2")]);
}

#[test]
fn finished_orders_are_forgotten_oldest_first_beyond_the_window() {
    let config = OrderEntryConfig { retired_max: 2, ..OrderEntryConfig::default() };
    let mut exchange = Exchange::with_config(config);
    for cl_ord_id in ["a1", "a2", "a3"] {
        exchange.send(ALICE, &limit(cl_ord_id, '1', "0.1", "70000"));
    }
    let out = exchange.send(ALICE, &status("a1"));
    expect(&out[0], "8", &[(39, "8"), (103, "5")]);
    let out = exchange.send(ALICE, &status("a3"));
    expect(&out[0], "8", &[(39, "8"), (11, "a3"), (151, "0")]);
    // A live order is never forgotten, however many finish after it.
    exchange.send(ALICE, &limit("live", '1', "0.1", "59000"));
    for index in 0..5 {
        exchange.send(ALICE, &limit(&format!("r{index}"), '1', "0.1", "70000"));
    }
    let out = exchange.send(ALICE, &status("live"));
    expect(&out[0], "8", &[(39, "0")]);
    // A forgotten order's every ClOrdID (an amend's among them) and a cancel request's are
    // free again: while remembered they are duplicates, afterwards a new order may take them.
    exchange.send(ALICE, &limit("m1", '1', "0.1", "59000"));
    exchange.send(ALICE, &replace("m1r", "m1", "0.2", "59000"));
    exchange.send(ALICE, &cancel("m1c", "m1r"));
    let out = exchange.send(ALICE, &limit("m1", '1', "0.1", "59000"));
    expect(&out[0], "8", &[(39, "8"), (103, "6")]);
    for index in 0..5 {
        exchange.send(ALICE, &limit(&format!("s{index}"), '1', "0.1", "70000"));
    }
    for cl_ord_id in ["m1", "m1r", "m1c"] {
        let out = exchange.send(ALICE, &limit(cl_ord_id, '1', "0.1", "59000"));
        expect(&out[0], "8", &[(11, cl_ord_id), (39, "0")]);
    }
}

/// Replays a recorded stream after `seq` into a restored entry.
fn replay(entry: &mut OrderEntry, stream: &[Item], after_seq: u64) {
    for item in stream {
        match item {
            Item::Echo(origin, command) if command.seq > after_seq => {
                entry.on_echo(*origin, command);
            }
            Item::Event(record) if record.seq > after_seq => entry.on_event(record),
            _ => {}
        }
    }
}

/// What the order entry answers about the trading days, ExecIDs aside (they count replies).
fn answers(exchange: &mut Exchange) -> Vec<Message> {
    let mut out = Vec::new();
    for cl_ord_id in ["d1-a1", "d1-c2", "d2-a1", "d2-a2", "d1-b1", "d2-b3r", "d2-b3"] {
        let session = if cl_ord_id.contains('b') { BOB } else { ALICE };
        out.extend(exchange.send(session, &status(cl_ord_id)));
        out.extend(exchange.send(session, &limit(cl_ord_id, '1', "0.1", "59000")));
    }
    for message in &mut out {
        message.retain(|tag, _| tag != 17);
    }
    out
}

fn trading_day(exchange: &mut Exchange, prefix: &str) {
    exchange.send(BOB, &limit(&format!("{prefix}b1"), '2', "0.5", "60000"));
    exchange.send(BOB, &limit(&format!("{prefix}b2"), '2', "0.3", "60010"));
    exchange.send(ALICE, &limit(&format!("{prefix}a1"), '1', "1", "60020"));
    exchange.send(ALICE, &limit(&format!("{prefix}a2"), '1', "0.1", "59000"));
    exchange.send(ALICE, &cancel(&format!("{prefix}c2"), &format!("{prefix}a2")));
    exchange.send(BOB, &limit(&format!("{prefix}b3"), '2', "0.4", "60500"));
    exchange.send(BOB, &replace(&format!("{prefix}b3r"), &format!("{prefix}b3"), "0.2", "60500"));
}

#[test]
fn restart_restores_from_snapshot_store_and_replay_with_the_same_answers() {
    let dir = TempDir::new("orders", "restart");
    let mut exchange = Exchange::new();
    exchange.store = Some(OrderStore::open(&dir.0, false).unwrap());
    trading_day(&mut exchange, "d1-");
    let snapshot = exchange.entry.snapshot();
    exchange.store.as_ref().unwrap().put_snapshot(&snapshot).unwrap();
    trading_day(&mut exchange, "d2-");
    // A request that was stored and submitted but never sequenced before the node stopped.
    let lost = exchange.submit_only(ALICE, &limit("lost", '1', "0.1", "59000"));
    assert_eq!(lost.len(), 1);
    let before: EntrySnapshot = exchange.entry.snapshot();
    let answers_before = answers(&mut exchange);

    // The node restarts: store reopened, newest snapshot, requests after it, journal replayed.
    exchange.store = None;
    let store = OrderStore::open(&dir.0, false).unwrap();
    let restored_from = store.latest_snapshot().unwrap().unwrap();
    assert_eq!(restored_from, snapshot);
    let requests = store.requests_from(restored_from.next_request).unwrap();
    assert!(!requests.is_empty());
    assert!(store.requests_from(0).unwrap().len() == requests.len(), "older requests pruned");
    let mut entry = OrderEntry::restore(
        instruments(),
        OrderEntryConfig::default(),
        Some(restored_from),
        requests,
    );
    replay(&mut entry, &exchange.stream, snapshot.seq);
    assert!(entry.poll_outbound().is_none(), "a replay sends nothing");
    let lost_requests = entry.finish_recovery();
    assert!(lost_requests.is_empty(), "the lost request was never stored");
    let mut after = entry.snapshot();
    let mut expected = before.clone();
    expected.pending.clear();
    // The lost request took a number and an order id: the allocators may only move forward.
    assert!(after.next_request < before.next_request);
    after.next_request = before.next_request;
    after.next_order = before.next_order;
    assert_eq!(after, expected);

    // Same answers afterwards, and new orders get fresh ids.
    exchange.entry = entry;
    assert_eq!(answers(&mut exchange), answers_before);
    let out = exchange.send(ALICE, &status("d1-a1"));
    expect(&out[0], "8", &[(150, "I"), (39, "2"), (14, "1"), (6, "60007")]);
    let out = exchange.send(ALICE, &limit("d2-a1", '1', "0.1", "59000"));
    expect(&out[0], "8", &[(103, "6")]);
    let out = exchange.send(BOB, &cancel("x", "d2-b3r"));
    expect(&out[0], "8", &[(150, "4"), (41, "d2-b3r")]);
    let out = exchange.send(ALICE, &limit("new", '1', "0.1", "59000"));
    expect(&out[0], "8", &[(150, "0")]);
}

#[test]
fn restart_with_stored_requests_recognises_their_echoes_and_drops_unsequenced_ones() {
    let dir = TempDir::new("orders", "requests");
    let mut exchange = Exchange::new();
    exchange.store = Some(OrderStore::open(&dir.0, true).unwrap());
    trading_day(&mut exchange, "d1-");
    // Stored and sequenced, but the node stopped before its events reached the gateway.
    let session = SessionId::new("ALICE");
    let message = limit("late", '1', "0.1", "59000");
    let Response::Submit(late) =
        exchange.entry.on_message(&session, ALICE.1, &message, T0).unwrap()
    else {
        panic!("expected a submission")
    };
    exchange.store.as_ref().unwrap().put_request(&late.request).unwrap();
    // Stored but never sequenced.
    let message = limit("lost", '1', "0.1", "59000");
    let Response::Submit(lost) =
        exchange.entry.on_message(&session, ALICE.1, &message, T0).unwrap()
    else {
        panic!("expected a submission")
    };
    exchange.store.as_ref().unwrap().put_request(&lost.request).unwrap();
    for (origin, body) in late.commands.clone() {
        exchange.run(origin, body);
    }

    exchange.store = None;
    let store = OrderStore::open(&dir.0, true).unwrap();
    assert!(store.latest_snapshot().unwrap().is_none());
    let mut entry = OrderEntry::restore(
        instruments(),
        OrderEntryConfig::default(),
        None,
        store.requests_from(0).unwrap(),
    );
    replay(&mut entry, &exchange.stream, 0);
    let lost_requests = entry.finish_recovery();
    assert_eq!(lost_requests, vec![(*lost.request).clone()]);
    exchange.entry = entry;
    let out = exchange.send(ALICE, &status("late"));
    expect(&out[0], "8", &[(150, "I"), (39, "0"), (37, &order_id_of(&late.request))]);
    // The lost ClOrdID is free again; ids keep rising past the lost one.
    let out = exchange.send(ALICE, &limit("lost", '1', "0.1", "59000"));
    expect(&out[0], "8", &[(150, "0")]);
    let new_id: u64 = field(&out[0], 37).parse().unwrap();
    let gateway::orders::RequestKind::New { order_id: lost_id } = lost.request.kind else {
        panic!()
    };
    assert!(new_id > lost_id);
}

fn order_id_of(request: &gateway::orders::Request) -> String {
    match request.kind {
        gateway::orders::RequestKind::New { order_id } => order_id.to_string(),
        _ => panic!("not a new order"),
    }
}

#[test]
fn engine_events_from_the_journal_match_those_the_entry_saw() {
    // The stream the tests record is the engine's own, so a replay is a faithful restart.
    let mut exchange = Exchange::new();
    trading_day(&mut exchange, "x-");
    let trades = exchange
        .stream
        .iter()
        .filter(|item| matches!(item, Item::Event(EventRecord { event: Event::Trade { .. }, .. })))
        .count();
    assert_eq!(trades, 2);
}

#[test]
fn numbers_out_of_range_or_malformed_are_rejected_without_reaching_the_engine() {
    let mut exchange = Exchange::new();
    // (quantity, price, SessionRejectReason, RefTagID): 5 = value out of range, 6 = bad format.
    for (quantity, price, reason, tag) in [
        ("99999999999999999999999999999999999999999", "60000", 5, 38),
        ("1", "99999999999999999999999999999999999999999", 5, 44),
        ("1", "-60000", 6, 44),
        ("1", "1e400", 6, 44),
        ("-1", "60000", 6, 38),
        ("0.5.5", "60000", 6, 38),
    ] {
        let error = exchange.try_send(ALICE, &limit("n1", '1', quantity, price)).unwrap_err();
        let found = (error.session_reject_reason(), error.tag());
        assert_eq!(found, (reason, tag), "{quantity} @ {price}: {error}");
    }
    // Nothing of it was accepted: the ClOrdID is still free and a sane order goes through.
    let out = exchange.send(ALICE, &limit("n1", '1', "0.1", "60000"));
    expect(&out[0], "8", &[(150, "0"), (11, "n1")]);
}

#[test]
fn an_over_long_clordid_is_a_value_out_of_range_and_nothing_is_stored() {
    let dir = TempDir::new("orders", "long-clordid");
    let mut exchange = Exchange::new();
    exchange.store = Some(OrderStore::open(&dir.0, false).unwrap());
    // Control characters, which JSON escapes sixfold, cannot stretch a stored request either.
    let long = "\u{2}".repeat(CL_ORD_ID_LEN_MAX + 1);
    let error = exchange.try_send(ALICE, &limit(&long, '1', "0.1", "60000")).unwrap_err();
    assert_eq!((error.session_reject_reason(), error.tag()), (5, 11), "{error}");
    let out = exchange.send(ALICE, &limit("ok", '1', "0.1", "60000"));
    expect(&out[0], "8", &[(150, "0"), (11, "ok")]);
    let error = exchange.try_send(ALICE, &cancel("c1", &long)).unwrap_err();
    assert_eq!((error.session_reject_reason(), error.tag()), (5, 41), "{error}");
    // Exactly at the limit is accepted.
    let limit_id = "x".repeat(CL_ORD_ID_LEN_MAX);
    let out = exchange.send(ALICE, &limit(&limit_id, '1', "0.1", "60000"));
    expect(&out[0], "8", &[(150, "0"), (11, limit_id.as_str())]);
    let stored = exchange.store.as_ref().unwrap().requests_from(0).unwrap();
    let ids: Vec<&str> = stored.iter().map(|request| request.cl_ord_id.as_str()).collect();
    assert_eq!(ids, ["ok", limit_id.as_str()]);
}

#[test]
fn a_capture_into_a_recycled_snapshot_equals_a_fresh_one_and_keeps_its_room() {
    // A larger, older snapshot: more orders, more retired entries, a pending request.
    let mut busy = Exchange::new();
    trading_day(&mut busy, "d1-");
    trading_day(&mut busy, "d2-");
    busy.submit_only(ALICE, &limit("pending", '1', "0.1", "59000"));
    let older = busy.entry.snapshot();
    assert!(!older.pending.is_empty() && !older.retired.is_empty());
    let room = older.orders.len();

    let mut quiet = Exchange::new();
    trading_day(&mut quiet, "d1-");
    let recycled = older.recycle();
    assert!(recycled.orders.is_empty() && recycled.retired.is_empty());
    assert!(recycled.pending.is_empty() && recycled.mass.is_empty());
    assert!(recycled.orders.capacity() >= room, "the tables keep their room");
    let reused = quiet.entry.capture_into(recycled).finish();
    assert_eq!(reused, quiet.entry.snapshot(), "nothing of the older snapshot shows");
}
