//! The journal against real files: round trip, rollover, a torn tail at every byte of the last
//! record, corruption before the tail, sequence order and each durability policy.

// Test data is built from small counters; truncating them is the intent.
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use testkit::{segment_files, TempDir};

use sequencer::journal::{
    read_all, scan_from, Durability, Journal, JournalConfig, JournalError, SeqOrder,
};

const PAYLOAD: usize = 128;
const FRAME: usize = 16 + PAYLOAD;
const FIRST_FRAME: usize = 64;

fn config(directory: &Path, segment_bytes: u64, durability: Durability) -> JournalConfig {
    JournalConfig {
        directory: directory.to_owned(),
        name: "commands".to_owned(),
        segment_bytes,
        order: SeqOrder::Strict,
        durability,
        truncate_corrupt: false,
        // Direct mappings of the disk files; the staged tests below say where they stage.
        staging: None,
        spares: 1,
    }
}

/// A group-commit configuration that stages segments in `stage_root` (a plain directory works
/// as well as tmpfs, only slower).
fn staged(
    directory: &Path,
    stage_root: &Path,
    segment_bytes: u64,
    group: Durability,
) -> JournalConfig {
    JournalConfig {
        staging: Some(stage_root.to_owned()),
        ..config(directory, segment_bytes, group)
    }
}

/// Group commit whose flusher never syncs on its own within a test: what is on disk is what
/// the test made so.
const LAZY: Durability =
    Durability::GroupCommit { interval: Duration::from_secs(3_600), records: u64::MAX };

/// A staged journal with records 1 to `last` appended and committed.
fn staged_with_records(
    directory: &Path,
    stage_root: &Path,
    segment_bytes: u64,
    last: u64,
) -> Journal {
    let (mut journal, _) =
        Journal::open(staged(directory, stage_root, segment_bytes, LAZY)).unwrap();
    for seq in 1..=last {
        journal.append(seq, &payload(seq)).unwrap();
    }
    journal.commit().unwrap();
    journal
}

/// The seqs of the frames in a segment file as it is on disk, read by hand: what the disk has
/// without the journal's help.
fn seqs_on_disk(segment: &Path) -> Vec<u64> {
    let bytes = std::fs::read(segment).unwrap();
    let mut seqs = Vec::new();
    let mut at = FIRST_FRAME;
    while at + 16 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if length == 0 {
            break;
        }
        seqs.push(u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()));
        at += 16 + length;
    }
    seqs
}

fn payload(seq: u64) -> [u8; PAYLOAD] {
    let mut bytes = [0u8; PAYLOAD];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = (seq as u8).wrapping_mul(31).wrapping_add(index as u8);
    }
    bytes
}

fn write(directory: &Path, segment_bytes: u64, seqs: std::ops::RangeInclusive<u64>) {
    let (mut journal, _) =
        Journal::open(config(directory, segment_bytes, Durability::PageCache)).unwrap();
    for seq in seqs {
        journal.append(seq, &payload(seq)).unwrap();
    }
    journal.commit().unwrap();
}

/// The seqs a [`scan_from`] of the whole journal from `from_seq` visits.
fn scanned(directory: &Path, from_seq: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    scan_from(directory, "commands", SeqOrder::Strict, from_seq, |seq, _| {
        seqs.push(seq);
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    seqs
}

fn read(directory: &Path) -> Vec<u64> {
    let mut seqs = Vec::new();
    read_all(directory, "commands", SeqOrder::Strict, |seq, bytes| {
        assert_eq!(bytes, &payload(seq)[..], "payload of {seq}");
        seqs.push(seq);
        Ok(())
    })
    .unwrap();
    seqs
}

#[test]
fn round_trip_and_reopen_continue_the_sequence() {
    let dir = TempDir::new("journal", "round-trip");
    write(&dir.0, 1 << 20, 1..=1_000);
    let (mut journal, report) =
        Journal::open(config(&dir.0, 1 << 20, Durability::PageCache)).unwrap();
    assert_eq!((report.records, report.last_seq, report.torn_tail), (1_000, Some(1_000), None));
    assert_eq!(journal.durable_seq(), 1_000);
    assert!(matches!(
        journal.append(1_002, &payload(1_002)),
        Err(JournalError::AppendOutOfOrder { previous: 1_000, seq: 1_002 })
    ));
    journal.append(1_001, &payload(1_001)).unwrap();
    journal.commit().unwrap();
    drop(journal);
    assert_eq!(read(&dir.0), (1..=1_001).collect::<Vec<_>>());
}

#[test]
fn segments_roll_over_and_read_back_in_order() {
    let dir = TempDir::new("journal", "rollover");
    // Room for 20 frames per segment: 1,000 records make 50 segments.
    let segment_bytes = (FIRST_FRAME + 20 * FRAME + 4) as u64;
    write(&dir.0, segment_bytes, 1..=1_000);
    assert_eq!(segment_files(&dir.0).len(), 50);
    write(&dir.0, segment_bytes, 1_001..=1_010);
    assert_eq!(read(&dir.0), (1..=1_010).collect::<Vec<_>>());
    let (_, report) = Journal::open(config(&dir.0, segment_bytes, Durability::PageCache)).unwrap();
    assert_eq!((report.segments, report.records), (51, 1_010));
}

#[test]
fn a_segment_can_be_started_early_and_superseded_segments_removed() {
    let dir = TempDir::new("journal", "remove");
    let segment_bytes = (FIRST_FRAME + 20 * FRAME + 4) as u64;
    let (mut journal, _) =
        Journal::open(config(&dir.0, segment_bytes, Durability::PageCache)).unwrap();
    // Nothing to roll over from yet.
    journal.roll_over_now().unwrap();
    assert_eq!(journal.segment_first_seq(), 1);
    for seq in 1..=5 {
        journal.append(seq, &payload(seq)).unwrap();
    }
    assert!(journal.fits(PAYLOAD));
    journal.roll_over_now().unwrap();
    journal.append(6, &payload(6)).unwrap();
    assert_eq!(journal.segment_first_seq(), 6);
    for seq in 7..=45 {
        journal.append(seq, &payload(seq)).unwrap();
    }
    // Segments start at 1, 6 and 26; the one being written is never removed.
    assert_eq!(segment_files(&dir.0).len(), 3);
    assert_eq!(journal.remove_segments_before(5).unwrap(), 0);
    // Detached, a segment is forgotten at once and its file deleted only when told.
    let detached = journal.detach_segments_before(6);
    assert_eq!(detached.len(), 1);
    assert_eq!(segment_files(&dir.0).len(), 3);
    assert!(journal.detach_segments_before(6).is_empty(), "the journal forgot it");
    detached.delete().unwrap();
    assert_eq!(segment_files(&dir.0).len(), 2);
    assert_eq!(journal.remove_segments_before(u64::MAX).unwrap(), 1);
    assert_eq!(segment_files(&dir.0).len(), 1);
    journal.commit().unwrap();
    drop(journal);
    assert_eq!(read(&dir.0), (26..=45).collect::<Vec<_>>());
    let (_, report) = Journal::open(config(&dir.0, segment_bytes, Durability::PageCache)).unwrap();
    assert_eq!((report.segments, report.last_seq), (1, Some(45)));
}

#[test]
fn a_scan_starts_at_its_seq_in_the_right_segment_and_stops_when_told() {
    let dir = TempDir::new("journal", "scan");
    let segment_bytes = (FIRST_FRAME + 20 * FRAME + 4) as u64;
    write(&dir.0, segment_bytes, 1..=100);
    let mut seen = Vec::new();
    scan_from(&dir.0, "commands", SeqOrder::Strict, 47, |seq, bytes| {
        assert_eq!(bytes, &payload(seq)[..]);
        seen.push(seq);
        if seq == 63 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(seen, (47..=63).collect::<Vec<_>>());
    assert_eq!(scanned(&dir.0, 0).len(), 100);
}

#[test]
fn a_last_segment_whose_header_never_reached_the_disk_is_dropped() {
    let dir = TempDir::new("journal", "blank-header");
    let segment_bytes = (FIRST_FRAME + 20 * FRAME + 4) as u64;
    write(&dir.0, segment_bytes, 1..=20);
    // A crash after a prepared segment was renamed into place but before its header was synced
    // leaves a last segment that is all zeros.
    let blank = dir.0.join("commands-00000000000000000021.journal");
    std::fs::write(&blank, vec![0u8; segment_bytes as usize]).unwrap();
    // Readers see it as empty too (a running node's newest segment looks the same for a moment
    // at every roll-over).
    assert_eq!(read(&dir.0), (1..=20).collect::<Vec<_>>());
    assert_eq!(scanned(&dir.0, 15), (15..=20).collect::<Vec<_>>());
    let (mut journal, report) =
        Journal::open(config(&dir.0, segment_bytes, Durability::PageCache)).unwrap();
    assert_eq!((report.segments, report.records, report.last_seq), (1, 20, Some(20)));
    assert!(!blank.exists(), "the blank segment is removed");
    for seq in 21..=45 {
        journal.append(seq, &payload(seq)).unwrap();
    }
    journal.flush().unwrap();
    drop(journal);
    assert_eq!(read(&dir.0), (1..=45).collect::<Vec<_>>());
    assert!(
        std::fs::read_dir(&dir.0).unwrap().all(|entry| {
            let path = entry.unwrap().path();
            path.extension().is_some_and(|extension| extension == "journal")
                || path.to_string_lossy().contains(".spare.")
        }),
        "only segments and the prepared spare are in the directory"
    );
}

#[test]
fn a_torn_last_record_is_truncated_at_every_byte_offset() {
    for written in 0..=FRAME {
        let dir = TempDir::new("journal", &format!("torn-{written}"));
        write(&dir.0, 1 << 16, 1..=4);
        // Keep only the first `written` bytes of the fourth frame, as a crash mid-append would.
        let path = &segment_files(&dir.0)[0];
        let mut bytes = std::fs::read(path).unwrap();
        let start = FIRST_FRAME + 3 * FRAME;
        bytes[start + written..start + FRAME].fill(0);
        std::fs::write(path, &bytes).unwrap();

        let (mut journal, report) =
            Journal::open(config(&dir.0, 1 << 16, Durability::PageCache)).unwrap();
        let intact = written == FRAME;
        assert_eq!(report.records, if intact { 4 } else { 3 }, "written {written}");
        assert_eq!(report.torn_tail.is_some(), !intact && written > 0, "written {written}");
        if let Some((_, offset, _)) = &report.torn_tail {
            assert_eq!(*offset, start as u64);
        }
        if !intact {
            journal.append(4, &payload(4)).unwrap();
            journal.commit().unwrap();
        }
        drop(journal);
        assert_eq!(read(&dir.0), vec![1, 2, 3, 4], "written {written}");
    }
}

#[test]
fn a_flipped_bit_before_the_tail_refuses_to_start_and_names_the_place() {
    let dir = TempDir::new("journal", "flipped");
    write(&dir.0, 1 << 16, 1..=10);
    let path = segment_files(&dir.0)[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let fifth = FIRST_FRAME + 4 * FRAME;
    bytes[fifth + 16 + 40] ^= 0x08;
    std::fs::write(&path, &bytes).unwrap();

    match Journal::open(config(&dir.0, 1 << 16, Durability::PageCache)) {
        Err(JournalError::Corrupt { path: reported, offset, reason }) => {
            assert_eq!(reported, path);
            assert_eq!(offset, fifth as u64);
            assert_eq!(reason, "checksum mismatch");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(
        read_all(&dir.0, "commands", SeqOrder::Strict, |_, _| Ok(())),
        Err(JournalError::Corrupt { .. })
    ));
    // The explicit option truncates there and says what it dropped.
    let truncating =
        JournalConfig { truncate_corrupt: true, ..config(&dir.0, 1 << 16, Durability::PageCache) };
    let (_, report) = Journal::open(truncating).unwrap();
    assert_eq!(report.records, 4);
    let (_, offset, dropped) = report.truncated_corruption.unwrap();
    assert_eq!(offset, fifth as u64);
    assert!(dropped >= (6 * FRAME) as u64);
    assert_eq!(read(&dir.0), vec![1, 2, 3, 4]);
}

#[test]
fn a_damaged_length_cannot_pass_for_a_torn_tail() {
    let dir = TempDir::new("journal", "length");
    write(&dir.0, 1 << 16, 1..=10);
    let path = segment_files(&dir.0)[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    // Stretch the eighth frame's length over the ninth and tenth: zeros follow the claimed end,
    // but valid frames hide inside it.
    let eighth = FIRST_FRAME + 7 * FRAME;
    bytes[eighth..eighth + 4].copy_from_slice(&(4 * PAYLOAD as u32).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Journal::open(config(&dir.0, 1 << 16, Durability::PageCache)),
        Err(JournalError::Corrupt { offset, .. }) if offset == eighth as u64
    ));
}

#[test]
fn a_damaged_segment_header_is_refused() {
    let dir = TempDir::new("journal", "header");
    write(&dir.0, 1 << 16, 1..=3);
    let path = segment_files(&dir.0)[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[17] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Journal::open(config(&dir.0, 1 << 16, Durability::PageCache)),
        Err(JournalError::BadSegment { reason: "header checksum mismatch", .. })
    ));
}

#[test]
fn durability_policies_move_the_watermark() {
    for durability in [Durability::PageCache, Durability::SyncEachCommit] {
        let dir = TempDir::new("journal", "policy");
        let (mut journal, _) = Journal::open(config(&dir.0, 1 << 16, durability)).unwrap();
        let watermark = journal.watermark();
        journal.append(1, &payload(1)).unwrap();
        assert_eq!(journal.durable_seq(), 0, "{durability:?}: nothing is durable before commit");
        assert_eq!(journal.commit().unwrap(), 1);
        assert_eq!(watermark.load(std::sync::atomic::Ordering::Acquire), 1);
    }
    let dir = TempDir::new("journal", "group");
    let group = Durability::GroupCommit { interval: Duration::from_secs(3_600), records: 3 };
    let (mut journal, _) = Journal::open(config(&dir.0, 1 << 16, group)).unwrap();
    for seq in 1..=2 {
        journal.append(seq, &payload(seq)).unwrap();
        assert_eq!(journal.commit().unwrap(), 0, "group not full yet");
    }
    journal.append(3, &payload(3)).unwrap();
    journal.commit().unwrap();
    // The third record fills the group and wakes the flusher, which syncs on its own thread.
    assert!(eventually(|| journal.durable_seq() == 3), "the third record fills the group");
    journal.append(4, &payload(4)).unwrap();
    journal.flush().unwrap();
    assert_eq!(journal.durable_seq(), 4, "an explicit flush makes everything durable");
    let quick = Durability::GroupCommit { interval: Duration::ZERO, records: 1_000 };
    let dir = TempDir::new("journal", "group-time");
    let (mut journal, _) = Journal::open(config(&dir.0, 1 << 16, quick)).unwrap();
    journal.append(1, &payload(1)).unwrap();
    journal.commit().unwrap();
    assert!(eventually(|| journal.durable_seq() == 1), "the interval bound flushes too");
}

/// Whether `condition` holds within a bound generous enough never to be reached on a working
/// machine: it bounds a failure, it measures nothing.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn durability_parses_from_text() {
    assert_eq!("page-cache".parse(), Ok(Durability::PageCache));
    assert_eq!("sync".parse(), Ok(Durability::SyncEachCommit));
    assert_eq!(
        "group-commit:200:64".parse(),
        Ok(Durability::GroupCommit { interval: Duration::from_micros(200), records: 64 })
    );
    assert!("group-commit:200:0".parse::<Durability>().is_err());
    assert!("fsync-sometimes".parse::<Durability>().unwrap_err().contains("unknown durability"));
}

#[test]
fn payloads_must_be_aligned_and_bounded() {
    let dir = TempDir::new("journal", "payload");
    let (mut journal, _) = Journal::open(config(&dir.0, 1 << 16, Durability::PageCache)).unwrap();
    assert!(matches!(journal.append(1, &[0; 12]), Err(JournalError::PayloadSize(12))));
    assert!(matches!(journal.append(1, &[]), Err(JournalError::PayloadSize(0))));
    journal.append(1, &[7; 8]).unwrap();
}

#[test]
fn the_event_journal_allows_repeated_sequence_numbers() {
    let dir = TempDir::new("journal", "events");
    let events = JournalConfig {
        name: "events".to_owned(),
        order: SeqOrder::NonDecreasing,
        ..config(&dir.0, 1 << 16, Durability::PageCache)
    };
    let (mut journal, _) = Journal::open(events.clone()).unwrap();
    for seq in [1, 1, 1, 3, 3, 4] {
        journal.append(seq, &payload(seq)).unwrap();
    }
    assert!(journal.append(2, &payload(2)).is_err());
    journal.commit().unwrap();
    drop(journal);
    let (_, report) = Journal::open(events).unwrap();
    assert_eq!((report.records, report.last_seq), (6, Some(4)));
    // A journal opened with the other order is refused by its header.
    assert!(matches!(
        read_all(&dir.0, "events", SeqOrder::Strict, |_, _| Ok(())),
        Err(JournalError::BadSegment { .. })
    ));
}

/// Minor page faults the calling thread has taken: field 10 of `/proc/thread-self/stat`,
/// counted after the command name, which is in parentheses and may hold spaces.
fn minor_faults(buffer: &mut String) -> u64 {
    use std::io::Read;
    buffer.clear();
    std::fs::File::open("/proc/thread-self/stat").unwrap().read_to_string(buffer).unwrap();
    let fields = &buffer[buffer.rfind(')').unwrap() + 2..];
    fields.split(' ').nth(7).unwrap().parse().unwrap()
}

#[test]
fn after_a_group_commit_sync_the_next_append_takes_no_page_fault() {
    // A sync cleans the page being filled and the kernel write-protects it; the flusher makes
    // it writable again right after, so the writer's next append does not fault. Without that,
    // every probe below faults. A probe may still fault for other reasons (the flusher not yet
    // scheduled, a stray fault), so several are tried.
    let dir = TempDir::new("journal", "rearm");
    let group = Durability::GroupCommit { interval: Duration::from_millis(1), records: 1 << 20 };
    let (mut journal, _) = Journal::open(config(&dir.0, 1 << 20, group)).unwrap();
    let mut buffer = String::with_capacity(4096);
    minor_faults(&mut buffer);
    let mut seq = 0;
    let mut faults = Vec::new();
    for _ in 0..20 {
        seq += 1;
        journal.append(seq, &payload(seq)).unwrap();
        journal.commit().unwrap();
        assert!(eventually(|| journal.durable_seq() == seq), "the flusher syncs");
        std::thread::sleep(Duration::from_millis(20));
        seq += 1;
        let probe = payload(seq);
        let before = minor_faults(&mut buffer);
        journal.append(seq, &probe).unwrap();
        let after = minor_faults(&mut buffer);
        if after == before {
            return;
        }
        faults.push(after - before);
        journal.commit().unwrap();
    }
    panic!("every append after a sync faulted: {faults:?}");
}

#[test]
fn records_survive_roll_overs_while_the_flusher_rearms_pages() {
    // The flusher prepares pages of the writer's mapping after every sync (one per commit
    // here) while the writer rolls over to a new segment every few dozen records: the mapping
    // it prepares changes under it, and every record must still read back intact, in order.
    // Staged, it also copies each segment to disk while the writer moves on.
    for stage in [false, true] {
        let dir = TempDir::new("journal", "rearm-roll-over");
        let eager = Durability::GroupCommit { interval: Duration::ZERO, records: 1 };
        let journal_config = if stage {
            staged(&dir.0, &dir.0.join("stage"), 4096, eager)
        } else {
            config(&dir.0, 4096, eager)
        };
        let (mut journal, _) = Journal::open(journal_config).unwrap();
        for seq in 1..=600 {
            journal.append(seq, &payload(seq)).unwrap();
            journal.commit().unwrap();
        }
        journal.flush().unwrap();
        drop(journal);
        assert_eq!(read(&dir.0), (1..=600).collect::<Vec<_>>(), "staged: {stage}");
        assert!(segment_files(&dir.0).len() > 20, "the writer rolled over many times");
        let on_disk: Vec<u64> =
            segment_files(&dir.0).iter().flat_map(|s| seqs_on_disk(s)).collect();
        assert_eq!(on_disk, (1..=600).collect::<Vec<_>>(), "staged: {stage}: the disk has all");
    }
}

#[test]
fn a_staged_journal_syncs_to_disk_and_readers_see_what_is_not_synced_yet() {
    let dir = TempDir::new("journal", "staged");
    let stage_root = dir.0.join("stage");
    let mut journal = staged_with_records(&dir.0, &stage_root, 1 << 16, 10);
    let segment = segment_files(&dir.0).pop().unwrap();
    // The writer appends to the staged copy; nothing reached the disk file yet, but readers
    // (replay, FIX resend) see every record.
    assert_eq!(seqs_on_disk(&segment), Vec::<u64>::new());
    assert_eq!(read(&dir.0), (1..=10).collect::<Vec<_>>());
    assert_eq!(scanned(&dir.0, 4), (4..=10).collect::<Vec<_>>());
    // A sync writes them to the disk file and moves the watermark.
    journal.flush().unwrap();
    assert_eq!(journal.durable_seq(), 10);
    assert_eq!(seqs_on_disk(&segment), (1..=10).collect::<Vec<_>>());
    // Closing copies what was appended since and leaves nothing staged behind.
    journal.append(11, &payload(11)).unwrap();
    journal.commit().unwrap();
    drop(journal);
    assert_eq!(seqs_on_disk(&segment), (1..=11).collect::<Vec<_>>());
    let left: Vec<_> =
        std::fs::read_dir(&stage_root).map_or(Vec::new(), |entries| entries.collect());
    assert!(left.is_empty(), "staged files left after a clean close: {left:?}");
}

#[test]
fn the_preparer_keeps_as_many_spares_as_asked_and_the_writer_takes_the_oldest() {
    let dir = TempDir::new("journal", "two-spares");
    let spare = |number: u64| dir.0.join(format!("commands.spare.{number}"));
    let two = JournalConfig { spares: 2, ..staged(&dir.0, &dir.0.join("stage"), 4096, LAZY) };
    let (mut journal, _) = Journal::open(two).unwrap();
    // A staged journal asks for spares at once; both are prepared before any roll-over.
    assert!(eventually(|| spare(0).exists() && spare(1).exists()), "two spares prepared");
    let mut seq = 0;
    while journal.segment_first_seq() == 1 {
        seq += 1;
        journal.append(seq, &payload(seq)).unwrap();
    }
    // The roll-over renamed the oldest spare into place; the other is still ready, so a second
    // roll-over needs no preparing either, and the preparer makes a third to replace the one
    // taken.
    assert!(!spare(0).exists(), "the oldest spare became the new segment");
    assert!(spare(1).exists(), "the second spare waits for the next roll-over");
    assert!(eventually(|| spare(2).exists()), "the spare taken is replaced");
    journal.commit().unwrap();
    drop(journal);
    assert_eq!(read(&dir.0), (1..=seq).collect::<Vec<_>>());
    let left: Vec<_> =
        std::fs::read_dir(dir.0.join("stage")).map_or(Vec::new(), |entries| entries.collect());
    assert!(left.is_empty(), "both spares' staged copies removed at a clean close: {left:?}");
}

#[test]
fn a_staged_spare_reaches_the_disk_through_the_flushers_sync_alone() {
    // The preparer neither writes nor syncs a staged spare's disk file. Once the writer has
    // renamed it into place, the flusher's sync must carry its header and records to the disk.
    let dir = TempDir::new("journal", "staged-spare");
    let (mut journal, _) = Journal::open(staged(&dir.0, &dir.0.join("stage"), 4096, LAZY)).unwrap();
    let spare = dir.0.join("commands.spare.0");
    assert!(eventually(|| spare.exists()), "a spare prepared");
    assert!(std::fs::read(&spare).unwrap().iter().all(|&byte| byte == 0), "nothing written");
    let mut seq = 0;
    while journal.segment_first_seq() == 1 {
        seq += 1;
        journal.append(seq, &payload(seq)).unwrap();
    }
    let first_in_spare = seq;
    for _ in 0..3 {
        seq += 1;
        journal.append(seq, &payload(seq)).unwrap();
    }
    journal.commit().unwrap();
    let in_place = segment_files(&dir.0).pop().unwrap();
    assert_eq!(seqs_on_disk(&in_place), Vec::<u64>::new(), "nothing on disk before a sync");
    journal.flush().unwrap();
    assert_eq!(journal.durable_seq(), seq);
    assert_eq!(seqs_on_disk(&in_place), (first_in_spare..=seq).collect::<Vec<_>>());
    // The disk files alone, without the staged copies, hold every record: the renamed spare's
    // header reached the disk too, or recovery would take it for a segment never started.
    let disk_only = dir.0.join("disk-only");
    std::fs::create_dir_all(&disk_only).unwrap();
    for segment in segment_files(&dir.0) {
        std::fs::copy(&segment, disk_only.join(segment.file_name().unwrap())).unwrap();
    }
    assert_eq!(read(&disk_only), (1..=seq).collect::<Vec<_>>());
    drop(journal);
}

#[test]
fn a_journal_opening_removes_staging_directories_whose_data_directory_is_gone() {
    let dir = TempDir::new("journal", "orphans");
    let root = dir.0.join("stage");
    let data = |name: &str| dir.0.join(name);
    let stage_of = |name: &str| {
        let text = std::fs::read_to_string(data(name).join("commands.staging")).unwrap();
        PathBuf::from(text.trim_end())
    };
    // Three journals that died with records staged (never closed): one whose data directory
    // is then deleted, one whose data directory stays, and one still open.
    let mut died = Vec::new();
    for name in ["deleted", "kept", "open"] {
        std::fs::create_dir_all(data(name)).unwrap();
        let mut journal = staged_with_records(&data(name), &root, 4096, 10);
        // The spare is ready, so the journal's preparer no longer writes in its directory.
        assert!(eventually(|| data(name).join("commands.spare.0").exists()));
        journal.commit().unwrap();
        died.push((name, journal));
    }
    let (deleted, kept) = (stage_of("deleted"), stage_of("kept"));
    let (_, open) = died.pop().unwrap();
    for (_, journal) in died {
        std::mem::forget(journal);
    }
    std::fs::remove_dir_all(data("deleted")).unwrap();
    assert!(deleted.exists() && kept.exists());
    // Another journal under the same root opens: only the orphan goes.
    std::fs::create_dir_all(data("new")).unwrap();
    let new = staged_with_records(&data("new"), &root, 4096, 1);
    assert!(!deleted.exists(), "the deleted data directory's staging directory is removed");
    assert!(kept.exists(), "a crashed journal's staged records wait for its next open");
    assert!(stage_of("open").exists(), "an open journal's staging directory is its own");
    drop((new, open));
    assert_eq!(read(&data("open")), (1..=10).collect::<Vec<_>>());
    let (_, report) = Journal::open(staged(&data("kept"), &root, 4096, LAZY)).unwrap();
    assert_eq!(report.last_seq, Some(10), "the kept journal recovers its staged records");
}

#[test]
fn records_staged_when_the_process_dies_are_recovered_at_the_next_open() {
    // A crash of the process: the journal is never closed and its flusher never syncs, so the
    // committed records exist only in the staged copy (tmpfs survives the process). The next
    // open writes them into the disk file before it recovers.
    let dir = TempDir::new("journal", "staged-crash");
    let stage_root = dir.0.join("stage");
    let lazy = LAZY;
    let (mut journal, _) = Journal::open(staged(&dir.0, &stage_root, 4096, lazy)).unwrap();
    for seq in 1..=100 {
        journal.append(seq, &payload(seq)).unwrap();
        journal.commit().unwrap();
    }
    assert!(segment_files(&dir.0).len() > 3, "several segments, the last ones not synced");
    // What a dead process leaves: no close, no final copy. (Its helper threads stay parked.)
    std::mem::forget(journal);
    let on_disk: Vec<u64> = segment_files(&dir.0).iter().flat_map(|s| seqs_on_disk(s)).collect();
    assert!(on_disk.len() < 100, "the test needs records that only the staged copies hold");
    let (mut journal, report) = Journal::open(staged(&dir.0, &stage_root, 4096, lazy)).unwrap();
    assert_eq!((report.records, report.last_seq), (100, Some(100)));
    let on_disk: Vec<u64> = segment_files(&dir.0).iter().flat_map(|s| seqs_on_disk(s)).collect();
    assert_eq!(on_disk, (1..=100).collect::<Vec<_>>(), "the disk files have every record");
    journal.append(101, &payload(101)).unwrap();
    journal.commit().unwrap();
    drop(journal);
    // Opened without staging, the journal takes in what the last run staged and stops staging.
    let direct = config(&dir.0, 4096, lazy);
    let (journal, report) = Journal::open(direct).unwrap();
    assert_eq!(report.last_seq, Some(101));
    drop(journal);
    assert_eq!(read(&dir.0), (1..=101).collect::<Vec<_>>());
    assert!(!dir.0.join("commands.staging").exists(), "the staging record is gone");
}

#[test]
fn appends_to_a_staged_segment_take_no_page_fault() {
    // A staged segment is faulted in whole when it is prepared (and tmpfs never writes a page
    // back), so the writer's appends fill pages without faulting: without that, each new page
    // of the log faulted on the writer's thread. Each attempt appends across several pages; a
    // stray fault for another reason is allowed by trying a few times.
    let dir = TempDir::new("journal", "staged-faults");
    let lazy = LAZY;
    let (mut journal, _) =
        Journal::open(staged(&dir.0, &dir.0.join("stage"), 1 << 20, lazy)).unwrap();
    let mut buffer = String::with_capacity(4096);
    minor_faults(&mut buffer);
    let mut seq = 0;
    let mut faults = Vec::new();
    for _ in 0..5 {
        let records: Vec<_> = (seq + 1..=seq + 100).map(|seq| (seq, payload(seq))).collect();
        let before = minor_faults(&mut buffer);
        for (seq, bytes) in &records {
            journal.append(*seq, bytes).unwrap();
        }
        let after = minor_faults(&mut buffer);
        seq += 100;
        if after == before {
            return;
        }
        faults.push(after - before);
    }
    panic!("appends across {} pages faulted: {faults:?}", 100 * FRAME / 4096);
}

#[test]
fn a_flush_without_a_commit_puts_every_record_on_disk() {
    // A flush ends a batch as a commit does (the loop flushes instead of committing at shutdown
    // and before a snapshot): what it reports durable must be in the disk file, across a
    // roll-over too.
    let dir = TempDir::new("journal", "staged-flush");
    let lazy = LAZY;
    let segment_bytes = (FIRST_FRAME + 20 * FRAME + 4) as u64;
    let (mut journal, _) =
        Journal::open(staged(&dir.0, &dir.0.join("stage"), segment_bytes, lazy)).unwrap();
    for seq in 1..=30 {
        journal.append(seq, &payload(seq)).unwrap();
    }
    journal.flush().unwrap();
    assert_eq!(journal.durable_seq(), 30);
    let on_disk: Vec<u64> = segment_files(&dir.0).iter().flat_map(|s| seqs_on_disk(s)).collect();
    assert_eq!(on_disk, (1..=30).collect::<Vec<_>>());
    std::mem::forget(journal);
}

#[test]
fn a_torn_record_in_a_staged_copy_is_cleared_and_the_records_before_it_kept() {
    // The process died inside an append: the staged copy ends in a partial frame. The next open
    // merges the copy into the disk file and then clears the torn frame as for any segment.
    let dir = TempDir::new("journal", "staged-torn");
    let stage_root = dir.0.join("stage");
    let journal = staged_with_records(&dir.0, &stage_root, 1 << 16, 10);
    std::mem::forget(journal);
    let stage_dir = std::fs::read_to_string(dir.0.join("commands.staging")).unwrap();
    let segment = segment_files(&dir.0).pop().unwrap();
    let staged_copy = Path::new(stage_dir.trim_end()).join(segment.file_name().unwrap());
    let mut bytes = std::fs::read(&staged_copy).unwrap();
    let torn_at = FIRST_FRAME + 10 * FRAME;
    bytes[torn_at..torn_at + 4].copy_from_slice(&(PAYLOAD as u32).to_le_bytes());
    bytes[torn_at + 16..torn_at + 40].fill(0xAB);
    std::fs::write(&staged_copy, &bytes).unwrap();
    let (journal, report) = Journal::open(staged(&dir.0, &stage_root, 1 << 16, LAZY)).unwrap();
    assert_eq!(report.last_seq, Some(10));
    let (_, offset, _) = report.torn_tail.expect("the torn frame is reported");
    assert_eq!(offset, torn_at as u64);
    drop(journal);
    assert_eq!(read(&dir.0), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs_on_disk(&segment), (1..=10).collect::<Vec<_>>());
}
