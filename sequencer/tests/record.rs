//! Record codecs: every command and event survives encode → decode unchanged, with arbitrary
//! field values, and malformed bytes are refused with a specific error, never a panic.

// Test data is built from small counters; truncating them is the intent.
#![allow(clippy::cast_possible_truncation)]

use engine::{
    AccountId, Amount, AssetId, Bucket, CancelReason, Command, CommandBody, Event, InstrumentId,
    InstrumentSpec, LegKind, NewOrder, OrderId, OrderType, Price, Quantity, SelfTradePrevention,
    Side, TimeInForce, TransactionId, ALL_REJECT_REASONS,
};
use proptest::prelude::*;
use sequencer::record::{
    decode_command, decode_command_origin, decode_event, decode_output, encode_command,
    encode_command_from, encode_event, from_journal_payload, journal_payload, record_seq,
    EventRecord, Output, Record, RecordError, ECHO_FLAG, RECORD_BYTES,
};

/// The journal's stored form of a record gives the record back, and is a whole number of the
/// journal's 8-byte payload granules.
fn stored_round_trip(bytes: &Record) -> Result<(), TestCaseError> {
    let stored = journal_payload(bytes);
    prop_assert!(!stored.is_empty() && stored.len() % 8 == 0 && stored.len() <= RECORD_BYTES);
    prop_assert!(bytes[stored.len()..].iter().all(|&byte| byte == 0));
    prop_assert_eq!(from_journal_payload(stored), Some(*bytes));
    Ok(())
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn new_order() -> impl Strategy<Value = NewOrder> {
    let enums = (
        side(),
        prop_oneof![Just(OrderType::Limit), Just(OrderType::Market)],
        prop_oneof![
            Just(TimeInForce::Gtc),
            Just(TimeInForce::Day),
            Just(TimeInForce::Ioc),
            Just(TimeInForce::Fok)
        ],
        any::<bool>(),
        prop_oneof![
            Just(SelfTradePrevention::None),
            Just(SelfTradePrevention::CancelResting),
            Just(SelfTradePrevention::CancelIncoming),
            Just(SelfTradePrevention::CancelBoth)
        ],
    );
    let numbers =
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>(), any::<u128>());
    (enums, numbers).prop_map(
        |(
            (side, order_type, time_in_force, post_only, stp),
            (id, account, instrument, price, quantity, budget),
        )| {
            NewOrder {
                order_id: OrderId(id),
                account: AccountId(account),
                instrument: InstrumentId(instrument),
                side,
                order_type,
                time_in_force,
                post_only,
                self_trade_prevention: stp,
                price: Price(price),
                quantity: Quantity(quantity),
                quote_budget: Amount(budget),
            }
        },
    )
}

fn spec() -> impl Strategy<Value = InstrumentSpec> {
    (
        (any::<u32>(), any::<u16>(), any::<u16>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<u16>(), any::<u16>(), any::<u16>()),
    )
        .prop_map(
            |(
                (instrument, base, quote, tick, lot, min),
                (max, per_lot, per_tick, reference),
                (band, maker, taker),
            )| {
                InstrumentSpec {
                    instrument: InstrumentId(instrument),
                    base_asset: AssetId(base),
                    quote_asset: AssetId(quote),
                    tick_size: Price(tick),
                    lot_size: Quantity(lot),
                    quantity_min: Quantity(min),
                    quantity_max: Quantity(max),
                    base_per_lot: per_lot,
                    quote_per_tick_lot: per_tick,
                    reference_price: Price(reference),
                    band_bps: band,
                    maker_fee_bps: maker,
                    taker_fee_bps: taker,
                }
            },
        )
}

fn command_body() -> impl Strategy<Value = CommandBody> {
    let id = any::<u128>().prop_map(TransactionId);
    prop_oneof![
        new_order().prop_map(CommandBody::NewOrder),
        (any::<u64>(), any::<u32>()).prop_map(|(order, account)| CommandBody::CancelOrder {
            order_id: OrderId(order),
            account: AccountId(account)
        }),
        (any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(o, a, p, q)| {
            CommandBody::AmendOrder {
                order_id: OrderId(o),
                account: AccountId(a),
                price: Price(p),
                quantity: Quantity(q),
            }
        }),
        (proptest::option::of(any::<u32>()), proptest::option::of(any::<u32>())).prop_map(
            |(a, i)| {
                CommandBody::MassCancel {
                    account: a.map(AccountId),
                    instrument: i.map(InstrumentId),
                }
            }
        ),
        (id.clone(), any::<u32>(), any::<u16>(), any::<u128>()).prop_map(|(t, a, s, m)| {
            CommandBody::Deposit {
                transaction_id: t,
                account: AccountId(a),
                asset: AssetId(s),
                amount: Amount(m),
            }
        }),
        (id.clone(), any::<u32>(), any::<u16>(), any::<u128>()).prop_map(|(t, a, s, m)| {
            CommandBody::Withdraw {
                transaction_id: t,
                account: AccountId(a),
                asset: AssetId(s),
                amount: Amount(m),
            }
        }),
        (id, any::<u32>(), any::<u32>(), any::<u16>(), any::<u128>()).prop_map(
            |(t, f, o, s, m)| {
                CommandBody::Transfer {
                    transaction_id: t,
                    from: AccountId(f),
                    to: AccountId(o),
                    asset: AssetId(s),
                    amount: Amount(m),
                }
            }
        ),
        any::<u32>().prop_map(|a| CommandBody::CreateAccount { account: AccountId(a) }),
        (any::<u16>(), any::<u8>())
            .prop_map(|(a, s)| CommandBody::AddAsset { asset: AssetId(a), scale: s }),
        spec().prop_map(CommandBody::AddInstrument),
        (any::<u32>(), any::<bool>()).prop_map(|(i, h)| CommandBody::SetInstrumentHalted {
            instrument: InstrumentId(i),
            halted: h
        }),
        proptest::option::of(any::<u32>())
            .prop_map(|i| CommandBody::EndOfDay { instrument: i.map(InstrumentId) }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let bucket = prop_oneof![Just(Bucket::Available), Just(Bucket::Held)];
    let leg = prop_oneof![
        Just(LegKind::Deposit),
        Just(LegKind::Withdrawal),
        Just(LegKind::Transfer),
        Just(LegKind::OrderHold),
        Just(LegKind::OrderRelease),
        Just(LegKind::TradeSettlement),
        Just(LegKind::Fee)
    ];
    let cancel = prop_oneof![
        Just(CancelReason::Requested),
        Just(CancelReason::ImmediateRemainder),
        Just(CancelReason::FillOrKill),
        Just(CancelReason::SelfTrade),
        Just(CancelReason::Expired),
        Just(CancelReason::BudgetExhausted)
    ];
    prop_oneof![
        (0..ALL_REJECT_REASONS.len(), any::<u128>())
            .prop_map(|(i, r)| Event::Rejected { reason: ALL_REJECT_REASONS[i], reference: r }),
        new_order().prop_map(|o| Event::OrderAccepted {
            order_id: o.order_id,
            account: o.account,
            instrument: o.instrument,
            side: o.side,
            order_type: o.order_type,
            time_in_force: o.time_in_force,
            post_only: o.post_only,
            self_trade_prevention: o.self_trade_prevention,
            price: o.price,
            quantity: o.quantity,
            quote_budget: o.quote_budget,
        }),
        any::<u64>().prop_map(|o| Event::OrderRested { order_id: OrderId(o) }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(o, p, q, l, k)| {
                Event::OrderAmended {
                    order_id: OrderId(o),
                    price: Price(p),
                    quantity: Quantity(q),
                    leaves: Quantity(l),
                    priority_kept: k,
                }
            }
        ),
        (any::<u64>(), any::<u64>(), cancel).prop_map(|(o, l, reason)| Event::OrderCancelled {
            order_id: OrderId(o),
            leaves: Quantity(l),
            reason
        }),
        (any::<u32>(), any::<u64>(), any::<u64>(), side(), any::<[u64; 4]>()).prop_map(
            |(i, m, t, s, n)| {
                Event::Trade {
                    instrument: InstrumentId(i),
                    maker_order_id: OrderId(m),
                    taker_order_id: OrderId(t),
                    taker_side: s,
                    price: Price(n[0]),
                    quantity: Quantity(n[1]),
                    maker_leaves: Quantity(n[2]),
                    taker_leaves: Quantity(n[3]),
                }
            }
        ),
        (
            leg,
            any::<u16>(),
            any::<u32>(),
            bucket.clone(),
            any::<u32>(),
            bucket,
            any::<u128>(),
            any::<u64>(),
            any::<u128>()
        )
            .prop_map(|(kind, asset, d, db, c, cb, amount, order, tx)| Event::Ledger {
                kind,
                asset: AssetId(asset),
                debit_account: AccountId(d),
                debit_bucket: db,
                credit_account: AccountId(c),
                credit_bucket: cb,
                amount: Amount(amount),
                order_id: OrderId(order),
                transaction_id: TransactionId(tx),
            }),
        (any::<u128>(), any::<u64>()).prop_map(|(t, s)| Event::TransactionDuplicate {
            transaction_id: TransactionId(t),
            original_seq: s
        }),
        any::<u32>().prop_map(|a| Event::AccountCreated { account: AccountId(a) }),
        (any::<u16>(), any::<u8>())
            .prop_map(|(a, s)| Event::AssetAdded { asset: AssetId(a), scale: s }),
        spec().prop_map(Event::InstrumentAdded),
        (any::<u32>(), any::<bool>())
            .prop_map(|(i, h)| Event::InstrumentHalted { instrument: InstrumentId(i), halted: h }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn commands_round_trip(
        seq in any::<u64>(),
        timestamp_ns in any::<u64>(),
        body in command_body(),
    ) {
        let command = Command { seq, timestamp_ns, body };
        let bytes = encode_command(&command);
        prop_assert_eq!(record_seq(&bytes), seq);
        prop_assert_eq!(decode_command(&bytes), Ok(command));
        stored_round_trip(&bytes)?;
    }

    #[test]
    fn events_round_trip(
        seq in any::<u64>(),
        timestamp_ns in any::<u64>(),
        index in any::<u32>(),
        event in event(),
    ) {
        let record = EventRecord { seq, timestamp_ns, index, event };
        let bytes = encode_event(&record);
        prop_assert_eq!(record_seq(&bytes), seq);
        prop_assert_eq!(decode_event(&bytes), Ok(record));
        stored_round_trip(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), RECORD_BYTES)) {
        let record: [u8; RECORD_BYTES] = bytes.try_into().unwrap();
        let _ = decode_command(&record);
        let _ = decode_event(&record);
        stored_round_trip(&record)?;
    }

    #[test]
    fn a_flipped_bit_never_decodes_to_the_same_value(
        body in command_body(),
        bit in 0usize..RECORD_BYTES * 8,
    ) {
        let command = Command { seq: 7, timestamp_ns: 9, body };
        let mut bytes = encode_command_from(&command, 5);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert_ne!(decode_command_origin(&bytes), Ok((command, 5)));
    }
}

#[test]
fn malformed_records_get_specific_errors() {
    let command = Command {
        seq: 1,
        timestamp_ns: 2,
        body: CommandBody::CreateAccount { account: AccountId(3) },
    };
    let good = encode_command(&command);
    let mut wrong_version = good;
    wrong_version[0] = 9;
    assert_eq!(decode_command(&wrong_version), Err(RecordError::Version(9)));
    let mut unknown_kind = good;
    unknown_kind[2] = 200;
    assert_eq!(decode_command(&unknown_kind), Err(RecordError::Kind(200)));
    let mut padding = good;
    padding[RECORD_BYTES - 1] = 1;
    assert_eq!(decode_command(&padding), Err(RecordError::Padding));
    let order = CommandBody::NewOrder(NewOrder {
        order_id: OrderId(1),
        account: AccountId(1),
        instrument: InstrumentId(0),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        self_trade_prevention: SelfTradePrevention::None,
        price: Price(1),
        quantity: Quantity(1),
        quote_budget: Amount(0),
    });
    let mut bad_side = encode_command(&Command { seq: 1, timestamp_ns: 0, body: order });
    bad_side[24 + 16] = 3;
    assert_eq!(decode_command(&bad_side), Err(RecordError::Field { field: "side", value: 3 }));
}

#[test]
fn origin_round_trips_and_an_echo_decodes_as_one() {
    let body = CommandBody::CreateAccount { account: AccountId(4) };
    let command = Command { seq: 11, timestamp_ns: 12, body };
    let bytes = encode_command_from(&command, 0x0100_0007);
    assert_eq!(decode_command_origin(&bytes), Ok((command, 0x0100_0007)));
    assert_eq!(decode_command(&bytes), Ok(command));
    // A journaled command is not an echo: it decodes as an event or fails, never as an echo.
    assert!(!matches!(decode_output(&bytes), Ok(Output::Echo { .. })));
    let mut echo = bytes;
    echo[3] = ECHO_FLAG;
    assert_eq!(decode_output(&echo), Ok(Output::Echo { command, origin: 0x0100_0007 }));
    // The flag belongs to output rings only; a journal reader refuses it.
    assert!(decode_command(&echo).is_err());
}

#[test]
fn the_journal_stores_records_without_their_padding_and_reads_old_full_ones() {
    let trade = EventRecord {
        seq: 1 << 20,
        timestamp_ns: 1_700_000_000_000_000_000,
        index: 3,
        event: Event::Trade {
            instrument: InstrumentId(1),
            maker_order_id: OrderId(1 << 56 | 12_345),
            taker_order_id: OrderId(1 << 56 | 12_346),
            taker_side: Side::Buy,
            price: Price(3_000_000),
            quantity: Quantity(250),
            maker_leaves: Quantity(0),
            taker_leaves: Quantity(750),
        },
    };
    let bytes = encode_event(&trade);
    // 24 header bytes and a 53-byte body, whose last field (the taker's leaves, 750) needs two
    // of its eight bytes: 71 bytes, stored as 72 instead of 128.
    assert_eq!(journal_payload(&bytes).len(), 72);
    // A journal written before the padding was dropped holds whole records; they read the same.
    assert_eq!(from_journal_payload(&bytes), Some(bytes));
    assert_eq!(from_journal_payload(&[0; RECORD_BYTES + 8]), None);
}
