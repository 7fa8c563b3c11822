//! Snapshots: a restored engine is indistinguishable from the original (same state hash, same
//! snapshot bytes, and the same events for every later command), restores fit any config that
//! can hold the state and refuse any that cannot, and corrupt or truncated bytes are refused
//! with an error, never a panic.

mod workload;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use engine::{
    AccountId, AssetId, Capacity, Command, Engine, EngineConfig, Event, InstrumentId, LegKind,
    Side, SnapshotError, SNAPSHOT_HEADER_LEN, SNAPSHOT_VERSION,
};
use proptest::prelude::*;
use workload::{Op, Workload};

const CASES_DEFAULT: u32 = 1_024;

/// Cases per proptest run unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES_DEFAULT)
}

fn config() -> EngineConfig {
    let mut config = workload::small_config(400, 80, 24);
    config.transactions_max = 20_000;
    config
}

/// Seeded ops reshaped to build deep books: the shared workload cancels and crosses so much
/// that books stay a few orders thin, which would leave time priority, account lists and level
/// ordering barely tested. Three limit orders in four are made passive (they rest a few ticks
/// behind the touch) and two cancels in three are dropped; the rest still trade.
fn ops(seed: u64, count: usize) -> Vec<Op> {
    let ops = workload::seeded_ops(seed, count).into_iter().enumerate();
    ops.filter_map(|(index, mut op)| match op {
        Op::Limit { ref mut offset, .. } if index % 4 != 0 => {
            *offset = -offset.saturating_abs().min(6) - 1;
            Some(op)
        }
        Op::Cancel { .. } | Op::MassCancel { .. } | Op::EndOfDay { .. } if index % 3 != 0 => None,
        op => Some(op),
    })
    .collect()
}

fn snapshot(engine: &Engine) -> Vec<u8> {
    let mut bytes = Vec::new();
    engine.write_snapshot(&mut bytes);
    bytes
}

/// An engine driven through genesis and seeded operations, with the workload that aimed them
/// and the number of wallet transactions it executed.
struct Driven {
    engine: Engine,
    workload: Workload,
    transactions: usize,
}

fn drive(config: EngineConfig, seed: u64, count: usize) -> Driven {
    let mut driven =
        Driven { engine: Engine::new(config), workload: Workload::new(5, 3), transactions: 0 };
    let mut events = Vec::new();
    for command in driven.workload.genesis() {
        driven.handle(&command, &mut events);
    }
    // Each op is aimed at the state the previous commands left.
    for op in ops(seed, count) {
        let command = driven.workload.resolve(&op, &driven.engine);
        driven.handle(&command, &mut events);
    }
    driven
}

impl Driven {
    fn handle(&mut self, command: &Command, events: &mut Vec<Event>) {
        events.clear();
        self.engine.handle(command, events);
        let wallet =
            |kind| matches!(kind, LegKind::Deposit | LegKind::Withdrawal | LegKind::Transfer);
        let executed = events
            .iter()
            .filter(|event| matches!(event, Event::Ledger { kind, .. } if wallet(*kind)));
        self.transactions += executed.count();
    }
}

#[test]
fn restored_engines_match_the_original_for_every_later_command() {
    const OPS: usize = 24_000;
    const EVERY: usize = 2_000;
    let mut engine = Engine::new(config());
    let mut workload = Workload::new(5, 3);
    let mut events = Vec::new();
    for command in workload.genesis() {
        engine.handle(&command, &mut events);
    }
    let mut restored: Vec<Engine> = Vec::new();
    let (mut trades, mut mass_cancels) = (0usize, 0usize);
    let stream = ops(11, OPS);
    for (index, op) in stream.iter().enumerate() {
        if index % EVERY == 0 {
            let bytes = snapshot(&engine);
            let copy = Engine::from_snapshot(config(), &bytes).unwrap();
            copy.check_invariants();
            assert_eq!(copy.state_hash(), engine.state_hash(), "hash after {index} ops");
            assert_eq!(snapshot(&copy), bytes, "a restored engine writes the same bytes");
            restored.push(copy);
        }
        let command = workload.resolve(op, &engine);
        events.clear();
        engine.handle(&command, &mut events);
        trades += events.iter().filter(|event| matches!(event, Event::Trade { .. })).count();
        let cancels = events.iter().filter(|e| matches!(e, Event::OrderCancelled { .. })).count();
        mass_cancels += usize::from(cancels > 1);
        for copy in &mut restored {
            let mut copy_events = Vec::new();
            copy.handle(&command, &mut copy_events);
            assert_eq!(copy_events, events, "events differ at seq {}", command.seq);
        }
    }
    engine.check_invariants();
    for copy in &restored {
        assert_eq!(copy.state_hash(), engine.state_hash());
        copy.check_invariants();
    }
    assert_eq!(restored.len(), stream.len().div_ceil(EVERY));
    // The stream must exercise what a restore could get wrong: fills against restored FIFO
    // queues and multi-order cancels walking restored account lists.
    assert!(trades > 2_000, "only {trades} trades");
    assert!(restored.len() >= 8);
    assert!(mass_cancels > 50, "only {mass_cancels} multi-order cancels");
}

#[test]
fn the_same_state_gives_the_same_bytes() {
    let first = drive(config(), 5, 3_000);
    let second = drive(config(), 5, 3_000);
    let bytes = snapshot(&first.engine);
    assert_eq!(bytes, snapshot(&second.engine));
    // Appending keeps what the buffer already held.
    let mut appended = b"prefix".to_vec();
    first.engine.write_snapshot(&mut appended);
    assert_eq!(&appended[..6], b"prefix");
    assert_eq!(&appended[6..], &bytes[..]);
    // A different state gives different bytes.
    let other = drive(config(), 6, 3_000);
    assert_ne!(bytes, snapshot(&other.engine));
}

#[test]
fn a_fresh_engine_round_trips() {
    let engine = Engine::new(config());
    let bytes = snapshot(&engine);
    let copy = Engine::from_snapshot(config(), &bytes).unwrap();
    assert_eq!(copy.state_hash(), engine.state_hash());
    assert_eq!(snapshot(&copy), bytes);
}

fn doubled(config: EngineConfig) -> EngineConfig {
    EngineConfig {
        assets_max: config.assets_max * 2,
        instruments_max: config.instruments_max * 2,
        accounts_max: config.accounts_max * 2,
        orders_max: config.orders_max * 2,
        levels_max: config.levels_max * 2,
        orders_per_account_max: config.orders_per_account_max * 2,
        transactions_max: config.transactions_max * 2,
        fee_account: config.fee_account,
    }
}

#[test]
fn restores_into_a_larger_config_and_back() {
    let mut driven = drive(config(), 21, 5_000);
    let original = &driven.engine;
    let larger = Engine::from_snapshot(doubled(config()), &snapshot(original)).unwrap();
    larger.check_invariants();
    assert_eq!(larger.seq(), original.seq());
    assert_eq!(larger.timestamp_ns(), original.timestamp_ns());
    for account in (0..config().accounts_max).map(AccountId) {
        assert_eq!(larger.account_exists(account), original.account_exists(account));
        let orders: Vec<_> = original.account_orders(account).collect();
        assert_eq!(larger.account_orders(account).collect::<Vec<_>>(), orders);
        for asset in (0..config().assets_max).map(AssetId) {
            assert_eq!(larger.balance(account, asset), original.balance(account, asset));
        }
    }
    for instrument in (0..config().instruments_max).map(InstrumentId) {
        assert_eq!(larger.instrument(instrument), original.instrument(instrument));
        assert_eq!(larger.reference_price(instrument), original.reference_price(instrument));
        for side in [Side::Buy, Side::Sell] {
            let levels: Vec<_> = original.levels(instrument, side).collect();
            assert_eq!(larger.levels(instrument, side).collect::<Vec<_>>(), levels);
        }
    }
    // Back into the original config: the same state, hash for hash, and the same future.
    let mut back = Engine::from_snapshot(config(), &snapshot(&larger)).unwrap();
    assert_eq!(back.state_hash(), original.state_hash());
    for op in ops(22, 2_000) {
        let command = driven.workload.resolve(&op, &driven.engine);
        let (mut expected, mut events) = (Vec::new(), Vec::new());
        driven.engine.handle(&command, &mut expected);
        back.handle(&command, &mut events);
        assert_eq!(events, expected);
    }
    assert_eq!(back.state_hash(), driven.engine.state_hash());
}

#[test]
fn refuses_a_config_too_small_for_the_state_and_accepts_the_exact_fit() {
    let driven = drive(config(), 31, 5_000);
    let engine = &driven.engine;
    let bytes = snapshot(engine);
    let accounts = (0..config().accounts_max).map(AccountId);
    let existing = accounts.clone().filter(|&account| engine.account_exists(account));
    let live_orders: u32 = accounts.clone().map(|account| engine.open_orders(account)).sum();
    let per_account = accounts.map(|account| engine.open_orders(account)).max().unwrap();
    let instruments = (0..3).map(InstrumentId);
    let sides = instruments.flat_map(|i| [Side::Buy, Side::Sell].map(|side| (i, side)));
    let depth = sides.map(|(i, side)| engine.levels(i, side).count()).max().unwrap();
    let needs = [
        (Capacity::Assets, 3),
        (Capacity::Instruments, 3),
        (Capacity::Accounts, u64::from(existing.map(|account| account.0).max().unwrap() + 1)),
        (Capacity::Orders, u64::from(live_orders)),
        (Capacity::Levels, depth as u64),
        (Capacity::OrdersPerAccount, u64::from(per_account)),
        (Capacity::Transactions, driven.transactions as u64),
    ];
    for (capacity, needed) in needs {
        assert!(needed > 1, "the workload should need more than one of {capacity}");
        let exact = with_capacity(config(), capacity, needed);
        let restored = Engine::from_snapshot(exact, &bytes).unwrap();
        restored.check_invariants();
        let small = with_capacity(config(), capacity, needed - 1);
        let error = Engine::from_snapshot(small, &bytes).unwrap_err();
        let expected = SnapshotError::ConfigTooSmall { capacity, needed, configured: needed - 1 };
        assert_eq!(error, expected, "{error}");
    }
    let mut other_fees = config();
    other_fees.fee_account = AccountId(1);
    assert_eq!(
        Engine::from_snapshot(other_fees, &bytes).unwrap_err(),
        SnapshotError::FeeAccountMismatch { snapshot: AccountId(0), configured: AccountId(1) }
    );
}

fn with_capacity(mut config: EngineConfig, capacity: Capacity, value: u64) -> EngineConfig {
    let narrow = u32::try_from(value).unwrap();
    match capacity {
        Capacity::Assets => config.assets_max = u16::try_from(value).unwrap(),
        Capacity::Instruments => config.instruments_max = narrow,
        Capacity::Accounts => config.accounts_max = narrow,
        Capacity::Orders => config.orders_max = narrow,
        Capacity::Levels => config.levels_max = narrow,
        Capacity::OrdersPerAccount => config.orders_per_account_max = narrow,
        Capacity::Transactions => config.transactions_max = narrow,
        _ => unreachable!("a capacity this test does not know"),
    }
    config
}

// ---------------------------------------------------------------------------------------------
// Corruption. The layout below is walked independently of the engine, from the grammar in the
// module documentation, so these tests also check that the documented layout is the real one.

const ASSET_LEN: usize = 2 + 1 + 16;
const BALANCE_LEN: usize = 32;
const INSTRUMENT_HEAD_LEN: usize = 70 + 1 + 8;
const LEVEL_HEAD_LEN: usize = 12;
const ORDER_LEN: usize = 8 + 4 + 5 + 8 * 3 + 16;
const TRANSACTION_LEN: usize = 16 + 1 + 4 + 4 + 2 + 16 + 8;

/// The offset of a level and of each of its orders.
type LevelAt = (usize, Vec<usize>);

/// Offsets of the parts of one snapshot.
#[derive(Debug, Default)]
struct Layout {
    accounts: Vec<usize>,
    /// Per instrument, per side (bids, asks), each level's offset and its orders' offsets.
    books: Vec<[Vec<LevelAt>; 2]>,
    transactions: Vec<usize>,
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap()))
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

fn layout(bytes: &[u8]) -> Layout {
    let mut layout = Layout::default();
    let assets_max = u16_at(bytes, 10);
    let mut at = SNAPSHOT_HEADER_LEN;
    at += 2 + u16_at(bytes, at) * ASSET_LEN;
    let (count, mut at) = (u32_at(bytes, at), at + 4);
    for _ in 0..count {
        layout.accounts.push(at);
        at += 4 + assets_max * BALANCE_LEN;
    }
    let (count, mut at) = (u32_at(bytes, at), at + 4);
    for _ in 0..count {
        at += INSTRUMENT_HEAD_LEN;
        let mut sides = [Vec::new(), Vec::new()];
        for side in &mut sides {
            let (levels, next) = (u32_at(bytes, at), at + 4);
            at = next;
            for _ in 0..levels {
                let (level, orders) = (at, u32_at(bytes, at + 8));
                at += LEVEL_HEAD_LEN;
                side.push((level, (0..orders).map(|index| at + index * ORDER_LEN).collect()));
                at += orders * ORDER_LEN;
            }
        }
        layout.books.push(sides);
    }
    let (count, mut at) = (u32_at(bytes, at), at + 4);
    for _ in 0..count {
        at += 8 + 8 * u32_at(bytes, at + 4);
    }
    let (count, mut at) = (u32_at(bytes, at), at + 4);
    for _ in 0..count {
        layout.transactions.push(at);
        at += TRANSACTION_LEN;
    }
    assert_eq!(at, bytes.len(), "the documented layout covers the snapshot exactly");
    layout
}

/// A state with deep books and many transactions, shared by the corruption tests.
fn corpus() -> &'static (Vec<u8>, Layout) {
    static CORPUS: OnceLock<(Vec<u8>, Layout)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut config = config();
        config.transactions_max = 1_000;
        let bytes = snapshot(&drive(config, 41, 1_500).engine);
        let layout = layout(&bytes);
        (bytes, layout)
    })
}

fn corpus_config() -> EngineConfig {
    let mut config = config();
    config.transactions_max = 1_000;
    config
}

fn restore_altered(alter: impl FnOnce(&mut Vec<u8>, &Layout)) -> SnapshotError {
    let (bytes, layout) = corpus();
    let mut bytes = bytes.clone();
    alter(&mut bytes, layout);
    Engine::from_snapshot(corpus_config(), &bytes).unwrap_err()
}

/// A side of some book with at least two levels, the first of which holds two orders or more.
fn deep_side(layout: &Layout) -> &Vec<LevelAt> {
    let sides = layout.books.iter().flat_map(|sides| sides.iter());
    sides.clone().find(|side| side.len() >= 2 && side[0].1.len() >= 2).unwrap()
}

#[test]
fn refuses_each_kind_of_corruption_with_its_error() {
    let (bytes, layout) = corpus();
    let restored = Engine::from_snapshot(corpus_config(), bytes).unwrap();
    assert_eq!(snapshot(&restored), *bytes);
    assert_eq!(restore_altered(|bytes, _| bytes[0] ^= 1), SnapshotError::BadMagic);
    let version = restore_altered(|bytes, _| bytes[8] = 2);
    let supported = SNAPSHOT_VERSION;
    assert_eq!(version, SnapshotError::UnsupportedVersion { found: 2, supported });
    let trailing = restore_altered(|bytes, _| bytes.push(0));
    assert_eq!(trailing, SnapshotError::TrailingBytes { count: 1 });
    let side = deep_side(layout);
    let (first, second) = (side[0].1[0], side[0].1[1]);
    let duplicate = restore_altered(|bytes, _| bytes.copy_within(first..first + 8, second));
    assert!(matches!(duplicate, SnapshotError::DuplicateOrderId(_)), "{duplicate}");
    let (level_a, level_b) = (side[0].0, side[1].0);
    let unsorted = restore_altered(|bytes, _| bytes.copy_within(level_a..level_a + 8, level_b));
    assert_eq!(unsorted, SnapshotError::Unsorted { what: "price level", offset: level_b });
    let enum_byte = restore_altered(|bytes, _| bytes[first + 12] = 9);
    let expected =
        SnapshotError::InvalidDiscriminant { field: "side", value: 9, offset: first + 12 };
    assert_eq!(enum_byte, expected);
    // An IOC order cannot rest.
    let cannot_rest = restore_altered(|bytes, _| bytes[first + 14] = 3);
    assert!(matches!(cannot_rest, SnapshotError::Invalid { offset, .. } if offset == first));
    let hold = restore_altered(|bytes, _| bytes[first + 41] ^= 1);
    let expected = SnapshotError::Invalid { what: "order hold", offset: first };
    assert_eq!(hold, expected);
    let account = restore_altered(|bytes, _| bytes[first + 8..first + 12].fill(0xEE));
    assert_eq!(account, SnapshotError::Invalid { what: "order account", offset: first });
    let transactions = &layout.transactions;
    let (tx_a, tx_b) = (transactions[0], transactions[1]);
    let duplicate = restore_altered(|bytes, _| bytes.copy_within(tx_a..tx_a + 16, tx_b));
    assert!(matches!(duplicate, SnapshotError::DuplicateTransactionId(_)), "{duplicate}");
    // An account id beyond the snapshot's own capacity is corruption, not a small config.
    let last = *layout.accounts.last().unwrap();
    let range = restore_altered(|bytes, _| bytes[last + 3] = 0x40);
    assert!(matches!(range, SnapshotError::OutOfRange { capacity: Capacity::Accounts, .. }));
    // One more unit of value in an account breaks conservation.
    let minted = restore_altered(|bytes, _| bytes[layout.accounts[1] + 4] ^= 1);
    assert_eq!(minted, SnapshotError::Inconsistent("an asset is not conserved"));
}

#[test]
fn refuses_a_crossed_book() {
    let (bytes, layout) = corpus();
    let engine = Engine::from_snapshot(corpus_config(), bytes).unwrap();
    // Move the best ask (and its orders, whose sell holds do not depend on price) onto the best
    // bid: every part decodes, but the book is crossed.
    let (instrument, sides) = layout
        .books
        .iter()
        .enumerate()
        .find(|(_, sides)| !sides[0].is_empty() && !sides[1].is_empty())
        .unwrap();
    let instrument = InstrumentId(u32::try_from(instrument).unwrap());
    let (bid, _) = engine.best_level(instrument, Side::Buy).unwrap();
    let crossed = restore_altered(|bytes, _| {
        let (level, orders) = &sides[1][0];
        for at in std::iter::once(*level).chain(orders.iter().map(|order| order + 17)) {
            bytes[at..at + 8].copy_from_slice(&bid.0.to_le_bytes());
        }
    });
    assert_eq!(crossed, SnapshotError::Inconsistent("book crossed"));
}

#[test]
fn every_truncation_is_refused_as_truncated() {
    let driven = drive(corpus_config(), 51, 400);
    let bytes = snapshot(&driven.engine);
    layout(&bytes);
    for len in 0..bytes.len() {
        match Engine::from_snapshot(corpus_config(), &bytes[..len]) {
            Err(SnapshotError::Truncated { offset, needed }) => {
                assert!(offset <= len && needed > 0, "len {len}");
            }
            other => panic!("truncated to {len} of {}: {other:?}", bytes.len()),
        }
    }
}

/// Restores possibly corrupt bytes; if that succeeds, the engine must pass the full invariant
/// sweep and keep handling commands. Nothing may panic.
fn restore_without_panic(bytes: &[u8]) -> bool {
    let restored = catch_unwind(|| Engine::from_snapshot(corpus_config(), bytes));
    let Ok(restored) = restored else { panic!("restore panicked") };
    let Ok(mut engine) = restored else { return false };
    let swept = catch_unwind(AssertUnwindSafe(|| engine.check_invariants()));
    assert!(swept.is_ok(), "a restored engine failed the invariant sweep");
    // Corruption can leave a valid header with an extreme sequence number or timestamp.
    if engine.seq() > u64::MAX / 2 {
        return true;
    }
    let mut workload = Workload::new(5, 3);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let mut events = Vec::new();
        for op in ops(61, 100) {
            let mut command = workload.resolve(&op, &engine);
            command.seq = engine.seq() + 1;
            command.timestamp_ns = engine.timestamp_ns();
            engine.handle(&command, &mut events);
            engine.check_invariants();
        }
    }));
    assert!(ran.is_ok(), "a restored engine panicked on later commands");
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn corrupt_bytes_are_refused_or_restore_a_valid_engine(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
        cut in prop::option::weighted(0.2, any::<prop::sample::Index>()),
    ) {
        let (bytes, _) = corpus();
        let mut bytes = bytes.clone();
        for (index, mask) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        restore_without_panic(&bytes);
    }

    #[test]
    fn header_and_count_corruption_is_refused_or_valid(
        at in 0usize..SNAPSHOT_HEADER_LEN + 64,
        mask in 1u8..=255,
    ) {
        let (bytes, _) = corpus();
        let mut bytes = bytes.clone();
        bytes[at] ^= mask;
        restore_without_panic(&bytes);
    }
}
