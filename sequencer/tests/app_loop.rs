//! The application loop over real rings and journals: events are released only once durable,
//! a full output ring holds input back instead of losing anything, malformed input is counted
//! and skipped, and control messages flush and stop it.

use std::time::Duration;
use testkit::TempDir;

use engine::{AccountId, Amount, AssetId, Command, CommandBody, EngineConfig, TransactionId};
use sequencer::app_loop::{AppLoop, Control, LoopConfig, Release};
use sequencer::journal::Durability;
use sequencer::record::{
    decode_command_origin, decode_event, decode_output, encode_command, encode_command_from,
    from_journal_payload, Output, RECORD_BYTES,
};
use sequencer::ring::{BusySpinIdle, Ring, RingConsumer, RingProducer};
use sequencer::sequencer::{Sequencer, SequencerConfig};

fn sequencer(dir: &TempDir, durability: Durability) -> Sequencer {
    let config = SequencerConfig {
        data_dir: dir.0.clone(),
        engine: EngineConfig {
            assets_max: 2,
            instruments_max: 1,
            accounts_max: 8,
            orders_max: 64,
            levels_max: 8,
            orders_per_account_max: 8,
            transactions_max: 1 << 12,
            fee_account: AccountId(0),
        },
        durability,
        segment_bytes: 1 << 20,
        truncate_corrupt: false,
        snapshot_every_commands: 0,
        snapshots_kept: 3,
    };
    Sequencer::open(&config).unwrap().0
}

fn push(producer: &mut RingProducer, body: CommandBody) {
    producer.try_push(&encode_command(&Command { seq: 0, timestamp_ns: 0, body })).unwrap();
}

fn rings(
    input_slots: usize,
    output_slots: usize,
) -> (RingProducer, RingConsumer, RingProducer, RingConsumer) {
    let (input, consumer) = Ring::create_in_memory(input_slots, RECORD_BYTES).unwrap().split();
    let (output, reader) = Ring::create_in_memory(output_slots, RECORD_BYTES).unwrap().split();
    (input, consumer, output, reader)
}

fn setup(producer: &mut RingProducer) {
    push(producer, CommandBody::AddAsset { asset: AssetId(0), scale: 2 });
    for account in 1..=2 {
        push(producer, CommandBody::CreateAccount { account: AccountId(account) });
    }
}

#[test]
fn events_wait_for_the_durable_watermark() {
    let dir = TempDir::new("app-loop", "watermark");
    // A group that never fills on its own: only an explicit flush makes anything durable.
    let group = Durability::GroupCommit { interval: Duration::from_secs(3_600), records: 1 << 20 };
    let (mut input, consumer, output, mut reader) = rings(64, 64);
    let mut app =
        AppLoop::new(sequencer(&dir, group), consumer, Some(output), LoopConfig::default());
    setup(&mut input);
    assert_eq!(app.do_work().unwrap(), 3);
    assert_eq!(reader.poll(64, |_| {}), 0, "nothing is released before it is durable");
    assert_eq!(app.pending_events(), 3);
    app.control().push(Control::Flush).unwrap();
    app.do_work().unwrap();
    let mut seqs = Vec::new();
    reader.poll(64, |bytes| seqs.push(decode_event(bytes.try_into().unwrap()).unwrap().seq));
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(app.stats().durable_seq, 3);
}

#[test]
fn release_on_write_does_not_wait_for_the_group_commit_but_the_watermark_still_does() {
    let dir = TempDir::new("app-loop", "release-written");
    let group = Durability::GroupCommit { interval: Duration::from_secs(3_600), records: 1 << 20 };
    let (mut input, consumer, output, mut reader) = rings(64, 64);
    let config = LoopConfig { release: Release::Written, ..LoopConfig::default() };
    let mut app = AppLoop::new(sequencer(&dir, group), consumer, Some(output), config);
    setup(&mut input);
    assert_eq!(app.do_work().unwrap(), 6, "three commands taken, three events released");
    let mut seqs = Vec::new();
    reader.poll(64, |bytes| seqs.push(decode_event(bytes.try_into().unwrap()).unwrap().seq));
    assert_eq!(seqs, vec![1, 2, 3], "released once written, before any fsync");
    assert_eq!(app.stats().durable_seq, 0, "the durable watermark still waits for the fsync");
    app.control().push(Control::Flush).unwrap();
    app.do_work().unwrap();
    assert_eq!(app.stats().durable_seq, 3);
    assert_eq!(reader.poll(64, |_| {}), 0, "nothing released twice");
}

#[test]
fn a_full_output_ring_holds_input_back_and_loses_nothing() {
    let dir = TempDir::new("app-loop", "backpressure");
    let (mut input, consumer, output, mut reader) = rings(1024, 4);
    let config = LoopConfig { batch_max: 8, pending_events_max: 16, ..LoopConfig::default() };
    let mut app =
        AppLoop::new(sequencer(&dir, Durability::PageCache), consumer, Some(output), config);
    setup(&mut input);
    for id in 1..=200u128 {
        push(
            &mut input,
            CommandBody::Deposit {
                transaction_id: TransactionId(id),
                account: AccountId(1 + (id % 2) as u32),
                asset: AssetId(0),
                amount: Amount(id),
            },
        );
    }
    // Without a reader the output fills, the pending buffer fills, and the loop stops taking
    // input: the rest waits in the input ring.
    for _ in 0..100 {
        app.do_work().unwrap();
    }
    assert!(input.depth() > 150, "input must be held back, depth {}", input.depth());
    assert!(app.pending_events() <= 16 + 8);
    // With a reader, everything flows, in order, exactly once.
    let mut seqs = Vec::new();
    while seqs.len() < 203 {
        app.do_work().unwrap();
        reader.poll(64, |bytes| seqs.push(decode_event(bytes.try_into().unwrap()).unwrap().seq));
    }
    assert_eq!(seqs, (1..=203).collect::<Vec<u64>>());
    assert_eq!(app.stats().commands, 203);
}

#[test]
fn several_inputs_are_sequenced_and_each_command_is_echoed_with_its_origin() {
    let dir = TempDir::new("app-loop", "echo");
    let (mut first, consumer, output, mut reader) = rings(64, 256);
    let (mut second, second_consumer) = Ring::create_in_memory(64, RECORD_BYTES).unwrap().split();
    let config = LoopConfig { echo_commands: true, ..LoopConfig::default() };
    let mut app =
        AppLoop::new(sequencer(&dir, Durability::PageCache), consumer, Some(output), config);
    app.add_input(second_consumer);
    setup(&mut first);
    let tagged =
        |body| encode_command_from(&Command { seq: 0, timestamp_ns: 0, body }, 0x0200_0001);
    second.try_push(&tagged(CommandBody::CreateAccount { account: AccountId(5) })).unwrap();
    // A command the engine rejects still gets its echo, then its one rejection.
    second.try_push(&tagged(CommandBody::CreateAccount { account: AccountId(5) })).unwrap();
    while app.stats().commands < 5 {
        app.do_work().unwrap();
    }
    let mut outputs = Vec::new();
    reader.poll(256, |bytes| outputs.push(decode_output(bytes.try_into().unwrap()).unwrap()));
    let echoes: Vec<(u64, u32)> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Echo { command, origin } => Some((command.seq, *origin)),
            Output::Event(_) => None,
        })
        .collect();
    assert_eq!(echoes, vec![(1, 0), (2, 0), (3, 0), (4, 0x0200_0001), (5, 0x0200_0001)]);
    // Every echo comes before the events of its command, and each command has one event here.
    let mut current = 0;
    for output in &outputs {
        match output {
            Output::Echo { command, .. } => current = command.seq,
            Output::Event(event) => assert_eq!(event.seq, current),
        }
    }
    assert_eq!(outputs.len(), 10);
    // A consumer restarting later reads the same stream back from the journals.
    let mut replayed = Vec::new();
    let last = sequencer::sequencer::read_output_from(&dir.0, 1, |output| {
        replayed.push(output);
        Ok(())
    })
    .unwrap();
    assert_eq!((last, &replayed), (5, &outputs));
    let mut tail = Vec::new();
    sequencer::sequencer::read_output_from(&dir.0, 4, |output| {
        tail.push(output);
        Ok(())
    })
    .unwrap();
    assert_eq!(tail, outputs[6..]);
    // The journal keeps the origin too, for audit.
    let mut origins = Vec::new();
    sequencer::journal::read_all(
        &dir.0.join("journal"),
        "commands",
        sequencer::journal::SeqOrder::Strict,
        |_, payload| {
            origins.push(decode_command_origin(&from_journal_payload(payload).unwrap()).unwrap().1);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(origins, vec![0, 0, 0, 0x0200_0001, 0x0200_0001]);
}

#[test]
fn every_output_gets_every_record_in_order_and_a_slow_one_holds_back_only_the_buffer() {
    let dir = TempDir::new("app-loop", "outputs");
    let (mut input, consumer, output, mut fast) = rings(1024, 1024);
    let (second, mut slow) = Ring::create_in_memory(8, RECORD_BYTES).unwrap().split();
    let config = LoopConfig { batch_max: 8, pending_events_max: 64, ..LoopConfig::default() };
    let mut app =
        AppLoop::new(sequencer(&dir, Durability::PageCache), consumer, Some(output), config);
    app.add_output(second);
    setup(&mut input);
    for id in 1..=100u128 {
        let body = CommandBody::Deposit {
            transaction_id: TransactionId(id),
            account: AccountId(1),
            asset: AssetId(0),
            amount: Amount(id),
        };
        push(&mut input, body);
    }
    let decode = |bytes: &[u8]| decode_event(bytes.try_into().unwrap()).unwrap().seq;
    let (mut fast_seqs, mut slow_seqs) = (Vec::new(), Vec::new());
    // The slow reader takes nothing for a while: the fast one still gets what the buffer holds.
    for _ in 0..50 {
        app.do_work().unwrap();
        fast.poll(1024, |bytes| fast_seqs.push(decode(bytes)));
    }
    assert!(fast_seqs.len() > 8, "the fast output is not held to the slow one's ring size");
    assert!(input.depth() > 0, "input waits while the slow output holds the buffer full");
    while slow_seqs.len() < 103 {
        app.do_work().unwrap();
        fast.poll(1024, |bytes| fast_seqs.push(decode(bytes)));
        slow.poll(3, |bytes| slow_seqs.push(decode(bytes)));
    }
    let expected: Vec<u64> = (1..=103).collect();
    assert_eq!((fast_seqs, slow_seqs), (expected.clone(), expected));
    assert_eq!(app.pending_events(), 0);
}

#[test]
fn a_command_reaches_an_output_whole_or_not_at_all() {
    let dir = TempDir::new("app-loop", "whole");
    // Four slots: after the reader takes one record, one slot is free, too few for the next
    // command's echo and event; it must wait whole rather than be split across polls.
    let (mut input, consumer, output, mut reader) = rings(64, 4);
    let config = LoopConfig { echo_commands: true, ..LoopConfig::default() };
    let mut app =
        AppLoop::new(sequencer(&dir, Durability::PageCache), consumer, Some(output), config);
    setup(&mut input);
    let mut seen = Vec::new();
    let read = |reader: &mut RingConsumer, seen: &mut Vec<Output>, limit| {
        reader.poll(limit, |bytes| seen.push(decode_output(bytes.try_into().unwrap()).unwrap()))
    };
    for _ in 0..4 {
        app.do_work().unwrap();
        read(&mut reader, &mut seen, 1);
        app.do_work().unwrap();
        read(&mut reader, &mut seen, 64);
        assert_eq!(seen.len() % 2, 0, "a drained ring ends at a command boundary: {seen:?}");
    }
    assert_eq!(seen.len(), 6, "three commands, each an echo and one event");
    for pair in seen.chunks(2) {
        assert!(matches!(pair, [Output::Echo { .. }, Output::Event(_)]), "{pair:?}");
    }
}

#[test]
fn malformed_records_are_counted_and_skipped() {
    let dir = TempDir::new("app-loop", "malformed");
    let (mut input, consumer, output, mut reader) = rings(16, 16);
    let mut app = AppLoop::new(
        sequencer(&dir, Durability::PageCache),
        consumer,
        Some(output),
        LoopConfig::default(),
    );
    input.try_push(&[0xAB; RECORD_BYTES]).unwrap();
    push(&mut input, CommandBody::CreateAccount { account: AccountId(1) });
    app.do_work().unwrap();
    assert_eq!(app.stats().malformed, 1);
    assert_eq!(app.sequencer().seq(), 1, "only the valid command is sequenced");
    assert_eq!(reader.poll(16, |_| {}), 1);
}

#[test]
fn shutdown_flushes_and_stops() {
    let dir = TempDir::new("app-loop", "shutdown");
    let group = Durability::GroupCommit { interval: Duration::from_secs(3_600), records: 1 << 20 };
    let (mut input, consumer, output, mut reader) = rings(16, 16);
    let mut app =
        AppLoop::new(sequencer(&dir, group), consumer, Some(output), LoopConfig::default());
    setup(&mut input);
    let control = app.control();
    let mut cycles = 0;
    let stats = app
        .run(&mut BusySpinIdle, |stats| {
            cycles += 1;
            if stats.commands == 3 {
                control.push(Control::Shutdown).unwrap();
            }
            cycles > 1_000
        })
        .unwrap();
    assert!(stats.shutdown, "stopped by the message, not by the cycle cap");
    assert_eq!(stats.durable_seq, 3);
    assert_eq!(reader.poll(16, |_| {}), 3);
}

#[test]
fn group_commit_time_bound_holds_when_input_stops() {
    let dir = TempDir::new("app-loop", "interval");
    let group = Durability::GroupCommit { interval: Duration::from_millis(1), records: 1 << 20 };
    let (mut input, consumer, output, mut reader) = rings(16, 16);
    let mut app =
        AppLoop::new(sequencer(&dir, group), consumer, Some(output), LoopConfig::default());
    setup(&mut input);
    app.do_work().unwrap();
    // No more input arrives; idle cycles alone must make the batch durable once the interval
    // has passed, and release its events.
    let mut released = 0;
    for _ in 0..10_000 {
        app.do_work().unwrap();
        released += reader.poll(16, |_| {});
        if released == 3 {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(released, 3);
    assert_eq!(app.stats().durable_seq, 3);
}
