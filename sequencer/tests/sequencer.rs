//! The sequencer over real files: sequencing, recovery from the journals, repair of an event
//! journal that ended early, refusal of journals that disagree, and historical replay.

// Test data is built from small counters; truncating them is the intent.
#![allow(clippy::cast_possible_truncation)]

use std::path::Path;

use engine::{AccountId, AssetId, CommandBody};
use sequencer::journal::{Durability, Journal, JournalConfig, SeqOrder};
use sequencer::record::RECORD_BYTES;
use sequencer::sequencer::{
    events_durability, read_commands, read_events, replay, Sequencer, SequencerConfig,
    SequencerError, EVENTS_SYNC_INTERVAL,
};

mod common;

use common::{engine_config, genesis, trading, TempDir};

fn config(data_dir: &Path, segment_bytes: u64) -> SequencerConfig {
    SequencerConfig {
        data_dir: data_dir.to_owned(),
        engine: engine_config(),
        durability: Durability::PageCache,
        segment_bytes,
        truncate_corrupt: false,
        snapshot_every_commands: 0,
        snapshots_kept: 3,
    }
}

fn run(sequencer: &mut Sequencer, commands: Vec<CommandBody>) {
    for (index, body) in commands.into_iter().enumerate() {
        sequencer.submit(body, 1_000 + index as u64).unwrap();
        if index % 16 == 15 {
            sequencer.commit().unwrap();
        }
    }
    sequencer.commit().unwrap();
}

#[test]
fn reopening_recovers_the_same_state_and_continues() {
    let dir = TempDir::new("sequencer", "reopen");
    let (mut sequencer, recovery) = Sequencer::open(&config(&dir.0, 1 << 16)).unwrap();
    assert_eq!(recovery.commands_replayed, 0);
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(2_000, 1));
    let (seq, hash) = (sequencer.seq(), sequencer.engine().state_hash());
    drop(sequencer);

    let (mut sequencer, recovery) = Sequencer::open(&config(&dir.0, 1 << 16)).unwrap();
    assert_eq!(recovery.commands_replayed, seq);
    assert_eq!(recovery.events_appended, 0);
    assert_eq!((sequencer.seq(), sequencer.engine().state_hash()), (seq, hash));
    sequencer.engine().check_invariants();
    run(&mut sequencer, trading(500, 10_001));
    assert_eq!(sequencer.seq(), seq + 500);
    // Small segments roll over many times; nothing changes.
    let count = read_commands(&dir.0, |_| Ok(())).unwrap();
    assert_eq!(count, seq + 500);
}

#[test]
fn under_group_commit_the_event_journal_syncs_on_a_coarser_interval_of_its_own() {
    use std::time::Duration;
    let every = |interval, records| Durability::GroupCommit { interval, records };
    let events = every(EVENTS_SYNC_INTERVAL, u64::MAX);
    assert_eq!(events_durability(every(Duration::from_millis(1), 4096)), events);
    let slow = every(Duration::from_secs(1), 10);
    assert_eq!(events_durability(slow), every(Duration::from_secs(1), u64::MAX));
    assert_eq!(events_durability(Durability::PageCache), Durability::PageCache);
    assert_eq!(events_durability(Durability::SyncEachCommit), Durability::SyncEachCommit);

    // A command is durable once the command journal has synced it, without waiting for the
    // event journal; a clean stop syncs both, and a reopen finds every event.
    let dir = TempDir::new("sequencer", "group-commit");
    let config = SequencerConfig {
        durability: every(Duration::from_millis(1), 1),
        ..config(&dir.0, 1 << 20)
    };
    let (mut sequencer, _) = Sequencer::open(&config).unwrap();
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(200, 3));
    let last = sequencer.seq();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sequencer.commit().unwrap() < last {
        assert!(std::time::Instant::now() < deadline, "the command journal never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    let hash = sequencer.engine().state_hash();
    drop(sequencer);
    let mut events = 0;
    read_events(&dir.0, |_| {
        events += 1;
        Ok(())
    })
    .unwrap();
    let (reopened, recovery) = Sequencer::open(&config).unwrap();
    assert_eq!(recovery.events_appended, 0, "{events} events were all journaled");
    assert_eq!(reopened.engine().state_hash(), hash);
}

#[test]
fn an_event_journal_that_ended_early_is_completed_from_the_replay() {
    let dir = TempDir::new("sequencer", "events-tail");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 1 << 20)).unwrap();
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(300, 1));
    drop(sequencer);
    let mut before = Vec::new();
    read_events(&dir.0, |record| {
        before.push(record);
        Ok(())
    })
    .unwrap();
    // Cut the event journal in the middle of a command's events, as a crash between the two
    // appends would: zero the last 10 frames.
    let events_file = std::fs::read_dir(dir.0.join("journal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.file_name().unwrap().to_str().unwrap().starts_with("events-"))
        .unwrap();
    let mut bytes = std::fs::read(&events_file).unwrap();
    let frames = testkit::frame_offsets(&bytes);
    assert_eq!(frames.len(), before.len());
    bytes[frames[frames.len() - 10]..].fill(0);
    std::fs::write(&events_file, &bytes).unwrap();

    let (sequencer, recovery) = Sequencer::open(&config(&dir.0, 1 << 20)).unwrap();
    assert_eq!(recovery.events_appended, 10);
    drop(sequencer);
    let mut after = Vec::new();
    read_events(&dir.0, |record| {
        after.push(record);
        Ok(())
    })
    .unwrap();
    assert_eq!(after, before);
}

#[test]
fn journals_that_disagree_with_the_engine_are_refused() {
    let dir = TempDir::new("sequencer", "disagree");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 1 << 20)).unwrap();
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(50, 1));
    drop(sequencer);
    // Rewrite the event journal from a different history: same shape, other amounts.
    let other = TempDir::new("sequencer", "disagree-other");
    let (mut sequencer, _) = Sequencer::open(&config(&other.0, 1 << 20)).unwrap();
    run(&mut sequencer, genesis());
    run(&mut sequencer, trading(50, 100));
    drop(sequencer);
    let journal = dir.0.join("journal");
    for entry in std::fs::read_dir(&journal).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap().starts_with("events-") {
            std::fs::remove_file(path).unwrap();
        }
    }
    for entry in std::fs::read_dir(other.0.join("journal")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if name.to_str().unwrap().starts_with("events-") {
            std::fs::copy(&path, journal.join(name)).unwrap();
        }
    }
    assert!(matches!(
        Sequencer::open(&config(&dir.0, 1 << 20)),
        Err(SequencerError::EventMismatch { .. } | SequencerError::EventsAhead { .. })
    ));
}

#[test]
fn replay_to_a_past_seq_equals_the_state_at_that_seq() {
    let dir = TempDir::new("sequencer", "history");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 1 << 16)).unwrap();
    run(&mut sequencer, genesis());
    let mut checkpoints = Vec::new();
    for chunk in 0..5 {
        run(&mut sequencer, trading(200, 1 + chunk * 200));
        let balance = sequencer.engine().balance(AccountId(2), AssetId(1));
        checkpoints.push((sequencer.seq(), sequencer.engine().state_hash(), balance));
    }
    drop(sequencer);
    for (seq, hash, balance) in checkpoints {
        let engine = replay(&dir.0, engine_config(), Some(seq), |_| {}).unwrap();
        assert_eq!(engine.seq(), seq);
        assert_eq!(engine.state_hash(), hash);
        assert_eq!(engine.balance(AccountId(2), AssetId(1)), balance);
    }
}

#[test]
fn timestamps_never_run_backwards() {
    let dir = TempDir::new("sequencer", "time");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 1 << 16)).unwrap();
    let (first, _) =
        sequencer.submit(CommandBody::CreateAccount { account: AccountId(1) }, 500).unwrap();
    let (second, _) =
        sequencer.submit(CommandBody::CreateAccount { account: AccountId(2) }, 400).unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!((first.timestamp_ns, second.timestamp_ns), (500, 500));
}

#[test]
fn a_journal_record_longer_than_a_record_is_refused_by_name_and_seq() {
    let dir = TempDir::new("sequencer", "long-record");
    let (mut sequencer, _) = Sequencer::open(&config(&dir.0, 1 << 20)).unwrap();
    run(&mut sequencer, genesis());
    let last = sequencer.seq();
    drop(sequencer);
    // A frame whose checksum is right but whose payload cannot be a record: written through
    // the journal itself, as a bug in a writer (not a torn write) would leave it.
    let journal_config = JournalConfig {
        directory: dir.0.join("journal"),
        name: "commands".to_owned(),
        segment_bytes: 1 << 20,
        order: SeqOrder::Strict,
        durability: Durability::PageCache,
        truncate_corrupt: false,
        staging: None,
        spares: 1,
    };
    let (mut journal, _) = Journal::open(journal_config).unwrap();
    journal.append(last + 1, &[1; RECORD_BYTES + 8]).unwrap();
    journal.flush().unwrap();
    drop(journal);

    let mut read = 0;
    let error = read_commands(&dir.0, |_| {
        read += 1;
        Ok(())
    })
    .unwrap_err();
    assert_eq!(read, last, "every record before it is read");
    assert!(
        matches!(
            error,
            SequencerError::RecordSize { journal: "commands", seq, expected: RECORD_BYTES }
                if seq == last + 1
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("commands journal record {} is longer than {RECORD_BYTES} bytes", last + 1)
    );
    // The node refuses to start on it rather than skip a command.
    assert!(Sequencer::open(&config(&dir.0, 1 << 20)).is_err());
}
