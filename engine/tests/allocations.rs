//! A warmed-up engine allocates nothing per command. A counting global allocator (this binary's
//! own, which is why this test has a file to itself) counts the allocations the test thread makes
//! while a measured window of commands runs, and the test asserts there were none. Commands are
//! generated before the window opens, and the event sink is reused, so anything counted is the
//! engine's own.

// `GlobalAlloc` is an unsafe trait; this binary's allocator only forwards to the system one.
#![allow(unsafe_code)]

mod workload;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use engine::{AccountId, Command, CountingSink, Engine, EngineConfig, Event};
use workload::Workload;

/// Forwards to the system allocator and counts, on threads that opted in, every allocation and
/// reallocation.
struct CountingAllocator;

thread_local! {
    // Const-initialised `Cell`s need no allocation and no destructor, so touching them inside
    // the allocator cannot recurse into it. Both are per thread, so tests running in parallel
    // never see each other's allocations.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only an atomic and a const thread-local.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const WARM_UP: usize = 30_000;
const MEASURED: usize = 60_000;
/// Commands whose allocations are recorded individually, for the failure message.
const CULPRITS_MAX: usize = 16;

fn config() -> EngineConfig {
    EngineConfig {
        assets_max: 4,
        instruments_max: 4,
        accounts_max: 12,
        orders_max: 4_096,
        levels_max: 128,
        orders_per_account_max: 1_000,
        transactions_max: 1 << 17,
        fee_account: AccountId(0),
    }
}

/// A realistic mixed stream (orders of every kind, cancels, amends, mass cancels, end of day,
/// halts and wallet traffic), resolved against a scratch engine so it can be replayed as data.
fn commands() -> Vec<Command> {
    let mut scratch = Engine::new(config());
    let mut workload = Workload::new(6, 3);
    let mut sink = Vec::new();
    let mut commands = workload.genesis();
    for command in &commands {
        scratch.handle(command, &mut sink);
    }
    for op in workload::seeded_ops(7, WARM_UP + MEASURED) {
        let command = workload.resolve(&op, &scratch);
        scratch.handle(&command, &mut sink);
        commands.push(command);
    }
    commands
}

/// Runs `measured` with counting on and returns the allocations per offending command index.
fn count_allocations(measured: &[Command], mut handle: impl FnMut(&Command)) -> Vec<(usize, u64)> {
    let mut culprits = [(0usize, 0u64); CULPRITS_MAX];
    let mut culprits_len = 0;
    let total_before = allocations();
    COUNTING.with(|counting| counting.set(true));
    for (index, command) in measured.iter().enumerate() {
        let before = allocations();
        handle(command);
        let made = allocations() - before;
        if made > 0 && culprits_len < CULPRITS_MAX {
            culprits[culprits_len] = (index, made);
            culprits_len += 1;
        }
    }
    COUNTING.with(|counting| counting.set(false));
    // Anything allocated between commands (by this loop itself) would show here and not above.
    let total = allocations() - total_before;
    let attributed: u64 = culprits[..culprits_len].iter().map(|&(_, made)| made).sum();
    assert!(culprits_len == CULPRITS_MAX || total == attributed, "{total} allocations in all");
    culprits[..culprits_len].to_vec()
}

fn assert_no_allocations(measured: &[Command], culprits: &[(usize, u64)]) {
    let described: Vec<String> = culprits
        .iter()
        .map(|&(index, made)| format!("{made} allocation(s) in {:?}", measured[index]))
        .collect();
    assert!(culprits.is_empty(), "the warmed-up engine allocated:\n{}", described.join("\n"));
}

#[test]
fn warmed_up_engine_allocates_nothing_with_a_reused_vec_sink() {
    let commands = commands();
    let (warm_up, measured) = commands.split_at(commands.len() - MEASURED);
    let mut engine = Engine::new(config());
    // A command emits at most a few events per live order (mass cancel, end of day) plus a
    // handful; room for four per order never has to grow.
    let mut sink: Vec<Event> = Vec::with_capacity(4 * config().orders_max as usize + 64);
    for command in warm_up {
        sink.clear();
        engine.handle(command, &mut sink);
    }
    let mut events = 0usize;
    let culprits = count_allocations(measured, |command| {
        sink.clear();
        engine.handle(command, &mut sink);
        events += sink.len();
    });
    assert_no_allocations(measured, &culprits);
    assert!(events > 100_000, "the measured window should be busy: {events} events");
    engine.check_invariants();
}

#[test]
fn warmed_up_engine_allocates_nothing_with_a_counting_sink() {
    let commands = commands();
    let (warm_up, measured) = commands.split_at(commands.len() - MEASURED);
    let mut engine = Engine::new(config());
    let mut sink = CountingSink::default();
    for command in warm_up {
        engine.handle(command, &mut sink);
    }
    let before = sink;
    let culprits = count_allocations(measured, |command| engine.handle(command, &mut sink));
    assert_no_allocations(measured, &culprits);
    assert!(sink.trades - before.trades > 3_000, "the window should trade: {sink:?}");
    engine.check_invariants();
}

#[test]
fn the_counter_counts() {
    // Guards the tests above against an allocator that silently counts nothing.
    let culprits = count_allocations(&commands()[..1], |_| {
        std::hint::black_box(Vec::<u64>::with_capacity(8));
    });
    assert_eq!(culprits, [(0, 1)]);
}
