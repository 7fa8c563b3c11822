//! Every order type, time in force, amend rule, self-trade mode, fee and hold case, each with the
//! exact events and balances it must produce. The harness checks every invariant after every
//! command.

mod harness;

use engine::{
    AccountId, Amount, Bucket, CancelReason, CommandBody, EngineConfig, Event, InstrumentId,
    LegKind, OrderId, Price, Quantity, RejectReason, SelfTradePrevention, Side, TimeInForce,
    TransactionId, ALL_REJECT_REASONS,
};
use harness::*;

const START_USD: u128 = 10_000_000;
const START_BTC: u128 = 1_000_000_000;

#[test]
fn resting_buy_holds_notional_plus_the_larger_fee() {
    let mut h = Harness::funded();
    let events = h.place(limit(1, ALICE, Side::Buy, 10_000, 10));
    // 10 lots × 10,000 ticks × 1 cent, plus 20 bps (the taker fee, the larger of the two).
    assert!(matches!(events[0], Event::OrderAccepted { .. }));
    assert!(matches!(
        events[1],
        Event::Ledger {
            kind: LegKind::OrderHold,
            amount: Amount(100_200),
            debit_bucket: Bucket::Available,
            credit_bucket: Bucket::Held,
            ..
        }
    ));
    assert_eq!(events[2], Event::OrderRested { order_id: OrderId(1) });
    assert_eq!(events.len(), 3);
    assert_eq!(h.available(ALICE, USD), START_USD - 100_200);
    assert_eq!(h.held(ALICE, USD), 100_200);
    let order = h.engine.order(OrderId(1)).unwrap();
    assert_eq!((order.leaves, order.hold), (Quantity(10), Amount(100_200)));
}

#[test]
fn resting_sell_holds_its_base_quantity() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_100, 7));
    assert_eq!(h.held(BOB, BTC), 7_000);
    assert_eq!(h.available(BOB, BTC), START_BTC - 7_000);
    assert_eq!(h.engine.best_level(BTC_USD, Side::Sell), Some((Price(10_100), Quantity(7))));
}

#[test]
fn taker_buy_fills_at_maker_price_pays_fees_and_releases_excess_hold() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 9_900, 10));
    let events = h.place(limit(2, ALICE, Side::Buy, 10_000, 4));
    assert_eq!(trades(&events), vec![(1, 2, 9_900, 4)]);
    // Notional 4 × 9,900 = 39,600; the taker buyer pays 20 bps (79), the maker seller 10 bps
    // (39). Alice held 40,080 at her limit and gets 401 back.
    let legs: Vec<(LegKind, u128)> = events
        .iter()
        .filter_map(|event| match event {
            Event::Ledger { kind, amount, .. } => Some((*kind, amount.0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        legs,
        vec![
            (LegKind::OrderHold, 40_080),
            (LegKind::TradeSettlement, 39_600),
            (LegKind::TradeSettlement, 4_000),
            (LegKind::Fee, 79),
            (LegKind::Fee, 39),
            (LegKind::OrderRelease, 401),
        ]
    );
    assert!(matches!(
        events.last(),
        Some(Event::Trade { maker_leaves: Quantity(6), taker_leaves: Quantity(0), .. })
    ));
    assert_eq!(h.available(ALICE, USD), START_USD - 39_679);
    assert_eq!(h.held(ALICE, USD), 0);
    assert_eq!(h.available(ALICE, BTC), START_BTC + 4_000);
    assert_eq!(h.available(BOB, USD), START_USD + 39_561);
    assert_eq!(h.held(BOB, BTC), 6_000);
    assert_eq!(h.available(FEES, USD), 118);
    assert!(h.engine.order(OrderId(2)).is_none(), "a filled order is no longer live");
    assert_eq!(h.engine.reference_price(BTC_USD), Some(Price(9_900)));
}

#[test]
fn maker_buy_pays_maker_fee_and_keeps_exactly_what_its_leaves_need() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 10_000, 10));
    let events = h.place(limit(2, BOB, Side::Sell, 9_000, 4));
    assert_eq!(trades(&events), vec![(1, 2, 10_000, 4)]);
    // Alice paid 40,000 + 40 (maker, 10 bps) from a 100,200 hold; six lots need 60,120.
    assert_eq!(h.held(ALICE, USD), 60_120);
    assert_eq!(h.available(ALICE, USD), START_USD - 100_200 + 40);
    assert_eq!(h.available(BOB, USD), START_USD + 40_000 - 80);
    assert_eq!(h.available(FEES, USD), 120);
}

#[test]
fn price_then_time_priority() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, CAROL, Side::Sell, 10_000, 5));
    h.place(limit(3, BOB, Side::Sell, 9_999, 1));
    let events = h.place(limit(10, ALICE, Side::Buy, 10_000, 7));
    assert_eq!(trades(&events), vec![(3, 10, 9_999, 1), (1, 10, 10_000, 5), (2, 10, 10_000, 1)]);
    assert_eq!(h.engine.level_orders(BTC_USD, Side::Sell, Price(10_000)), vec![OrderId(2)]);
    assert_eq!(h.engine.order(OrderId(2)).unwrap().leaves, Quantity(4));
}

#[test]
fn market_buy_spends_at_most_its_budget() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, BOB, Side::Sell, 10_100, 5));
    // Five lots at 10,000 cost 50,000 + 100 fee; the 9,900 left cannot buy a lot at 10,100
    // (10,120 with the fee).
    let events = h.place(market(3, ALICE, Side::Buy, 100, 60_000));
    assert_eq!(trades(&events), vec![(1, 3, 10_000, 5)]);
    assert_eq!(cancels(&events), vec![(3, 95, CancelReason::BudgetExhausted)]);
    assert_eq!(h.available(ALICE, USD), START_USD - 50_100);
    assert_eq!(h.held(ALICE, USD), 0);
    assert_eq!(h.engine.order(OrderId(2)).unwrap().leaves, Quantity(5));
}

#[test]
fn market_buy_that_fills_its_quantity_releases_the_unspent_budget() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    let events = h.place(market(2, ALICE, Side::Buy, 2, 1_000_000));
    assert_eq!(trades(&events), vec![(1, 2, 10_000, 2)]);
    assert!(cancels(&events).is_empty());
    assert_eq!(h.available(ALICE, USD), START_USD - 20_040);
    assert_eq!(h.held(ALICE, USD), 0);
}

#[test]
fn market_sell_sweeps_bids_within_the_band_and_cancels_the_rest() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Buy, 9_950, 3));
    h.place(limit(2, BOB, Side::Buy, 9_000, 1));
    let events = h.place(market(3, ALICE, Side::Sell, 10, 0));
    assert_eq!(trades(&events), vec![(1, 3, 9_950, 3), (2, 3, 9_000, 1)]);
    assert_eq!(cancels(&events), vec![(3, 6, CancelReason::ImmediateRemainder)]);
    assert_eq!(h.held(ALICE, BTC), 0);
    assert_eq!(h.available(ALICE, BTC), START_BTC - 4_000);
}

#[test]
fn market_sell_stops_at_the_band_edge() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Buy, 9_500, 1));
    // A trade at 9,500 moves the band to [8,550, 10,450].
    h.place(limit(2, CAROL, Side::Sell, 9_500, 1));
    h.place(limit(3, BOB, Side::Buy, 9_000, 1));
    h.place(limit(4, BOB, Side::Buy, 8_600, 1));
    let events = h.place(market(5, ALICE, Side::Sell, 3, 0));
    assert_eq!(trades(&events), vec![(3, 5, 9_000, 1), (4, 5, 8_600, 1)]);
    assert_eq!(cancels(&events), vec![(5, 1, CancelReason::ImmediateRemainder)]);
}

#[test]
fn market_order_rules() {
    let mut h = Harness::funded();
    let gtc_market = with_tif(market(1, ALICE, Side::Sell, 1, 0), TimeInForce::Gtc);
    assert_eq!(rejected(&h.place(gtc_market)), Some(RejectReason::InvalidTimeInForce));
    assert_eq!(
        rejected(&h.place(market(2, ALICE, Side::Buy, 1, 0))),
        Some(RejectReason::MarketBuyNeedsBudget)
    );
    let mut budgeted_limit = limit(3, ALICE, Side::Buy, 10_000, 1);
    budgeted_limit.quote_budget = Amount(5);
    assert_eq!(rejected(&h.place(budgeted_limit)), Some(RejectReason::UnexpectedBudget));
    let budget_over_balance = market(4, ALICE, Side::Buy, 1, START_USD + 1);
    assert_eq!(rejected(&h.place(budget_over_balance)), Some(RejectReason::InsufficientFunds));
    // A market order into an empty book cancels at once and releases everything.
    let events = h.place(market(5, ALICE, Side::Buy, 1, 50_000));
    assert_eq!(cancels(&events), vec![(5, 1, CancelReason::ImmediateRemainder)]);
    assert_eq!(h.held(ALICE, USD), 0);
}

#[test]
fn ioc_trades_what_it_can_and_cancels_the_rest() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 3));
    let events = h.place(with_tif(limit(2, ALICE, Side::Buy, 10_000, 5), TimeInForce::Ioc));
    assert_eq!(trades(&events), vec![(1, 2, 10_000, 3)]);
    assert_eq!(cancels(&events), vec![(2, 2, CancelReason::ImmediateRemainder)]);
    assert_eq!(h.held(ALICE, USD), 0);
    assert_eq!(h.engine.best_level(BTC_USD, Side::Buy), None);
}

#[test]
fn fok_fills_entirely_or_not_at_all() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 3));
    let before = h.engine.balance(ALICE, USD);
    let events = h.place(with_tif(limit(2, ALICE, Side::Buy, 10_000, 5), TimeInForce::Fok));
    assert!(trades(&events).is_empty());
    assert_eq!(cancels(&events), vec![(2, 5, CancelReason::FillOrKill)]);
    assert_eq!(h.engine.balance(ALICE, USD), before);
    assert_eq!(h.engine.order(OrderId(1)).unwrap().leaves, Quantity(3));
    let events = h.place(with_tif(limit(3, ALICE, Side::Buy, 10_000, 3), TimeInForce::Fok));
    assert_eq!(trades(&events), vec![(1, 3, 10_000, 3)]);
    assert!(cancels(&events).is_empty());
}

#[test]
fn fok_counts_liquidity_as_self_trade_prevention_would_leave_it() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Sell, 10_000, 3));
    h.place(limit(2, BOB, Side::Sell, 10_000, 3));
    let mut fok = with_tif(limit(3, ALICE, Side::Buy, 10_000, 4), TimeInForce::Fok);
    fok.self_trade_prevention = SelfTradePrevention::CancelResting;
    // Alice's own three lots would be cancelled, not traded: only Bob's three count.
    let events = h.place(fok);
    assert_eq!(cancels(&events), vec![(3, 4, CancelReason::FillOrKill)]);
    assert!(h.engine.order(OrderId(1)).is_some(), "a killed FOK changes nothing");
}

#[test]
fn post_only_rests_or_is_rejected() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 3));
    let mut taking = limit(2, ALICE, Side::Buy, 10_000, 1);
    taking.post_only = true;
    assert_eq!(rejected(&h.place(taking)), Some(RejectReason::PostOnlyWouldTake));
    let mut passive = limit(3, ALICE, Side::Buy, 9_999, 1);
    passive.post_only = true;
    let events = h.place(passive);
    assert_eq!(events.last(), Some(&Event::OrderRested { order_id: OrderId(3) }));
    // Amending a post-only order across the spread is refused too.
    assert_eq!(rejected(&h.amend(3, ALICE, 10_000, 1)), Some(RejectReason::PostOnlyWouldTake));
}

#[test]
fn cancel_releases_the_hold_and_hides_other_accounts_orders() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 10_000, 10));
    assert_eq!(rejected(&h.cancel(1, BOB)), Some(RejectReason::UnknownOrder));
    assert_eq!(rejected(&h.cancel(99, ALICE)), Some(RejectReason::UnknownOrder));
    let events = h.cancel(1, ALICE);
    assert_eq!(cancels(&events), vec![(1, 10, CancelReason::Requested)]);
    assert_eq!(h.available(ALICE, USD), START_USD);
    assert_eq!(h.held(ALICE, USD), 0);
    assert_eq!(rejected(&h.cancel(1, ALICE)), Some(RejectReason::UnknownOrder));
}

#[test]
fn amend_quantity_down_keeps_priority() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, CAROL, Side::Sell, 10_000, 5));
    let events = h.amend(1, BOB, 10_000, 3);
    assert!(matches!(
        events[0],
        Event::OrderAmended { priority_kept: true, leaves: Quantity(3), .. }
    ));
    assert_eq!(
        h.engine.level_orders(BTC_USD, Side::Sell, Price(10_000)),
        vec![OrderId(1), OrderId(2)]
    );
    assert_eq!(h.held(BOB, BTC), 3_000);
    assert_eq!(h.engine.best_level(BTC_USD, Side::Sell), Some((Price(10_000), Quantity(8))));
}

#[test]
fn amend_quantity_up_loses_priority() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, CAROL, Side::Sell, 10_000, 5));
    let events = h.amend(1, BOB, 10_000, 8);
    assert!(matches!(events[0], Event::OrderAmended { priority_kept: false, .. }));
    assert_eq!(
        h.engine.level_orders(BTC_USD, Side::Sell, Price(10_000)),
        vec![OrderId(2), OrderId(1)]
    );
    assert_eq!(h.held(BOB, BTC), 8_000);
}

#[test]
fn amend_price_loses_priority_and_may_trade_as_taker() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, CAROL, Side::Sell, 9_999, 5));
    h.amend(1, BOB, 9_999, 5);
    assert_eq!(
        h.engine.level_orders(BTC_USD, Side::Sell, Price(9_999)),
        vec![OrderId(2), OrderId(1)]
    );
    h.place(limit(3, ALICE, Side::Buy, 9_990, 2));
    let events = h.amend(2, CAROL, 9_990, 5);
    // Carol's sell moved down onto Alice's bid: Alice is the maker, at her price.
    assert_eq!(trades(&events), vec![(3, 2, 9_990, 2)]);
    assert_eq!(events.last(), Some(&Event::OrderRested { order_id: OrderId(2) }));
    assert_eq!(h.engine.order(OrderId(2)).unwrap().leaves, Quantity(3));
}

#[test]
fn amend_buy_price_adjusts_the_hold() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 10_000, 10));
    h.amend(1, ALICE, 9_000, 10);
    assert_eq!(h.held(ALICE, USD), 90_180);
    h.amend(1, ALICE, 10_500, 10);
    assert_eq!(h.held(ALICE, USD), 105_210);
    assert_eq!(h.available(ALICE, USD), START_USD - 105_210);
}

#[test]
fn amend_rules_after_a_partial_fill() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, ALICE, Side::Buy, 10_000, 2));
    // Two of five lots are filled: the new total must exceed two.
    assert_eq!(
        rejected(&h.amend(1, BOB, 10_000, 2)),
        Some(RejectReason::AmendQuantityNotAboveFilled)
    );
    assert_eq!(rejected(&h.amend(1, BOB, 10_000, 5)), Some(RejectReason::AmendNoChange));
    let events = h.amend(1, BOB, 10_000, 4);
    assert!(matches!(
        events[0],
        Event::OrderAmended { leaves: Quantity(2), priority_kept: true, .. }
    ));
    assert_eq!(h.held(BOB, BTC), 2_000);
    assert_eq!(rejected(&h.amend(1, ALICE, 10_000, 3)), Some(RejectReason::UnknownOrder));
}

#[test]
fn amend_without_funds_is_rejected_and_changes_nothing() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 10_000, 10));
    let rest = h.available(ALICE, USD);
    h.ok(CommandBody::Withdraw {
        transaction_id: TransactionId(7),
        account: ALICE,
        asset: USD,
        amount: Amount(rest - 10),
    });
    assert_eq!(rejected(&h.amend(1, ALICE, 10_000, 11)), Some(RejectReason::InsufficientFunds));
    let order = h.engine.order(OrderId(1)).unwrap();
    assert_eq!((order.quantity, order.price), (Quantity(10), Price(10_000)));
    assert_eq!(h.held(ALICE, USD), 100_200);
}

#[test]
fn mass_cancel_by_account_instrument_or_both() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 9_000, 1));
    h.place(limit(2, BOB, Side::Buy, 9_001, 1));
    h.place(limit(3, ALICE, Side::Sell, 11_000, 1));
    let events = h.run(CommandBody::MassCancel { account: Some(ALICE), instrument: Some(BTC_USD) });
    assert_eq!(
        cancels(&events),
        vec![(1, 1, CancelReason::Requested), (3, 1, CancelReason::Requested)]
    );
    assert_eq!(h.engine.open_orders(ALICE), 0);
    assert_eq!(h.engine.open_orders(BOB), 1);
    let unknown = CommandBody::MassCancel { account: Some(AccountId(7)), instrument: None };
    assert_eq!(rejected(&h.run(unknown)), Some(RejectReason::UnknownAccount));
    let unknown = CommandBody::MassCancel { account: None, instrument: Some(InstrumentId(3)) };
    assert_eq!(rejected(&h.run(unknown)), Some(RejectReason::UnknownInstrument));
    h.place(limit(4, CAROL, Side::Sell, 10_500, 1));
    let events = h.run(CommandBody::MassCancel { account: None, instrument: Some(BTC_USD) });
    assert_eq!(cancels(&events).len(), 2);
    assert_eq!(h.engine.levels(BTC_USD, Side::Buy).count(), 0);
    assert_eq!(h.held(BOB, USD) + h.held(CAROL, BTC), 0);
}

fn self_trade_setup(mode: SelfTradePrevention) -> (Harness, Vec<Event>) {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    h.place(limit(2, CAROL, Side::Sell, 10_000, 5));
    let mut incoming = limit(3, BOB, Side::Buy, 10_000, 7);
    incoming.self_trade_prevention = mode;
    let events = h.place(incoming);
    (h, events)
}

#[test]
fn self_trade_cancel_resting() {
    let (h, events) = self_trade_setup(SelfTradePrevention::CancelResting);
    assert_eq!(cancels(&events), vec![(1, 5, CancelReason::SelfTrade)]);
    assert_eq!(trades(&events), vec![(2, 3, 10_000, 5)]);
    assert_eq!(events.last(), Some(&Event::OrderRested { order_id: OrderId(3) }));
    assert_eq!(h.engine.order(OrderId(3)).unwrap().leaves, Quantity(2));
}

#[test]
fn self_trade_cancel_incoming() {
    let (h, events) = self_trade_setup(SelfTradePrevention::CancelIncoming);
    assert!(trades(&events).is_empty());
    assert_eq!(cancels(&events), vec![(3, 7, CancelReason::SelfTrade)]);
    assert!(h.engine.order(OrderId(1)).is_some());
    assert_eq!(h.held(BOB, USD), 0);
}

#[test]
fn self_trade_cancel_both() {
    let (h, events) = self_trade_setup(SelfTradePrevention::CancelBoth);
    assert!(trades(&events).is_empty());
    assert_eq!(
        cancels(&events),
        vec![(1, 5, CancelReason::SelfTrade), (3, 7, CancelReason::SelfTrade)]
    );
    assert!(h.engine.order(OrderId(1)).is_none());
    assert!(h.engine.order(OrderId(2)).is_some());
}

#[test]
fn self_trade_allowed_settles_as_a_wash_minus_fees() {
    let (h, events) = self_trade_setup(SelfTradePrevention::None);
    assert_eq!(trades(&events), vec![(1, 3, 10_000, 5), (2, 3, 10_000, 2)]);
    // Bob bought 5 lots from himself and 2 from Carol: he paid fees on both sides of his own.
    let own_fees = 100 + 50;
    let carol_trade = 20_000 + 40;
    assert_eq!(h.available(BOB, USD), START_USD - own_fees - carol_trade);
}

#[test]
fn end_of_day_expires_day_orders_only() {
    let mut h = Harness::funded();
    h.place(with_tif(limit(1, ALICE, Side::Buy, 9_000, 1), TimeInForce::Day));
    h.place(limit(2, ALICE, Side::Buy, 9_000, 1));
    h.place(with_tif(limit(3, BOB, Side::Sell, 11_000, 1), TimeInForce::Day));
    let events = h.run(CommandBody::EndOfDay { instrument: None });
    assert_eq!(
        cancels(&events),
        vec![(1, 1, CancelReason::Expired), (3, 1, CancelReason::Expired)]
    );
    assert!(h.engine.order(OrderId(2)).is_some());
    assert_eq!(h.held(BOB, BTC), 0);
}

#[test]
fn validation_rejects_with_specific_reasons() {
    let mut spec = btc_usd();
    spec.tick_size = Price(5);
    spec.lot_size = Quantity(2);
    spec.quantity_min = Quantity(2);
    spec.quantity_max = Quantity(100);
    let mut h = Harness::funded_with(small_config(), spec);
    let cases = [
        (limit(0, ALICE, Side::Buy, 10_000, 2), RejectReason::InvalidOrderId),
        (limit(1, ALICE, Side::Buy, 10_001, 2), RejectReason::InvalidPrice),
        (limit(1, ALICE, Side::Buy, 0, 2), RejectReason::InvalidPrice),
        (limit(1, ALICE, Side::Buy, 10_000, 3), RejectReason::InvalidQuantity),
        (limit(1, ALICE, Side::Buy, 10_000, 0), RejectReason::InvalidQuantity),
        (limit(1, ALICE, Side::Buy, 10_000, 102), RejectReason::InvalidQuantity),
        (limit(1, ALICE, Side::Buy, 11_005, 2), RejectReason::PriceOutsideBand),
        (limit(1, ALICE, Side::Sell, 8_995, 2), RejectReason::PriceOutsideBand),
        (limit(1, AccountId(6), Side::Buy, 10_000, 2), RejectReason::UnknownAccount),
        (limit(1, AccountId::WORLD, Side::Buy, 10_000, 2), RejectReason::UnknownAccount),
        (limit(1, AccountId(4), Side::Buy, 10_000, 2), RejectReason::InsufficientFunds),
    ];
    h.ok(CommandBody::CreateAccount { account: AccountId(4) });
    for (order, reason) in cases {
        assert_eq!(rejected(&h.place(order)), Some(reason), "{order:?}");
    }
    let mut unknown = limit(1, ALICE, Side::Buy, 10_000, 2);
    unknown.instrument = InstrumentId(2);
    assert_eq!(rejected(&h.place(unknown)), Some(RejectReason::UnknownInstrument));
    h.place(limit(1, ALICE, Side::Buy, 10_000, 2));
    assert_eq!(
        rejected(&h.place(limit(1, BOB, Side::Sell, 10_500, 2))),
        Some(RejectReason::DuplicateOrderId)
    );
    // Nothing that was accepted is lost by any of the rejects.
    assert_eq!(h.engine.order(OrderId(1)).unwrap().leaves, Quantity(2));
}

#[test]
fn halted_instrument_refuses_orders_and_amends_but_allows_cancels() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 9_000, 1));
    h.ok(CommandBody::SetInstrumentHalted { instrument: BTC_USD, halted: true });
    assert!(h.engine.is_halted(BTC_USD));
    assert_eq!(
        rejected(&h.place(limit(2, ALICE, Side::Buy, 9_000, 1))),
        Some(RejectReason::InstrumentHalted)
    );
    assert_eq!(rejected(&h.amend(1, ALICE, 9_001, 1)), Some(RejectReason::InstrumentHalted));
    assert_eq!(cancels(&h.cancel(1, ALICE)), vec![(1, 1, CancelReason::Requested)]);
    h.ok(CommandBody::SetInstrumentHalted { instrument: BTC_USD, halted: false });
    h.place(limit(2, ALICE, Side::Buy, 9_000, 1));
    let unknown = CommandBody::SetInstrumentHalted { instrument: InstrumentId(3), halted: true };
    assert_eq!(rejected(&h.run(unknown)), Some(RejectReason::UnknownInstrument));
}

#[test]
fn capacity_limits_reject_instead_of_growing() {
    let config =
        EngineConfig { orders_max: 4, orders_per_account_max: 3, levels_max: 2, ..small_config() };
    let mut h = Harness::funded_with(config, btc_usd());
    h.place(limit(1, ALICE, Side::Buy, 9_000, 1));
    h.place(limit(2, ALICE, Side::Buy, 9_001, 1));
    // A third bid level does not fit; the same price does.
    assert_eq!(
        rejected(&h.place(limit(3, BOB, Side::Buy, 9_002, 1))),
        Some(RejectReason::PriceLevelsCapacityReached)
    );
    h.place(limit(3, ALICE, Side::Buy, 9_001, 1));
    assert_eq!(
        rejected(&h.place(limit(4, ALICE, Side::Sell, 11_000, 1))),
        Some(RejectReason::AccountOrdersLimitReached)
    );
    h.place(limit(4, BOB, Side::Sell, 11_000, 1));
    assert_eq!(
        rejected(&h.place(limit(5, CAROL, Side::Sell, 11_000, 1))),
        Some(RejectReason::OrdersCapacityReached)
    );
    // An IOC that never rests is not limited by levels, only by live orders.
    h.cancel(4, BOB);
    let events = h.place(with_tif(limit(5, CAROL, Side::Sell, 9_001, 2), TimeInForce::Ioc));
    assert_eq!(trades(&events), vec![(2, 5, 9_001, 1), (3, 5, 9_001, 1)]);
}

#[test]
fn instrument_specs_are_validated() {
    let mut h = Harness::funded();
    let mut spec = btc_usd();
    spec.instrument = InstrumentId(1);
    let invalid = [
        InstrumentSpecEdit::Tick(0),
        InstrumentSpecEdit::Lot(0),
        InstrumentSpecEdit::SameAssets,
        InstrumentSpecEdit::ReferenceOffTick,
        InstrumentSpecEdit::HugeQuantity,
    ];
    for edit in invalid {
        let bad = edit.apply(spec);
        assert_eq!(
            rejected(&h.run(CommandBody::AddInstrument(bad))),
            Some(RejectReason::InvalidInstrument),
            "{edit:?}"
        );
    }
    let mut unknown_asset = spec;
    unknown_asset.base_asset = engine::AssetId(3);
    assert_eq!(
        rejected(&h.run(CommandBody::AddInstrument(unknown_asset))),
        Some(RejectReason::UnknownAsset)
    );
    h.ok(CommandBody::AddInstrument(spec));
    assert_eq!(
        rejected(&h.run(CommandBody::AddInstrument(spec))),
        Some(RejectReason::InstrumentExists)
    );
    spec.instrument = InstrumentId(4);
    assert_eq!(
        rejected(&h.run(CommandBody::AddInstrument(spec))),
        Some(RejectReason::InstrumentsCapacityReached)
    );
}

#[derive(Clone, Copy, Debug)]
enum InstrumentSpecEdit {
    Tick(u64),
    Lot(u64),
    SameAssets,
    ReferenceOffTick,
    HugeQuantity,
}

impl InstrumentSpecEdit {
    fn apply(self, mut spec: engine::InstrumentSpec) -> engine::InstrumentSpec {
        match self {
            InstrumentSpecEdit::Tick(tick) => spec.tick_size = Price(tick),
            InstrumentSpecEdit::Lot(lot) => spec.lot_size = Quantity(lot),
            InstrumentSpecEdit::SameAssets => spec.quote_asset = spec.base_asset,
            InstrumentSpecEdit::ReferenceOffTick => {
                spec.tick_size = Price(3);
                spec.reference_price = Price(10_000);
            }
            InstrumentSpecEdit::HugeQuantity => spec.quantity_max = Quantity(u64::MAX),
        }
        spec
    }
}

#[test]
fn reject_codes_are_stable_and_explained() {
    // These numbers are on the wire and in journals: changing one is a breaking change.
    assert_eq!(RejectReason::UnknownInstrument.code(), 1);
    assert_eq!(RejectReason::InsufficientFunds.code(), 8);
    assert_eq!(RejectReason::UnknownOrder.code(), 10);
    assert_eq!(RejectReason::TransactionIdReused.code(), 20);
    assert_eq!(RejectReason::InvalidOrderId.code(), 34);
    for (index, reason) in ALL_REJECT_REASONS.iter().enumerate() {
        assert_eq!(usize::from(reason.code()), index + 1, "codes are dense and ordered");
        assert_eq!(RejectReason::from_code(reason.code()), Some(*reason));
        assert!(!reason.text().is_empty());
    }
    assert_eq!(RejectReason::from_code(0), None);
}

#[test]
fn live_order_state_follows_fills() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 5));
    assert_eq!(h.engine.order(OrderId(1)).unwrap().state(), engine::OrderState::New);
    h.place(limit(2, ALICE, Side::Buy, 10_000, 2));
    let order = h.engine.order(OrderId(1)).unwrap();
    assert_eq!(order.state(), engine::OrderState::PartiallyFilled);
    assert_eq!(order.filled(), Quantity(2));
}
