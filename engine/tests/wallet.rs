//! Deposits, withdrawals and transfers: double entry, idempotency and every reject.

mod harness;

use engine::{
    AccountId, Amount, AssetId, Bucket, CommandBody, EngineConfig, Event, LegKind, RejectReason,
    Side, TransactionId,
};
use harness::*;

const START_USD: u128 = 10_000_000;

fn transfer(id: u128, from: AccountId, to: AccountId, amount: u128) -> CommandBody {
    CommandBody::Transfer {
        transaction_id: TransactionId(id),
        from,
        to,
        asset: USD,
        amount: Amount(amount),
    }
}

#[test]
fn deposit_moves_value_in_from_the_world() {
    let mut h = Harness::funded();
    let world_before = h.engine.world_balance(USD);
    let events = h.ok(CommandBody::Deposit {
        transaction_id: TransactionId(1),
        account: CAROL,
        asset: USD,
        amount: Amount(250),
    });
    assert_eq!(
        events,
        vec![Event::Ledger {
            kind: LegKind::Deposit,
            asset: USD,
            debit_account: AccountId::WORLD,
            debit_bucket: Bucket::Available,
            credit_account: CAROL,
            credit_bucket: Bucket::Available,
            amount: Amount(250),
            order_id: engine::OrderId(0),
            transaction_id: TransactionId(1),
        }]
    );
    assert_eq!(h.available(CAROL, USD), START_USD + 250);
    assert_eq!(h.engine.world_balance(USD), world_before - 250);
}

#[test]
fn withdrawal_needs_available_funds_not_held_ones() {
    let mut h = Harness::funded();
    h.place(limit(1, ALICE, Side::Buy, 10_000, 10));
    let available = h.available(ALICE, USD);
    let withdraw = |id: u128, amount: u128| CommandBody::Withdraw {
        transaction_id: TransactionId(id),
        account: ALICE,
        asset: USD,
        amount: Amount(amount),
    };
    assert_eq!(rejected(&h.run(withdraw(1, available + 1))), Some(RejectReason::InsufficientFunds));
    h.ok(withdraw(2, available));
    assert_eq!(h.available(ALICE, USD), 0);
    assert_eq!(h.held(ALICE, USD), 100_200);
}

#[test]
fn transfer_moves_available_between_accounts() {
    let mut h = Harness::funded();
    h.ok(transfer(1, ALICE, BOB, 1_000));
    assert_eq!(h.available(ALICE, USD), START_USD - 1_000);
    assert_eq!(h.available(BOB, USD), START_USD + 1_000);
    assert_eq!(
        rejected(&h.run(transfer(2, ALICE, BOB, START_USD))),
        Some(RejectReason::InsufficientFunds)
    );
}

#[test]
fn retry_with_the_same_fields_returns_the_first_result() {
    let mut h = Harness::funded();
    h.ok(transfer(42, ALICE, BOB, 1_000));
    let first_seq = h.seq();
    h.ok(transfer(43, BOB, CAROL, 5));
    let retry = h.run(transfer(42, ALICE, BOB, 1_000));
    assert_eq!(
        retry,
        vec![Event::TransactionDuplicate {
            transaction_id: TransactionId(42),
            original_seq: first_seq
        }]
    );
    // Nothing moved twice.
    assert_eq!(h.available(ALICE, USD), START_USD - 1_000);
    // Even when the retry could no longer succeed on its own, it still answers the first result.
    h.ok(CommandBody::Withdraw {
        transaction_id: TransactionId(44),
        account: ALICE,
        asset: USD,
        amount: Amount(START_USD - 1_000),
    });
    assert!(matches!(
        h.run(transfer(42, ALICE, BOB, 1_000))[..],
        [Event::TransactionDuplicate { .. }]
    ));
}

#[test]
fn reusing_an_id_with_different_fields_is_a_distinct_reject() {
    let mut h = Harness::funded();
    h.ok(transfer(42, ALICE, BOB, 1_000));
    for changed in [
        transfer(42, ALICE, BOB, 1_001),
        transfer(42, ALICE, CAROL, 1_000),
        transfer(42, BOB, ALICE, 1_000),
        CommandBody::Transfer {
            transaction_id: TransactionId(42),
            from: ALICE,
            to: BOB,
            asset: BTC,
            amount: Amount(1_000),
        },
        CommandBody::Deposit {
            transaction_id: TransactionId(42),
            account: BOB,
            asset: USD,
            amount: Amount(1_000),
        },
    ] {
        assert_eq!(
            rejected(&h.run(changed)),
            Some(RejectReason::TransactionIdReused),
            "{changed:?}"
        );
    }
}

#[test]
fn failed_transactions_do_not_claim_their_id() {
    let mut h = Harness::funded();
    assert_eq!(
        rejected(&h.run(transfer(9, ALICE, BOB, START_USD + 1))),
        Some(RejectReason::InsufficientFunds)
    );
    h.deposit(ALICE, USD, 1);
    h.ok(transfer(9, ALICE, BOB, START_USD + 1));
}

#[test]
fn transaction_rejects() {
    let mut h = Harness::funded();
    let deposit =
        |id: u128, account: AccountId, asset: AssetId, amount: u128| CommandBody::Deposit {
            transaction_id: TransactionId(id),
            account,
            asset,
            amount: Amount(amount),
        };
    let cases = [
        (transfer(0, ALICE, BOB, 1), RejectReason::InvalidTransactionId),
        (transfer(1, ALICE, ALICE, 1), RejectReason::SameAccount),
        (transfer(1, ALICE, AccountId(6), 1), RejectReason::UnknownAccount),
        (transfer(1, AccountId::WORLD, BOB, 1), RejectReason::WorldAccount),
        (transfer(1, ALICE, BOB, 0), RejectReason::InvalidAmount),
        (deposit(1, AccountId::WORLD, USD, 1), RejectReason::WorldAccount),
        (deposit(1, AccountId(6), USD, 1), RejectReason::UnknownAccount),
        (deposit(1, ALICE, AssetId(3), 1), RejectReason::UnknownAsset),
        (deposit(1, ALICE, AssetId(9), 1), RejectReason::UnknownAsset),
        (deposit(1, ALICE, USD, u128::MAX), RejectReason::BalanceOverflow),
        (
            CommandBody::Withdraw {
                transaction_id: TransactionId(1),
                account: AccountId::WORLD,
                asset: USD,
                amount: Amount(1),
            },
            RejectReason::WorldAccount,
        ),
    ];
    for (command, reason) in cases {
        assert_eq!(rejected(&h.run(command)), Some(reason), "{command:?}");
    }
}

#[test]
fn transaction_capacity_is_a_reject_not_growth() {
    let config = EngineConfig { transactions_max: 8, ..small_config() };
    let mut h = Harness::funded_with(config, btc_usd());
    // Funding used six ids; two remain.
    h.ok(transfer(1, ALICE, BOB, 1));
    h.ok(transfer(2, ALICE, BOB, 1));
    assert_eq!(
        rejected(&h.run(transfer(3, ALICE, BOB, 1))),
        Some(RejectReason::TransactionsCapacityReached)
    );
    // Retries of remembered ids still answer.
    assert!(matches!(h.run(transfer(2, ALICE, BOB, 1))[..], [Event::TransactionDuplicate { .. }]));
}

#[test]
fn accounts_and_assets_are_created_once_within_capacity() {
    let mut h = Harness::funded();
    let create = |account: u32| CommandBody::CreateAccount { account: AccountId(account) };
    assert_eq!(rejected(&h.run(create(1))), Some(RejectReason::AccountExists));
    assert_eq!(
        rejected(&h.run(create(0))),
        Some(RejectReason::AccountExists),
        "the fee account exists at genesis"
    );
    assert_eq!(rejected(&h.run(create(8))), Some(RejectReason::AccountsCapacityReached));
    h.ok(create(7));
    let add = |asset: u16| CommandBody::AddAsset { asset: AssetId(asset), scale: 2 };
    assert_eq!(rejected(&h.run(add(1))), Some(RejectReason::AssetExists));
    assert_eq!(rejected(&h.run(add(4))), Some(RejectReason::AssetsCapacityReached));
    h.ok(add(3));
}

#[test]
fn trading_fees_land_in_the_fee_account_and_value_is_conserved() {
    let mut h = Harness::funded();
    h.place(limit(1, BOB, Side::Sell, 10_000, 50));
    h.place(limit(2, ALICE, Side::Buy, 10_050, 30));
    h.place(limit(3, CAROL, Side::Buy, 10_000, 30));
    // Alice takes 30 lots and Carol 20 at 10,000: they pay 20 bps (600 and 400); Bob, the maker,
    // pays 10 bps on both (300 and 200).
    assert_eq!(h.available(FEES, USD), 600 + 400 + 300 + 200);
    for asset in [BTC, USD] {
        let inside: u128 = [FEES, ALICE, BOB, CAROL]
            .iter()
            .map(|&account| h.available(account, asset) + h.held(account, asset))
            .sum();
        assert_eq!(i128::try_from(inside).unwrap() + h.engine.world_balance(asset), 0);
    }
}
