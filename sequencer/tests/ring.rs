//! Rings over real files: a cross-thread stress test, a second handle opening an existing ring,
//! and headers that must be refused. Nothing here depends on timing: waits are loops on ring
//! state with a yielding idle strategy.

use std::path::{Path, PathBuf};

use sequencer::ring::{
    IdleStrategy, Ring, RingError, RingFull, YieldIdle, HEADER_BYTES, MAGIC, VERSION,
};

/// A fresh path for one test, in `/dev/shm` when the machine has it.
fn ring_path(name: &str) -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() { shm } else { std::env::temp_dir() };
    let path = dir.join(format!("exchange-ring-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Removes the file when the test ends, pass or fail.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const STRESS_SLOT_BYTES: usize = 64;
const PAYLOAD_WORDS: usize = 6;

/// Record `index`: the index, six payload words derived from it, and the CRC32C of the payload.
fn stress_record(index: u64, out: &mut [u8]) {
    out[..8].copy_from_slice(&index.to_le_bytes());
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for word in 0..PAYLOAD_WORDS {
        state ^= state >> 29;
        state = state.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        out[8 + word * 8..16 + word * 8].copy_from_slice(&state.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[8..8 + PAYLOAD_WORDS * 8]);
    out[56..60].copy_from_slice(&crc.to_le_bytes());
    out[60..64].copy_from_slice(&(!crc).to_le_bytes());
}

/// The index of a record, after checking its checksum.
fn check_stress_record(record: &[u8]) -> u64 {
    assert_eq!(record.len(), STRESS_SLOT_BYTES);
    let crc = crc32c::crc32c(&record[8..8 + PAYLOAD_WORDS * 8]);
    assert_eq!(record[56..60], crc.to_le_bytes(), "payload checksum");
    assert_eq!(record[60..64], (!crc).to_le_bytes(), "checksum complement");
    let index = u64::from_le_bytes(record[..8].try_into().unwrap());
    let mut expected = [0u8; STRESS_SLOT_BYTES];
    stress_record(index, &mut expected);
    assert_eq!(record, expected, "record {index} differs from what was sent");
    index
}

/// Ten million records through a file ring between two threads, pushed one by one and in
/// claimed batches, polled under varying limits: the consumer must see each index exactly once,
/// in order, with an intact payload.
#[test]
fn records_cross_threads_without_loss_duplication_or_reordering() {
    const RECORDS: u64 = 10_000_000;
    let path = ring_path("stress");
    let _cleanup = Cleanup(path.clone());
    let (mut producer, mut consumer) =
        Ring::create(&path, 1024, STRESS_SLOT_BYTES).unwrap().split();
    let writer = std::thread::spawn(move || {
        let mut idle = YieldIdle;
        let mut record = [0u8; STRESS_SLOT_BYTES];
        let mut next = 0u64;
        let mut full = 0u64;
        while next < RECORDS {
            // Every eighth step claims a batch of 1..=16 records; the rest push one.
            let batch = if next % 8 == 0 { (next / 8 % 16 + 1).min(RECORDS - next) } else { 1 };
            let sent = if batch == 1 {
                stress_record(next, &mut record);
                producer.try_push(&record).map(|()| 1)
            } else {
                producer.try_claim(usize::try_from(batch).unwrap()).map(|mut claim| {
                    for (index, position) in (next..next + batch).enumerate() {
                        stress_record(position, claim.slot_mut(index));
                    }
                    claim.commit();
                    batch
                })
            };
            match sent {
                Ok(count) => next += count,
                Err(RingFull) => full += 1,
            }
            idle.idle(usize::from(sent.is_ok()));
        }
        full
    });
    let mut idle = YieldIdle;
    let mut expected = 0u64;
    let mut polls = 0usize;
    while expected < RECORDS {
        let limit = polls % 300 + 1;
        polls += 1;
        let count = consumer.poll(limit, |record| {
            assert_eq!(check_stress_record(record), expected, "lost, duplicated or reordered");
            expected += 1;
        });
        assert!(count <= limit);
        idle.idle(count);
    }
    let full = writer.join().unwrap();
    assert_eq!(consumer.poll(usize::MAX, |_| panic!("a record past the last")), 0);
    assert_eq!(consumer.position(), RECORDS);
    assert_eq!(consumer.depth(), 0);
    eprintln!("{RECORDS} records, {polls} polls, producer found the ring full {full} times");
}

#[test]
fn tiny_file_ring_wraps_many_times() {
    let path = ring_path("wrap");
    let _cleanup = Cleanup(path.clone());
    let (mut producer, mut consumer) = Ring::create(&path, 2, 8).unwrap().split();
    let mut received = 0u64;
    for sent in 0..1_000u64 {
        producer.try_push(&sent.to_le_bytes()).unwrap();
        if sent % 2 == 1 {
            assert_eq!(producer.try_push(&[0; 8]), Err(RingFull));
            let count = consumer.poll(8, |record| {
                assert_eq!(u64::from_le_bytes(record.try_into().unwrap()), received);
                received += 1;
            });
            assert_eq!(count, 2);
        }
    }
    assert_eq!(received, 1_000);
}

#[test]
fn full_ring_is_back_pressure_until_one_record_is_consumed() {
    let path = ring_path("full");
    let _cleanup = Cleanup(path.clone());
    let (mut producer, mut consumer) = Ring::create(&path, 16, 128).unwrap().split();
    let mut pushed = 0u8;
    while producer.try_push(&[pushed; 128]).is_ok() {
        pushed += 1;
    }
    assert_eq!(pushed, 16);
    assert_eq!(producer.depth(), 16);
    assert_eq!(consumer.depth(), 16);
    // A failed push changed nothing: still full, nothing extra to read.
    assert_eq!(producer.try_push(&[99; 128]), Err(RingFull));
    assert_eq!(producer.try_claim(1).unwrap_err(), RingFull);
    assert_eq!(consumer.poll(1, |record| assert_eq!(record, [0; 128])), 1);
    producer.try_push(&[16; 128]).unwrap();
    assert_eq!(producer.try_push(&[17; 128]), Err(RingFull));
    let mut seen = Vec::new();
    assert_eq!(consumer.poll(usize::MAX, |record| seen.push(record[0])), 16);
    assert_eq!(seen, (1..=16).collect::<Vec<u8>>());
}

#[test]
fn a_second_handle_reads_what_the_first_wrote() {
    let path = ring_path("open");
    let _cleanup = Cleanup(path.clone());
    let mut producer = Ring::create(&path, 8, 16).unwrap().into_producer();
    for value in 0..5u64 {
        producer.try_push(&[value.to_le_bytes(), (!value).to_le_bytes()].concat()).unwrap();
    }
    let opened = Ring::open(&path).unwrap();
    assert_eq!((opened.capacity(), opened.slot_size()), (8, 16));
    assert_eq!(opened.path(), Some(path.as_path()));
    let mut consumer = opened.into_consumer();
    assert_eq!(consumer.depth(), 5);
    let mut values = Vec::new();
    consumer.poll(3, |record| values.push(u64::from_le_bytes(record[..8].try_into().unwrap())));
    assert_eq!(values, [0, 1, 2]);
    // The first handle sees the slots the second released: 8 − 2 pending = 6 free.
    for value in 5..11u64 {
        producer.try_push(&[value.to_le_bytes(), (!value).to_le_bytes()].concat()).unwrap();
    }
    assert_eq!(producer.try_push(&[0; 16]), Err(RingFull));
    drop(producer);
    // Positions live in the file: a third handle continues where the others stopped.
    drop(consumer);
    let mut consumer = Ring::open(&path).unwrap().into_consumer();
    assert_eq!(consumer.position(), 3);
    consumer.poll(usize::MAX, |record| {
        let value = u64::from_le_bytes(record[..8].try_into().unwrap());
        assert_eq!(record[8..], (!value).to_le_bytes());
        values.push(value);
    });
    assert_eq!(values, (0..11).collect::<Vec<u64>>());
}

#[test]
fn create_replaces_an_existing_ring_without_disturbing_its_mappers() {
    let path = ring_path("replace");
    let _cleanup = Cleanup(path.clone());
    let (mut old_producer, mut old_consumer) = Ring::create(&path, 4, 8).unwrap().split();
    old_producer.try_push(&[1; 8]).unwrap();
    let (_new_producer, mut new_consumer) = Ring::create(&path, 8, 8).unwrap().split();
    assert_eq!(new_consumer.poll(10, |_| panic!("the new ring starts empty")), 0);
    old_producer.try_push(&[2; 8]).unwrap();
    assert_eq!(old_consumer.poll(10, |_| {}), 2);
    assert_eq!(Ring::open(&path).unwrap().capacity(), 8);
}

/// Writes `bytes` at `offset` of the ring file.
fn corrupt(path: &Path, offset: usize, bytes: &[u8]) {
    let mut contents = std::fs::read(path).unwrap();
    contents[offset..offset + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, contents).unwrap();
}

fn assert_bad_header(path: &Path, expected_words: &str) {
    match Ring::open(path) {
        Err(RingError::BadHeader { reason, .. }) => {
            assert!(reason.contains(expected_words), "reason {reason:?}");
        }
        other => panic!("expected a bad header ({expected_words}), got {other:?}"),
    }
}

#[test]
fn corrupted_headers_are_refused() {
    let path = ring_path("corrupt");
    let _cleanup = Cleanup(path.clone());
    let fresh = || drop(Ring::create(&path, 4, 8).unwrap());
    fresh();
    assert!(Ring::open(&path).is_ok());
    corrupt(&path, 0, &(MAGIC ^ 1).to_ne_bytes());
    assert_bad_header(&path, "magic");
    fresh();
    corrupt(&path, 8, &(VERSION + 1).to_ne_bytes());
    assert_bad_header(&path, "version");
    fresh();
    corrupt(&path, 12, &12u32.to_ne_bytes());
    assert_bad_header(&path, "slot size");
    fresh();
    corrupt(&path, 16, &3u64.to_ne_bytes());
    assert_bad_header(&path, "slots");
    fresh();
    corrupt(&path, 16, &8u64.to_ne_bytes());
    assert_bad_header(&path, "bytes");
    fresh();
    // Consumer ahead of producer.
    corrupt(&path, 256, &1u64.to_ne_bytes());
    assert_bad_header(&path, "positions");
    fresh();
    // More records pending than slots.
    corrupt(&path, 128, &5u64.to_ne_bytes());
    assert_bad_header(&path, "positions");
    fresh();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(HEADER_BYTES as u64 - 1).unwrap();
    assert_bad_header(&path, "shorter than the header");
    file.set_len(HEADER_BYTES as u64 + 40).unwrap();
    assert_bad_header(&path, "bytes");
}

#[test]
fn missing_files_and_bad_sizes_are_errors() {
    let path = ring_path("missing");
    assert!(matches!(Ring::open(&path), Err(RingError::Io { .. })));
    for (slots, slot_size) in [(0, 8), (3, 8), (1, 8), (4, 0), (4, 20), (4, 1 << 20)] {
        let result = Ring::create(&path, slots, slot_size);
        assert!(matches!(result, Err(RingError::BadSize(_))), "{slots} × {slot_size}");
    }
    assert!(!path.exists(), "a refused size creates no file");
}

#[test]
fn handles_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<sequencer::ring::RingProducer>();
    assert_send::<sequencer::ring::RingConsumer>();
    assert_send::<Ring>();
}
