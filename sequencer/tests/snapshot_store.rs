//! Snapshots in the real RocksDB: snapshot plus journal tail equals full replay (state hash and
//! events) across journal segment boundaries, damaged snapshots are skipped with a warning in
//! favour of older ones or genesis, snapshots past the journal are dropped, pruning keeps the
//! newest N, and the application loop takes snapshots periodically and on demand.

// Test data is built from small counters; truncating them is the intent.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;

use engine::{Command, CommandBody};
use sequencer::app_loop::{AppLoop, Control, LoopConfig};
use sequencer::journal::Durability;
use sequencer::record::{encode_command, encode_event, RECORD_BYTES};
use sequencer::ring::Ring;
use sequencer::sequencer::{read_events, replay, replay_from_snapshot, Sequencer, SequencerConfig};
use sequencer::snapshot_store::{
    key, SkippedSnapshot, SnapshotDefect, SnapshotStore, HEADER_BYTES, SNAPSHOTS,
};

mod common;

use common::{engine_config, genesis, trading, TempDir};

/// Small segments (about 25 commands each) so that snapshots and tails straddle rollovers.
const SEGMENT_BYTES: u64 = 1 << 11;

fn config(data_dir: &Path, snapshot_every_commands: u64, snapshots_kept: usize) -> SequencerConfig {
    SequencerConfig {
        data_dir: data_dir.to_owned(),
        engine: engine_config(),
        durability: Durability::PageCache,
        segment_bytes: SEGMENT_BYTES,
        truncate_corrupt: false,
        snapshot_every_commands,
        snapshots_kept,
    }
}

fn run(sequencer: &mut Sequencer, commands: Vec<CommandBody>) {
    for (index, body) in commands.into_iter().enumerate() {
        let timestamp_ns = 1_000 + sequencer.seq();
        sequencer.submit(body, timestamp_ns).unwrap();
        if index % 5 == 4 {
            sequencer.commit().unwrap();
            sequencer.snapshot_if_due().unwrap();
        }
    }
    sequencer.commit().unwrap();
}

fn stored_seqs(data_dir: &Path) -> Vec<u64> {
    let store = SnapshotStore::open_read_only(&data_dir.join(SNAPSHOTS)).unwrap().unwrap();
    store.list().unwrap().into_iter().map(|info| info.seq).collect()
}

fn event_bytes(data_dir: &Path) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    read_events(data_dir, |record| {
        events.push(encode_event(&record).to_vec());
        Ok(())
    })
    .unwrap();
    events
}

fn command_segments(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("journal"))
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_str().unwrap().starts_with("commands-")
        })
        .count()
}

/// Flips one byte of the stored value of the snapshot at `seq`, through RocksDB itself, the way
/// a bad sector or a stray write would leave it.
fn corrupt(data_dir: &Path, seq: u64, offset: usize) {
    let db = rocksdb::DB::open_default(data_dir.join(SNAPSHOTS)).unwrap();
    let mut value = db.get(key(seq)).unwrap().unwrap();
    value[offset] ^= 0x40;
    db.put(key(seq), value).unwrap();
}

#[test]
fn snapshot_plus_tail_equals_full_replay_across_segment_boundaries() {
    let snapshotted = TempDir::new("snapshots", "tail");
    let reference = TempDir::new("snapshots", "tail-reference");
    let (mut with, _) = Sequencer::open(&config(&snapshotted.0, 37, 100)).unwrap();
    let (mut without, _) = Sequencer::open(&config(&reference.0, 0, 1)).unwrap();
    for sequencer in [&mut with, &mut without] {
        run(sequencer, genesis());
        run(sequencer, trading(600, 1));
    }
    let end = with.seq();
    assert_eq!(with.engine().state_hash(), without.engine().state_hash());
    drop((with, without));
    assert!(command_segments(&snapshotted.0) > 20, "the tail must cross segment boundaries");
    let seqs = stored_seqs(&snapshotted.0);
    assert!(seqs.len() >= 15, "{seqs:?}");
    assert!(stored_seqs(&reference.0).is_empty());

    // Replay to points at, just after and well after each snapshot starts from that snapshot
    // and reaches the state of a replay from genesis.
    for &seq in &seqs {
        for to_seq in [seq, seq + 1, (seq + 29).min(end)] {
            let tail = replay_from_snapshot(&snapshotted.0, engine_config(), Some(to_seq), |_| {})
                .unwrap();
            assert!(tail.skipped.is_empty());
            assert_eq!(tail.snapshot_seq, seqs.iter().copied().filter(|&s| s <= to_seq).max());
            let full = replay(&snapshotted.0, engine_config(), Some(to_seq), |_| {}).unwrap();
            assert_eq!(tail.engine.seq(), to_seq);
            assert_eq!(tail.engine.state_hash(), full.state_hash(), "to seq {to_seq}");
        }
    }

    // Recovery starts from the newest snapshot, replays only the tail, and then produces the
    // same events, byte for byte, as a sequencer that never took a snapshot.
    let (mut with, recovery) = Sequencer::open(&config(&snapshotted.0, 37, 100)).unwrap();
    let newest = *seqs.last().unwrap();
    assert_eq!(recovery.snapshot_seq, Some(newest));
    assert_eq!(recovery.commands_replayed, end - newest);
    assert!(recovery.snapshots_skipped.is_empty());
    let (mut without, _) = Sequencer::open(&config(&reference.0, 0, 1)).unwrap();
    assert_eq!(with.engine().state_hash(), without.engine().state_hash());
    for sequencer in [&mut with, &mut without] {
        run(sequencer, trading(200, 601));
    }
    assert_eq!(with.engine().state_hash(), without.engine().state_hash());
    drop((with, without));
    assert_eq!(event_bytes(&snapshotted.0), event_bytes(&reference.0));
}

#[test]
fn a_snapshot_with_a_bad_checksum_is_skipped_for_an_older_one_or_genesis() {
    let dir = TempDir::new("snapshots", "corrupt");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 0, 10)).unwrap();
    run(&mut sequencer, genesis());
    let mut taken = Vec::new();
    for chunk in 0..3 {
        run(&mut sequencer, trading(50, 1 + chunk * 50));
        taken.push(sequencer.snapshot().unwrap());
    }
    run(&mut sequencer, trading(30, 151));
    let hash = sequencer.engine().state_hash();
    drop(sequencer);
    let [oldest, middle, newest] = taken[..] else { panic!("three snapshots") };

    // A flipped bit in the engine bytes of the newest one.
    corrupt(&dir.0, newest, HEADER_BYTES + 200);
    let tail = replay_from_snapshot(&dir.0, engine_config(), None, |_| {}).unwrap();
    assert_eq!(tail.snapshot_seq, Some(middle));
    assert_eq!(tail.skipped.len(), 1);
    assert_eq!(tail.skipped[0].seq, newest);
    assert!(matches!(tail.skipped[0].defect, SnapshotDefect::Checksum { .. }));
    assert!(tail.skipped[0].to_string().contains("checksum mismatch"), "{}", tail.skipped[0]);
    assert_eq!(tail.engine.state_hash(), hash);

    let (sequencer, recovery) = Sequencer::open(&config(&dir.0, 0, 10)).unwrap();
    assert_eq!(recovery.snapshot_seq, Some(middle));
    assert_eq!(recovery.snapshots_skipped, tail.skipped);
    assert_eq!(sequencer.engine().state_hash(), hash);
    drop(sequencer);

    // A flipped bit in the header's seq of the middle one: the checksum covers the header too.
    corrupt(&dir.0, middle, 9);
    let store = SnapshotStore::open_read_only(&dir.0.join(SNAPSHOTS)).unwrap().unwrap();
    let search = store.newest_valid(engine_config(), None).unwrap();
    assert_eq!(search.engine.as_ref().map(engine::Engine::seq), Some(oldest));
    assert_eq!(search.skipped.len(), 2);
    assert_eq!(search.skipped[1].seq, middle);
    drop(store);

    // With every snapshot damaged, recovery falls back to genesis and still gets it right.
    corrupt(&dir.0, oldest, HEADER_BYTES + 8);
    let (sequencer, recovery) = Sequencer::open(&config(&dir.0, 0, 10)).unwrap();
    assert_eq!(recovery.snapshot_seq, None);
    let skipped: Vec<u64> = recovery.snapshots_skipped.iter().map(|s| s.seq).collect();
    assert_eq!(skipped, vec![newest, middle, oldest]);
    assert_eq!(recovery.commands_replayed, sequencer.seq());
    assert_eq!(sequencer.engine().state_hash(), hash);
}

#[test]
fn a_truncated_or_foreign_value_is_refused_not_restored() {
    let dir = TempDir::new("snapshots", "foreign");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 0, 10)).unwrap();
    run(&mut sequencer, genesis());
    let first = sequencer.snapshot().unwrap();
    run(&mut sequencer, trading(20, 1));
    let second = sequencer.snapshot().unwrap();
    drop(sequencer);
    let db = rocksdb::DB::open_default(dir.0.join(SNAPSHOTS)).unwrap();
    let value = db.get(key(second)).unwrap().unwrap();
    db.put(key(second), &value[..value.len() - 1]).unwrap();
    db.put(key(first), b"not a snapshot, but long enough for a header....").unwrap();
    drop(db);
    let store = SnapshotStore::open_read_only(&dir.0.join(SNAPSHOTS)).unwrap().unwrap();
    let search = store.newest_valid(engine_config(), None).unwrap();
    assert!(search.engine.is_none());
    assert!(matches!(search.skipped[0].defect, SnapshotDefect::LengthMismatch { .. }));
    assert_eq!(search.skipped[1].defect, SnapshotDefect::BadMagic);
}

#[test]
fn pruning_keeps_the_newest_n() {
    let dir = TempDir::new("snapshots", "prune");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 10, 3)).unwrap();
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(100, 1));
    let last = sequencer.snapshot_seq();
    assert!(last + 10 > sequencer.seq());
    let seqs = stored_seqs(&dir.0);
    assert_eq!(seqs.len(), 3, "{seqs:?}");
    assert_eq!(*seqs.last().unwrap(), last);
    // Snapshots are taken at batch ends (every five commands here) once ten are due.
    assert!(seqs.windows(2).all(|pair| pair[1] - pair[0] >= 10), "{seqs:?}");
    assert_eq!(sequencer.snapshots().prune(1).unwrap(), 2);
    assert_eq!(sequencer.snapshots().list().unwrap().len(), 1);
    // At least one is always kept.
    assert_eq!(sequencer.snapshots().prune(0).unwrap(), 0);
    assert_eq!(stored_seqs_of(&sequencer), vec![last]);
}

fn stored_seqs_of(sequencer: &Sequencer) -> Vec<u64> {
    sequencer.snapshots().list().unwrap().into_iter().map(|info| info.seq).collect()
}

#[test]
fn a_snapshot_past_the_journal_is_skipped_by_replay_and_deleted_by_recovery() {
    let dir = TempDir::new("snapshots", "ahead");
    let further = TempDir::new("snapshots", "ahead-further");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 0, 10)).unwrap();
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(40, 1));
    let kept = sequencer.snapshot().unwrap();
    run(&mut sequencer, trading(10, 41));
    let hash = sequencer.engine().state_hash();
    drop(sequencer);
    // The state of a longer history, stored as if this directory's journal had lost its tail.
    let (mut other, _) = Sequencer::open(&config(&further.0, 0, 10)).unwrap();
    run(&mut other, genesis());
    run(&mut other, trading(80, 1));
    let ahead = other.seq();
    drop(other);
    let engine = replay(&further.0, engine_config(), None, |_| {}).unwrap();
    SnapshotStore::open(&dir.0.join(SNAPSHOTS)).unwrap().save(&engine).unwrap();

    let tail = replay_from_snapshot(&dir.0, engine_config(), None, |_| {}).unwrap();
    assert_eq!(tail.snapshot_seq, Some(kept));
    let journal_seq = kept + 10;
    let expected =
        SkippedSnapshot { seq: ahead, defect: SnapshotDefect::AheadOfJournal { journal_seq } };
    assert_eq!(tail.skipped, vec![expected.clone()]);
    assert_eq!(tail.engine.state_hash(), hash);
    assert_eq!(stored_seqs(&dir.0), vec![kept, ahead], "replay changes nothing");

    let (sequencer, recovery) = Sequencer::open(&config(&dir.0, 0, 10)).unwrap();
    assert_eq!(recovery.snapshots_skipped, vec![expected]);
    assert_eq!(recovery.snapshot_seq, Some(kept));
    assert_eq!(sequencer.engine().state_hash(), hash);
    assert_eq!(stored_seqs_of(&sequencer), vec![kept], "recovery deletes it");
}

#[test]
fn the_loop_takes_snapshots_periodically_and_on_demand() {
    let dir = TempDir::new("snapshots", "loop");
    let (sequencer, _) = Sequencer::open(&config(&dir.0, 40, 10)).unwrap();
    let (mut input, consumer) = Ring::create_in_memory(256, RECORD_BYTES).unwrap().split();
    let loop_config =
        LoopConfig { batch_max: 16, pending_events_max: 1 << 12, ..LoopConfig::default() };
    let mut app = AppLoop::new(sequencer, consumer, None, loop_config);
    let mut commands = genesis();
    commands.extend(trading(90, 1));
    let total = commands.len() as u64;
    for body in commands {
        let record = encode_command(&Command { seq: 0, timestamp_ns: 0, body });
        input.try_push(&record).unwrap();
    }
    while app.stats().commands < total {
        app.do_work().unwrap();
    }
    // Periodic snapshots are captured at the end of a batch once due and stored by a writer
    // thread; while one is being written the next waits for a later batch, so only the first
    // seq is fixed.
    let periodic = app.stats().snapshots;
    assert!((1..=2).contains(&periodic), "{periodic} periodic snapshots");
    // A periodic snapshot may already have been taken at the last command; the one asked for
    // then replaces it under the same seq.
    let last_periodic_at_end = app.sequencer().snapshot_seq() == total;
    app.control().push(Control::Snapshot).unwrap();
    app.do_work().unwrap();
    assert_eq!(app.stats().snapshots, periodic + 1);
    assert_eq!(app.stats().durable_seq, total, "a snapshot flushes the journals first");
    let mut sequencer = app.into_sequencer();
    sequencer.finish_snapshots().unwrap();
    assert_eq!(sequencer.snapshot_seq(), total);
    let seqs = stored_seqs_of(&sequencer);
    assert_eq!(seqs.len() as u64, periodic + 1 - u64::from(last_periodic_at_end));
    assert_eq!((seqs[0], seqs[seqs.len() - 1]), (48, total));
    let periodic_seqs = &seqs[..seqs.len() - 1];
    assert!(periodic_seqs.windows(2).all(|pair| pair[1] >= pair[0] + 40), "{seqs:?}");
    // Each background snapshot restores to the state the replay reaches at its seq.
    for &seq in periodic_seqs {
        let store = sequencer.snapshots();
        let restored = store.load(seq, config(&dir.0, 0, 10).engine).unwrap();
        let engine_config = config(&dir.0, 0, 10).engine;
        let replayed = replay(&dir.0, engine_config, Some(seq), |_| {}).unwrap();
        assert_eq!(restored.state_hash(), replayed.state_hash(), "snapshot {seq}");
    }
    let hash = sequencer.engine().state_hash();
    drop(sequencer);
    let (sequencer, recovery) = Sequencer::open(&config(&dir.0, 40, 10)).unwrap();
    assert_eq!((recovery.snapshot_seq, recovery.commands_replayed), (Some(total), 0));
    assert_eq!(sequencer.engine().state_hash(), hash);
}
