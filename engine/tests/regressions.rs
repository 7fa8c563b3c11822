//! Minimal reproductions of engine bugs the differential test found, one test per bug, so that
//! each stays fixed even if the random workload stops reaching it.

use engine::{
    AccountId, Amount, AssetId, CancelReason, Command, CommandBody, Engine, EngineConfig, Event,
    InstrumentId, InstrumentSpec, NewOrder, OrderId, OrderType, Price, Quantity,
    SelfTradePrevention, Side, TimeInForce, TransactionId,
};

const USD: AssetId = AssetId(0);
const BTC: AssetId = AssetId(1);
const BUYER: AccountId = AccountId(1);
const SELLER: AccountId = AccountId(2);

struct Exchange {
    engine: Engine,
    seq: u64,
}

impl Exchange {
    /// One instrument: 3 cents per tick and lot, 1,000 base units per lot, taker fee 25 bps.
    fn new() -> Exchange {
        let config = EngineConfig {
            assets_max: 2,
            instruments_max: 1,
            accounts_max: 3,
            orders_max: 8,
            levels_max: 8,
            orders_per_account_max: 8,
            transactions_max: 8,
            fee_account: AccountId(0),
        };
        let mut exchange = Exchange { engine: Engine::new(config), seq: 0 };
        exchange.run(CommandBody::AddAsset { asset: USD, scale: 2 });
        exchange.run(CommandBody::AddAsset { asset: BTC, scale: 8 });
        exchange.run(CommandBody::AddInstrument(InstrumentSpec {
            instrument: InstrumentId(0),
            base_asset: BTC,
            quote_asset: USD,
            tick_size: Price(5),
            lot_size: Quantity(1),
            quantity_min: Quantity(1),
            quantity_max: Quantity(40),
            base_per_lot: 1_000,
            quote_per_tick_lot: 3,
            reference_price: Price(770),
            band_bps: 1_500,
            maker_fee_bps: 10,
            taker_fee_bps: 25,
        }));
        for (id, account) in [(1, BUYER), (2, SELLER)] {
            exchange.run(CommandBody::CreateAccount { account });
            for asset in [USD, BTC] {
                let transaction_id = TransactionId(id * 10 + u128::from(asset.0));
                let amount = Amount(1_000_000);
                exchange.run(CommandBody::Deposit { transaction_id, account, asset, amount });
            }
        }
        exchange
    }

    fn run(&mut self, body: CommandBody) -> Vec<Event> {
        self.seq += 1;
        let mut events = Vec::new();
        self.engine.handle(&Command { seq: self.seq, timestamp_ns: self.seq, body }, &mut events);
        self.engine.check_invariants();
        events
    }
}

fn order(id: u64, account: AccountId, side: Side, order_type: OrderType) -> NewOrder {
    NewOrder {
        order_id: OrderId(id),
        account,
        instrument: InstrumentId(0),
        side,
        order_type,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        self_trade_prevention: SelfTradePrevention::None,
        price: Price(770),
        quantity: Quantity(3),
        quote_budget: Amount::ZERO,
    }
}

/// A market buy FOK for 2 lots with a budget of 4,630 against one maker of 3 lots at 770. Two
/// lots in one fill cost 4,620 plus an 11 fee, one too many; matching instead fills one lot for
/// 2,310 plus a 5 fee and then, with 2,315 left, a second lot from the same maker. The FOK
/// look-ahead used to move on to the next maker after the first partial take, and so killed an
/// order that matching fills entirely. Fixed in `Engine::fillable`.
#[test]
fn fill_or_kill_market_buy_may_take_one_maker_in_several_fills() {
    for time_in_force in [TimeInForce::Ioc, TimeInForce::Fok] {
        let mut exchange = Exchange::new();
        exchange.run(CommandBody::NewOrder(order(1, SELLER, Side::Sell, OrderType::Limit)));
        let mut buy = order(2, BUYER, Side::Buy, OrderType::Market);
        buy.time_in_force = time_in_force;
        buy.quantity = Quantity(2);
        buy.quote_budget = Amount(4_630);
        let events = exchange.run(CommandBody::NewOrder(buy));
        let trades: Vec<(Quantity, Quantity)> = events
            .iter()
            .filter_map(|event| match event {
                Event::Trade { quantity, taker_leaves, .. } => Some((*quantity, *taker_leaves)),
                _ => None,
            })
            .collect();
        assert_eq!(
            trades,
            [(Quantity(1), Quantity(1)), (Quantity(1), Quantity(0))],
            "{time_in_force:?}: {events:?}"
        );
        let killed = events.iter().any(|event| {
            matches!(event, Event::OrderCancelled { reason: CancelReason::FillOrKill, .. })
        });
        assert!(!killed);
        assert_eq!(exchange.engine.balance(BUYER, USD).held, Amount::ZERO);
        assert_eq!(exchange.engine.balance(BUYER, USD).available, Amount(1_000_000 - 4_630));
    }
}
