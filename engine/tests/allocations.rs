//! A warmed-up engine allocates nothing per command. Testkit's counting allocator, this
//! binary's global allocator (one per binary, which is why this test has a file to itself),
//! counts the allocations the test thread makes while a measured window of commands runs, and
//! the test asserts there were none. Commands are generated before the window opens, and the
//! event sink is reused, so anything counted is the engine's own.

mod workload;

use engine::{AccountId, Command, CountingSink, Engine, EngineConfig, Event};
use testkit::alloc::{allocations, counted, CountingAllocator};
use workload::Workload;

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
    let ((), total) = counted(|| {
        for (index, command) in measured.iter().enumerate() {
            let before = allocations();
            handle(command);
            let made = allocations() - before;
            if made > 0 && culprits_len < CULPRITS_MAX {
                culprits[culprits_len] = (index, made);
                culprits_len += 1;
            }
        }
    });
    // Anything allocated between commands (by this loop itself) would show here and not above.
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
