//! Long random command streams against the engine alone, with the full invariant sweep
//! (`Engine::check_invariants`) after every command for the first stretch and periodically after
//! that, plus an outside check of conservation through the public getters: per asset, the
//! balances of all accounts plus the world's balance sum to zero.

mod workload;

use engine::{AccountId, AssetId, Engine, EngineConfig, Event};
use workload::{Market, Workload};

/// Commands per seed. Three seeds make 180,000 commands, a few seconds in the test profile.
const COMMANDS_PER_SEED: usize = 60_000;
/// Every command in this first stretch gets the full sweep; afterwards every `SWEEP_EVERY`-th.
const SWEEP_ALL_UNTIL: usize = 20_000;
const SWEEP_EVERY: usize = 97;

fn config() -> EngineConfig {
    EngineConfig {
        assets_max: 4,
        instruments_max: 4,
        accounts_max: 12,
        orders_max: 2_000,
        levels_max: 48,
        orders_per_account_max: 400,
        transactions_max: 100_000,
        fee_account: AccountId(0),
    }
}

/// Per asset, everything inside the exchange plus the world account is zero, read through the
/// public getters rather than the engine's own sweep.
fn assert_conserved(engine: &Engine) {
    let config = engine.config();
    for asset in (0..config.assets_max).map(AssetId) {
        let mut total = engine.world_balance(asset);
        for account in (0..config.accounts_max).map(AccountId) {
            let balance = engine.balance(account, asset);
            let inside = balance.available.0.checked_add(balance.held.0).unwrap();
            total = total.checked_add(i128::try_from(inside).unwrap()).unwrap();
        }
        assert_eq!(total, 0, "asset {asset} not conserved at seq {}", engine.seq());
    }
}

/// An account's held balance equals the holds of its live orders, read through the getters.
fn assert_holds_match_orders(engine: &Engine) {
    let config = engine.config();
    let mut held = vec![0u128; config.accounts_max as usize * usize::from(config.assets_max)];
    for order in engine.live_orders() {
        let spec = engine.instrument(order.instrument).unwrap();
        let asset = match order.side {
            engine::Side::Buy => spec.quote_asset,
            engine::Side::Sell => spec.base_asset,
        };
        held[order.account.0 as usize * usize::from(config.assets_max) + usize::from(asset.0)] +=
            order.hold.0;
    }
    for account in (0..config.accounts_max).map(AccountId) {
        for asset in (0..config.assets_max).map(AssetId) {
            let cell = account.0 as usize * usize::from(config.assets_max) + usize::from(asset.0);
            assert_eq!(engine.balance(account, asset).held.0, held[cell], "{account} {asset}");
        }
    }
}

fn run(seed: u64) {
    let mut engine = Engine::new(config());
    let mut workload = Workload::new(6, 3);
    let mut events: Vec<Event> = Vec::new();
    for command in workload.genesis() {
        events.clear();
        engine.handle(&command, &mut events);
    }
    let (mut trades, mut rests) = (0u64, 0u64);
    for (index, op) in workload::seeded_ops(seed, COMMANDS_PER_SEED).iter().enumerate() {
        let command = workload.resolve(op, &engine);
        events.clear();
        engine.handle(&command, &mut events);
        assert!(!events.is_empty() || matches_silent(&command.body), "{command:?} said nothing");
        trades += events.iter().filter(|e| matches!(e, Event::Trade { .. })).count() as u64;
        rests += events.iter().filter(|e| matches!(e, Event::OrderRested { .. })).count() as u64;
        if index < SWEEP_ALL_UNTIL || index % SWEEP_EVERY == 0 {
            engine.check_invariants();
            assert_conserved(&engine);
        }
        if index % 1_000 == 0 {
            assert_holds_match_orders(&engine);
        }
    }
    engine.check_invariants();
    assert_conserved(&engine);
    assert_holds_match_orders(&engine);
    // A stream that stopped trading (everything halted, all money gone) would test little.
    assert!(trades > 5_000 && rests > 10_000, "seed {seed}: {trades} trades, {rests} rests");
}

/// Only mass cancel and end of day may legitimately emit nothing: there was nothing to cancel.
fn matches_silent(body: &engine::CommandBody) -> bool {
    matches!(body, engine::CommandBody::MassCancel { .. } | engine::CommandBody::EndOfDay { .. })
}

#[test]
fn invariants_hold_over_long_streams_seed_1() {
    run(1);
}

#[test]
fn invariants_hold_over_long_streams_seed_2() {
    run(2);
}

#[test]
fn invariants_hold_over_long_streams_seed_3() {
    run(3);
}
