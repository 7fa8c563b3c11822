//! The fast engine against the slow reference in `reference/`: random command streams go to
//! both, and every command must produce the same events in the same order, after which balances,
//! orders, books and reference prices must agree. The event order is part of the specification,
//! so comparing whole event vectors checks it too.

mod reference;
mod workload;

use engine::{
    AccountId, AssetId, Command, Engine, EngineConfig, Event, InstrumentId, InstrumentSpec,
    RejectReason, Side,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use reference::Reference;
use workload::{Market, Op, Workload};

/// Cases per proptest run unless `PROPTEST_CASES` says otherwise: enough to reach every reject
/// and every cancel reason many times while keeping the test profile's run near ten seconds.
const CASES_DEFAULT: u32 = 1_024;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES_DEFAULT)
}

/// Both sides of the comparison, fed in lockstep.
struct Pair {
    engine: Engine,
    model: Reference,
    workload: Workload,
    events: Vec<Event>,
}

impl Pair {
    fn new(config: EngineConfig, accounts: u32, instruments: u32) -> Pair {
        Pair::with_specs(config, accounts, instruments, workload::instrument_specs())
    }

    fn with_specs(
        config: EngineConfig,
        accounts: u32,
        instruments: u32,
        specs: [InstrumentSpec; 3],
    ) -> Pair {
        let mut pair = Pair {
            engine: Engine::new(config),
            model: Reference::new(config),
            workload: Workload::with_specs(accounts, instruments, specs),
            events: Vec::new(),
        };
        for command in pair.workload.genesis() {
            pair.step(&command).unwrap();
        }
        pair
    }

    fn op(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let command = self.workload.resolve(op, &self.model);
        self.step(&command)
    }

    fn step(&mut self, command: &Command) -> Result<(), TestCaseError> {
        self.events.clear();
        self.engine.handle(command, &mut self.events);
        let expected = self.model.handle(command);
        prop_assert_eq!(&self.events, &expected, "events differ for {:?}", command);
        self.engine.check_invariants();
        self.compare_state().map_err(|why| TestCaseError::fail(format!("after {command:?}: {why}")))
    }

    /// Everything observable through the engine's getters must match the model.
    fn compare_state(&self) -> Result<(), String> {
        let config = self.engine.config();
        for asset in (0..config.assets_max).map(AssetId) {
            let world = (self.engine.world_balance(asset), self.model.world_balance(asset));
            if world.0 != world.1 {
                return Err(format!("world balance of {asset}: {world:?}"));
            }
            for account in (0..config.accounts_max).map(AccountId) {
                let fast = self.engine.balance(account, asset);
                let slow = self.model.balance(account, asset);
                if (fast.available.0, fast.held.0) != slow {
                    return Err(format!("balance of {account} in {asset}: {fast:?} vs {slow:?}"));
                }
            }
        }
        let live = self.model.live_orders();
        let mut fast = self.engine.live_orders();
        fast.sort_unstable_by_key(|order| order.order_id);
        if live != fast {
            return Err(format!("live orders: {fast:?} vs {live:?}"));
        }
        for account in (0..config.accounts_max).map(AccountId) {
            let fast: Vec<_> = self.engine.account_orders(account).collect();
            if fast != self.model.account_orders(account) {
                return Err(format!("orders of {account} in a different order"));
            }
        }
        for instrument in (0..config.instruments_max).map(InstrumentId) {
            if self.engine.reference_price(instrument) != self.model.reference_price(instrument) {
                return Err(format!("reference price of {instrument}"));
            }
            if self.engine.is_halted(instrument) != self.model.is_halted(instrument) {
                return Err(format!("halt state of {instrument}"));
            }
            for side in [Side::Buy, Side::Sell] {
                let fast: Vec<_> = self.engine.levels(instrument, side).collect();
                let slow = self.model.levels(instrument, side);
                if fast != slow {
                    return Err(format!("{side:?} levels of {instrument}: {fast:?} vs {slow:?}"));
                }
                for &(price, _, _) in &fast {
                    let fast = self.engine.level_orders(instrument, side, price);
                    let slow: Vec<_> = self
                        .model
                        .book_side(instrument, side)
                        .into_iter()
                        .filter(|order| order.price == price)
                        .map(|order| order.id)
                        .collect();
                    if fast != slow {
                        return Err(format!("time priority at {price} on {instrument}"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Capacities small enough that order, per-account and level limits are hit regularly.
fn config() -> impl Strategy<Value = EngineConfig> {
    (1u32..40, 1u32..10, 1u32..7, 20u32..200).prop_map(|(orders, per_account, levels, txs)| {
        let mut config = workload::small_config(orders, per_account, levels);
        config.transactions_max = txs;
        config
    })
}

/// The default instruments with fees, bands and the quote multiplier varied, so that fee and
/// band rounding meet many different numbers. Tick and lot sizes stay, and the workload's prices
/// and quantities are built from them.
fn specs() -> impl Strategy<Value = [InstrumentSpec; 3]> {
    let variation =
        (0u16..=60, 0u16..=60, prop_oneof![Just(0u16), Just(300), 500u16..3_000], 1u64..=9);
    [variation.clone(), variation.clone(), variation].prop_map(|variations| {
        let mut specs = workload::instrument_specs();
        for (spec, (maker, taker, band, multiplier)) in specs.iter_mut().zip(variations) {
            spec.maker_fee_bps = maker;
            spec.taker_fee_bps = taker;
            spec.band_bps = band;
            spec.quote_per_tick_lot = multiplier;
        }
        specs
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_reference(
        config in config(),
        accounts in 3u32..=6,
        instruments in 2u32..=3,
        ops in prop::collection::vec(workload::op(), 1..600),
    ) {
        let mut pair = Pair::new(config, accounts, instruments);
        for op in &ops {
            pair.op(op)?;
        }
    }

    #[test]
    fn engine_matches_reference_with_varied_instruments(
        config in config(),
        specs in specs(),
        instruments in 2u32..=3,
        ops in prop::collection::vec(workload::op(), 1..400),
    ) {
        let mut pair = Pair::with_specs(config, 4, instruments, specs);
        for op in &ops {
            pair.op(op)?;
        }
    }
}

/// Long streams with roomier capacities, so books grow deep and many levels interact.
#[test]
fn engine_matches_reference_over_long_streams() {
    for seed in [1u64, 2, 3] {
        let mut config = workload::small_config(120, 30, 12);
        config.transactions_max = 20_000;
        let mut pair = Pair::new(config, 5, 3);
        for (index, op) in workload::seeded_ops(seed, 30_000).iter().enumerate() {
            if let Err(error) = pair.op(op) {
                panic!("seed {seed}, op {index} ({op:?}): {error}");
            }
        }
    }
}

/// The generator must reach every outcome the engine can produce from order and wallet
/// commands; otherwise the differential test silently stops covering it. Instrument and asset
/// administration rejects are left to the example-based tests.
#[test]
fn workload_reaches_every_outcome() {
    use engine::ALL_REJECT_REASONS;
    use std::collections::BTreeMap;
    let mut tally: BTreeMap<String, u64> = BTreeMap::new();
    // One cramped configuration for the capacity rejects, one roomy one for deep books.
    for (seed, (orders, per_account, levels, transactions)) in
        [(11u64, (10, 3, 3, 150)), (12, (60, 12, 8, 5_000))]
    {
        let mut config = workload::small_config(orders, per_account, levels);
        config.transactions_max = transactions;
        let mut pair = Pair::new(config, 4, 3);
        for op in workload::seeded_ops(seed, 6_000) {
            pair.op(&op).unwrap();
            for event in &pair.events {
                let key = match event {
                    Event::Rejected { reason, .. } => format!("Rejected::{reason:?}"),
                    Event::OrderCancelled { reason, .. } => format!("Cancelled::{reason:?}"),
                    Event::Ledger { kind, .. } => format!("Ledger::{kind:?}"),
                    Event::OrderAmended { priority_kept, .. } => {
                        format!("Amended::{priority_kept}")
                    }
                    other => format!("{other:?}").split([' ', '{', '(']).next().unwrap().to_owned(),
                };
                *tally.entry(key).or_default() += 1;
            }
        }
    }
    let administrative = [
        RejectReason::AssetExists,
        RejectReason::InstrumentExists,
        RejectReason::InvalidInstrument,
        RejectReason::InstrumentsCapacityReached,
        RejectReason::AssetsCapacityReached,
        RejectReason::BalanceOverflow,
    ];
    let mut expected: Vec<String> = ALL_REJECT_REASONS
        .iter()
        .filter(|reason| !administrative.contains(reason))
        .map(|reason| format!("Rejected::{reason:?}"))
        .collect();
    for cancel in ["Requested", "ImmediateRemainder", "FillOrKill", "SelfTrade", "Expired"] {
        expected.push(format!("Cancelled::{cancel}"));
    }
    expected.push("Cancelled::BudgetExhausted".to_owned());
    for other in ["Amended::true", "Amended::false", "Trade", "OrderRested", "TransactionDuplicate"]
    {
        expected.push(other.to_owned());
    }
    let missing: Vec<&String> = expected.iter().filter(|key| !tally.contains_key(*key)).collect();
    assert!(missing.is_empty(), "never produced: {missing:?}\n{tally:#?}");
    // Trading must be a large share of the stream, not a rare accident.
    assert!(tally["Trade"] > 1_000, "{tally:#?}");
}
