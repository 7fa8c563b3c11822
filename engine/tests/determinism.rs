//! Determinism: the same sequenced commands give the same events byte for byte and the same
//! state hash, whether run twice in one process, replayed as events, or run in a separate
//! process. The separate process is this test binary itself, re-executed with an environment
//! variable that turns `determinism_child` from a no-op into a worker that prints its digests.

mod workload;

use engine::{
    Bucket, CancelReason, Command, Engine, EngineConfig, Event, LegKind, RejectReason,
    SelfTradePrevention,
};
use sha2::{Digest, Sha256};
use workload::Workload;

const CHILD_ENV: &str = "ENGINE_DETERMINISM_CHILD";
const CHILD_MARKER: &str = "DETERMINISM-DIGESTS";
const COMMANDS: usize = 30_000;

fn config() -> EngineConfig {
    let mut config = workload::small_config(400, 80, 24);
    config.transactions_max = 50_000;
    config
}

/// A fixed command stream: resolved once against a scratch engine, then replayed as data.
fn commands() -> Vec<Command> {
    let mut scratch = Engine::new(config());
    let mut workload = Workload::new(5, 3);
    let mut sink = Vec::new();
    let mut commands = workload.genesis();
    for command in &commands {
        scratch.handle(command, &mut sink);
    }
    for op in workload::seeded_ops(42, COMMANDS) {
        let command = workload.resolve(&op, &scratch);
        scratch.handle(&command, &mut sink);
        commands.push(command);
    }
    commands
}

/// A canonical byte encoding of an event, written for this test: a tag byte, then every field
/// little-endian in declaration order. Independent of `Debug` formatting and of memory layout.
// tidy: long function, one flat match with an arm per event variant.
fn encode(event: &Event, out: &mut Vec<u8>) {
    fn stp(mode: SelfTradePrevention) -> u8 {
        mode as u8
    }
    match *event {
        Event::Rejected { reason, reference } => {
            out.push(1);
            out.extend(RejectReason::code(reason).to_le_bytes());
            out.extend(reference.to_le_bytes());
        }
        Event::OrderAccepted {
            order_id,
            account,
            instrument,
            side,
            order_type,
            time_in_force,
            post_only,
            self_trade_prevention,
            price,
            quantity,
            quote_budget,
        } => {
            out.push(2);
            out.extend(order_id.0.to_le_bytes());
            out.extend(account.0.to_le_bytes());
            out.extend(instrument.0.to_le_bytes());
            out.extend([side as u8, order_type as u8, time_in_force as u8, u8::from(post_only)]);
            out.push(stp(self_trade_prevention));
            out.extend(price.0.to_le_bytes());
            out.extend(quantity.0.to_le_bytes());
            out.extend(quote_budget.0.to_le_bytes());
        }
        Event::OrderRested { order_id } => {
            out.push(3);
            out.extend(order_id.0.to_le_bytes());
        }
        Event::OrderAmended { order_id, price, quantity, leaves, priority_kept } => {
            out.push(4);
            out.extend(order_id.0.to_le_bytes());
            out.extend(price.0.to_le_bytes());
            out.extend(quantity.0.to_le_bytes());
            out.extend(leaves.0.to_le_bytes());
            out.push(u8::from(priority_kept));
        }
        Event::OrderCancelled { order_id, leaves, reason } => {
            out.push(5);
            out.extend(order_id.0.to_le_bytes());
            out.extend(leaves.0.to_le_bytes());
            out.push(reason as u8);
        }
        Event::Trade {
            instrument,
            maker_order_id,
            taker_order_id,
            taker_side,
            price,
            quantity,
            maker_leaves,
            taker_leaves,
        } => {
            out.push(6);
            out.extend(instrument.0.to_le_bytes());
            out.extend(maker_order_id.0.to_le_bytes());
            out.extend(taker_order_id.0.to_le_bytes());
            out.push(taker_side as u8);
            for value in [price.0, quantity.0, maker_leaves.0, taker_leaves.0] {
                out.extend(value.to_le_bytes());
            }
        }
        Event::Ledger {
            kind,
            asset,
            debit_account,
            debit_bucket,
            credit_account,
            credit_bucket,
            amount,
            order_id,
            transaction_id,
        } => {
            out.push(7);
            out.push(kind as u8);
            out.extend(asset.0.to_le_bytes());
            out.extend(debit_account.0.to_le_bytes());
            out.push(debit_bucket as u8);
            out.extend(credit_account.0.to_le_bytes());
            out.push(credit_bucket as u8);
            out.extend(amount.0.to_le_bytes());
            out.extend(order_id.0.to_le_bytes());
            out.extend(transaction_id.0.to_le_bytes());
        }
        Event::TransactionDuplicate { transaction_id, original_seq } => {
            out.push(8);
            out.extend(transaction_id.0.to_le_bytes());
            out.extend(original_seq.to_le_bytes());
        }
        Event::AccountCreated { account } => {
            out.push(9);
            out.extend(account.0.to_le_bytes());
        }
        Event::AssetAdded { asset, scale } => {
            out.push(10);
            out.extend(asset.0.to_le_bytes());
            out.push(scale);
        }
        Event::InstrumentAdded(spec) => {
            out.push(11);
            out.extend(spec.instrument.0.to_le_bytes());
            out.extend(spec.base_asset.0.to_le_bytes());
            out.extend(spec.quote_asset.0.to_le_bytes());
            for value in [spec.tick_size.0, spec.lot_size.0, spec.quantity_min.0] {
                out.extend(value.to_le_bytes());
            }
            for value in [spec.quantity_max.0, spec.base_per_lot, spec.quote_per_tick_lot] {
                out.extend(value.to_le_bytes());
            }
            out.extend(spec.reference_price.0.to_le_bytes());
            for value in [spec.band_bps, spec.maker_fee_bps, spec.taker_fee_bps] {
                out.extend(value.to_le_bytes());
            }
        }
        Event::InstrumentHalted { instrument, halted } => {
            out.push(12);
            out.extend(instrument.0.to_le_bytes());
            out.push(u8::from(halted));
        }
    }
}

/// The outcome of one run: every event's bytes framed by command, the events themselves (for
/// the replay check), and the state hash after every 1,000th command and at the end.
struct Run {
    bytes: Vec<u8>,
    events: Vec<(u64, u64, Event)>,
    hashes: Vec<[u8; 32]>,
}

fn run(commands: &[Command]) -> Run {
    let mut engine = Engine::new(config());
    let mut result = Run { bytes: Vec::new(), events: Vec::new(), hashes: Vec::new() };
    let mut sink = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        sink.clear();
        engine.handle(command, &mut sink);
        result.bytes.extend(command.seq.to_le_bytes());
        result.bytes.extend(u32::try_from(sink.len()).unwrap().to_le_bytes());
        for event in &sink {
            encode(event, &mut result.bytes);
            result.events.push((command.seq, command.timestamp_ns, *event));
        }
        if index % 1_000 == 0 {
            result.hashes.push(engine.state_hash());
        }
    }
    engine.check_invariants();
    result.hashes.push(engine.state_hash());
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What a process reports: the final state hash and a digest of all event bytes.
fn digests(run: &Run) -> String {
    let events = Sha256::digest(&run.bytes);
    format!("{} {}", hex(run.hashes.last().unwrap()), hex(&events))
}

#[test]
fn same_commands_give_same_bytes_and_hashes() {
    let commands = commands();
    let first = run(&commands);
    let second = run(&commands);
    assert!(first.bytes.len() > 1_000_000, "the stream should be substantial");
    assert!(first.bytes == second.bytes, "event bytes differ between two runs");
    assert_eq!(first.hashes, second.hashes);
    // Debug text is a second, independent rendering of the same events.
    let text = |run: &Run| format!("{:?}", run.events);
    assert_eq!(text(&first), text(&second));
}

#[test]
fn replaying_events_reaches_the_same_state_hash() {
    let commands = commands();
    let handled = run(&commands);
    let mut replayed = Engine::new(config());
    for (seq, timestamp_ns, event) in &handled.events {
        replayed.apply_replayed(*seq, *timestamp_ns, event);
    }
    replayed.check_invariants();
    assert_eq!(replayed.seq(), commands.last().unwrap().seq);
    assert_eq!(&replayed.state_hash(), handled.hashes.last().unwrap());
}

#[test]
fn a_different_stream_gives_a_different_hash() {
    // Guards the check above against a hash that ignores its input.
    let mut commands = commands();
    let first = run(&commands);
    commands.truncate(commands.len() - 1);
    let shorter = run(&commands);
    assert_ne!(first.hashes.last(), shorter.hashes.last());
}

/// The child half of the cross-process check: does nothing unless the parent asked for it.
#[test]
fn determinism_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    println!("{CHILD_MARKER} {}", digests(&run(&commands())));
}

#[test]
fn separate_processes_agree() {
    let expected = digests(&run(&commands()));
    let exe = std::env::current_exe().unwrap();
    for child in 0..2 {
        let output = std::process::Command::new(&exe)
            .args(["--exact", "determinism_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(output.status.success(), "child {child} failed: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        // The harness may print the test's name on the same line before the child's output.
        let line = stdout.lines().find_map(|line| line.split_once(CHILD_MARKER).map(|(_, d)| d));
        let reported = line.unwrap_or_else(|| panic!("child {child} printed no digests: {stdout}"));
        assert_eq!(reported.trim(), expected, "child {child} disagrees");
    }
}

// The encoding must give every reason and bucket a distinct byte; pin the ones it relies on.
const _: () = assert!(CancelReason::BudgetExhausted as u8 == 6);
const _: () = assert!(Bucket::Held as u8 == 2 && LegKind::Fee as u8 == 7);
