//! Fixtures shared by the sequencer's integration tests: a temporary data directory, a small
//! engine configuration, a genesis and a deterministic trading stream.

#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(clippy::cast_possible_truncation)] // Test data is built from small counters.

pub use testkit::TempDir;

use engine::{
    AccountId, Amount, AssetId, CommandBody, EngineConfig, InstrumentId, InstrumentSpec, NewOrder,
    OrderId, OrderType, Price, Quantity, SelfTradePrevention, Side, TimeInForce, TransactionId,
};

pub fn engine_config() -> EngineConfig {
    EngineConfig {
        assets_max: 4,
        instruments_max: 2,
        accounts_max: 16,
        orders_max: 1 << 12,
        levels_max: 256,
        orders_per_account_max: 1 << 10,
        transactions_max: 1 << 12,
        fee_account: AccountId(0),
    }
}

pub fn genesis() -> Vec<CommandBody> {
    let mut commands = vec![
        CommandBody::AddAsset { asset: AssetId(0), scale: 8 },
        CommandBody::AddAsset { asset: AssetId(1), scale: 2 },
        CommandBody::AddInstrument(InstrumentSpec {
            base_per_lot: 1_000,
            reference_price: Price(1_000),
            ..testkit::btc_usd_spec()
        }),
    ];
    for account in 1..=4u32 {
        commands.push(CommandBody::CreateAccount { account: AccountId(account) });
        for asset in 0..2u16 {
            commands.push(CommandBody::Deposit {
                transaction_id: TransactionId(u128::from(account) << 8 | u128::from(asset)),
                account: AccountId(account),
                asset: AssetId(asset),
                amount: Amount(1 << 40),
            });
        }
    }
    commands
}

/// A deterministic stream of crossing and resting orders, cancels and transfers.
pub fn trading(count: u64, first_id: u64) -> Vec<CommandBody> {
    (0..count)
        .map(|index| {
            let id = first_id + index;
            let account = AccountId(1 + (id % 4) as u32);
            match id % 7 {
                5 => CommandBody::CancelOrder {
                    order_id: OrderId(id - 3),
                    account: AccountId(1 + ((id - 3) % 4) as u32),
                },
                6 => CommandBody::Transfer {
                    transaction_id: TransactionId(1 << 64 | u128::from(id)),
                    from: account,
                    to: AccountId(1 + ((id + 1) % 4) as u32),
                    asset: AssetId(1),
                    amount: Amount(u128::from(id % 100) + 1),
                },
                _ => CommandBody::NewOrder(NewOrder {
                    order_id: OrderId(id),
                    account,
                    instrument: InstrumentId(0),
                    side: if id % 2 == 0 { Side::Buy } else { Side::Sell },
                    order_type: OrderType::Limit,
                    time_in_force: if id % 11 == 0 { TimeInForce::Ioc } else { TimeInForce::Gtc },
                    post_only: false,
                    self_trade_prevention: SelfTradePrevention::CancelResting,
                    price: Price(990 + (id * 7919) % 21),
                    quantity: Quantity(1 + id % 9),
                    quote_budget: Amount(0),
                }),
            }
        })
        .collect()
}
