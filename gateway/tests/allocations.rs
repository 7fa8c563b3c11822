//! A warmed-up order entry allocates nothing per message. The FIX thread runs it for every
//! order, so STYLE.md's rule for the hot path applies: every table is sized or recycled, and
//! what an order holds (its entry, its pending request, its reports) is reused rather than
//! allocated afresh.
//!
//! The test drives the order entry against a real engine, sequenced by hand as the application
//! loop would, with a mix of every message a trader sends in a steady flow: orders that rest
//! and fill between two sessions, amends, cancels and status requests. Counting is on for the
//! measured window only, on this thread, with testkit's counting allocator as this binary's
//! global allocator (one per binary, which is why this test has a file to itself). The
//! inbound messages are built before the window opens, as the decoder would have built them.

use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, Engine, EngineConfig, Event, TransactionId,
};
use gateway::orders::{
    Instrument, Instruments, OrderEntry, OrderEntryConfig, Response, SessionId, Submission,
};
use gateway::Message;
use sequencer::record::EventRecord;
use testkit::alloc::{counted, CountingAllocator};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const T0: u64 = 1_700_000_000_000_000_000;
/// The genesis commands' origin source: not the order entry's, so it ignores their echoes.
const SOURCE_OPERATOR: u8 = 3;
/// A small window of remembered finished orders, so that the warm-up fills it and the
/// measured rounds retire as many orders as they finish.
const RETIRED_MAX: usize = 512;
const WARM_UP_ROUNDS: u64 = 2_000;
const MEASURED_ROUNDS: u64 = 2_000;

/// An engine and an order entry, with the stream between them sequenced by hand.
struct Exchange {
    engine: Engine,
    entry: OrderEntry,
    seq: u64,
    events: Vec<Event>,
    /// Messages the order entry sent, all sessions together.
    sent: u64,
}

impl Exchange {
    fn new() -> Exchange {
        let spec = testkit::btc_usd_spec();
        let instrument = Instrument::from_spec("BTC-USD", &spec, 8, 2).unwrap();
        let config = OrderEntryConfig { retired_max: RETIRED_MAX, ..OrderEntryConfig::default() };
        let mut exchange = Exchange {
            engine: Engine::new(EngineConfig::default()),
            entry: OrderEntry::new(Instruments::new([instrument]), config),
            seq: 0,
            events: Vec::new(),
            sent: 0,
        };
        let mut genesis = vec![
            CommandBody::AddAsset { asset: AssetId(0), scale: 8 },
            CommandBody::AddAsset { asset: AssetId(1), scale: 2 },
            CommandBody::AddInstrument(spec),
        ];
        for account in 1..=2 {
            genesis.push(CommandBody::CreateAccount { account: AccountId(account) });
            for asset in 0..2u16 {
                genesis.push(CommandBody::Deposit {
                    transaction_id: TransactionId(u128::from(account) << 8 | u128::from(asset)),
                    account: AccountId(account),
                    asset: AssetId(asset),
                    amount: Amount(1 << 50),
                });
            }
        }
        for (number, body) in (1..).zip(genesis) {
            exchange.run(gateway::orders::origin(SOURCE_OPERATOR, number), body);
        }
        exchange.entry.flush();
        exchange
    }

    /// Sequences one command, feeding its echo and events to the order entry as they happen.
    fn run(&mut self, origin: u32, body: CommandBody) {
        self.seq += 1;
        let command = Command { seq: self.seq, timestamp_ns: T0 + self.seq * 1_000, body };
        self.entry.on_echo(origin, &command);
        self.events.clear();
        self.engine.handle(&command, &mut self.events);
        for (index, event) in (0..).zip(&self.events) {
            let record = EventRecord {
                seq: command.seq,
                timestamp_ns: command.timestamp_ns,
                index,
                event: *event,
            };
            self.entry.on_event(&record);
        }
    }

    /// Hands a message to the order entry, sequences what it submits, and sends (drops) what
    /// it answers, as the FIX thread does.
    fn send(&mut self, session: &SessionId, account: AccountId, message: &Message) {
        match self.entry.on_message(session, &[account], message, T0).unwrap() {
            Response::Reply(reply) => {
                drop(reply);
                self.sent += 1;
            }
            Response::Submit(Submission { request, commands }) => {
                // The bridge stores the request and pushes the commands, and has let go of
                // the submission before the loop's echo comes back.
                drop(request);
                for (origin, body) in commands {
                    self.run(origin, body);
                }
                self.entry.flush();
            }
        }
        while let Some((_, message)) = self.entry.poll_outbound() {
            drop(message);
            self.sent += 1;
        }
    }
}

fn limit(cl_ord_id: &str, side: char, price: &str) -> Message {
    Message::new("D")
        .with(11, cl_ord_id)
        .with(55, "BTC-USD")
        .with(54, side)
        .with(40, '2')
        .with(38, "0.01")
        .with(44, price)
        .with(59, '1')
        .with(60, "20240101-00:00:00.000")
}

/// One round's messages, by session: an order that rests and one that fills it, an order that
/// rests, is amended and cancelled, and a status request for the filled one.
fn round(r: u64) -> [(bool, Message); 6] {
    [
        (true, limit(&format!("n{r}"), '1', "60000")),
        (false, limit(&format!("s{r}"), '2', "60000")),
        (true, limit(&format!("r{r}"), '1', "59000")),
        (
            true,
            Message::new("G")
                .with(11, format!("m{r}").as_str())
                .with(41, format!("r{r}").as_str())
                .with(55, "BTC-USD")
                .with(54, '1')
                .with(40, '2')
                .with(38, "0.01")
                .with(44, "59001"),
        ),
        (
            true,
            Message::new("F")
                .with(11, format!("c{r}").as_str())
                .with(41, format!("m{r}").as_str())
                .with(55, "BTC-USD")
                .with(54, '1'),
        ),
        (true, Message::new("H").with(11, format!("n{r}").as_str()).with(55, "BTC-USD")),
    ]
}

#[test]
fn a_warmed_up_order_entry_allocates_nothing_per_message() {
    let (((), deliberate), _) = counted(|| counted(|| drop(std::hint::black_box(vec![1u8]))));
    assert_eq!(deliberate, 1, "the counting allocator must count");

    let mut exchange = Exchange::new();
    let alice = (SessionId::new("ALICE"), AccountId(1));
    let bob = (SessionId::new("BOB"), AccountId(2));
    let messages: Vec<(bool, Message)> =
        (0..WARM_UP_ROUNDS + MEASURED_ROUNDS).flat_map(round).collect();
    let (warm_up, measured) = messages.split_at(usize::try_from(6 * WARM_UP_ROUNDS).unwrap());
    for (from_alice, message) in warm_up {
        let (session, account) = if *from_alice { &alice } else { &bob };
        exchange.send(session, *account, message);
    }
    let sent_before = exchange.sent;
    let ((), allocations) = counted(|| {
        for (from_alice, message) in measured {
            let (session, account) = if *from_alice { &alice } else { &bob };
            exchange.send(session, *account, message);
        }
    });
    // Per round: New and Trade for each side of the fill, New, Replaced and Canceled for the
    // other order, and the status report.
    let sent = exchange.sent - sent_before;
    assert_eq!(sent, 8 * MEASURED_ROUNDS, "every message must have been answered");
    assert_eq!(exchange.entry.live_orders(), 0, "every order filled or was cancelled");
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations over {} messages and {sent} reports",
        measured.len()
    );
}
