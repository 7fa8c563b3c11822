//! The state hash and the full invariant sweep.
//!
//! The hash covers a canonical encoding of everything that shapes future output: assets and the
//! world's balances, instruments and their books (levels best first, orders in time priority),
//! accounts with their balances and order lists, and the remembered wallet transactions in the
//! order they executed. Slab positions and hash-table layout are never encoded, so two engines
//! that reached the same state by different routes (a snapshot restore, an event replay) hash the
//! same.

use sha2::{Digest, Sha256};

use crate::engine::{order_hold, side_index, Engine, OrderSlot, NONE};
use crate::types::{Amount, AssetId, Side};

/// Little-endian field writer over the hasher.
struct Canonical(Sha256);

impl Canonical {
    fn u8(&mut self, value: u8) {
        self.0.update([value]);
    }
    fn u16(&mut self, value: u16) {
        self.0.update(value.to_le_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.0.update(value.to_le_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.0.update(value.to_le_bytes());
    }
    fn u128(&mut self, value: u128) {
        self.0.update(value.to_le_bytes());
    }
    fn i128(&mut self, value: i128) {
        self.0.update(value.to_le_bytes());
    }
}

impl Engine {
    /// SHA-256 over the canonical encoding of the full state. Stable across runs, processes and
    /// machines; the replay and cluster tests compare it.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut out = Canonical(Sha256::new());
        out.0.update(b"exchange-engine-state-v1");
        out.u64(self.seq);
        for asset in &self.assets {
            out.u8(u8::from(asset.live));
            out.u8(asset.scale);
            out.i128(asset.world);
        }
        for instrument in &self.instruments {
            out.u8(u8::from(instrument.live));
            if !instrument.live {
                continue;
            }
            let spec = &instrument.spec;
            out.u32(spec.instrument.0);
            out.u16(spec.base_asset.0);
            out.u16(spec.quote_asset.0);
            for value in
                [spec.tick_size.0, spec.lot_size.0, spec.quantity_min.0, spec.quantity_max.0]
            {
                out.u64(value);
            }
            for value in [spec.base_per_lot, spec.quote_per_tick_lot, spec.reference_price.0] {
                out.u64(value);
            }
            for value in [spec.band_bps, spec.maker_fee_bps, spec.taker_fee_bps] {
                out.u16(value);
            }
            out.u8(u8::from(instrument.halted));
            out.u64(instrument.reference_price.0);
            for side in &instrument.sides {
                out.u32(u32::try_from(side.len()).expect("levels_max < 2^32"));
                for (_, level_index) in side.best_first() {
                    let level = &self.levels[level_index as usize];
                    out.u64(level.price.0);
                    out.u64(level.quantity.0);
                    out.u32(level.orders);
                    let mut slot = level.head;
                    while slot != NONE {
                        let order = &self.orders[slot as usize];
                        encode_order(&mut out, order);
                        slot = order.next;
                    }
                }
            }
        }
        for (index, account) in self.accounts.iter().enumerate() {
            out.u8(u8::from(account.exists));
            if !account.exists {
                continue;
            }
            out.u32(account.open_orders);
            let mut slot = account.head;
            while slot != NONE {
                out.u64(self.orders[slot as usize].id.0);
                slot = self.orders[slot as usize].account_next;
            }
            let row = index * usize::from(self.config.assets_max);
            for balance in &self.balances[row..row + usize::from(self.config.assets_max)] {
                out.u128(balance.available.0);
                out.u128(balance.held.0);
            }
        }
        out.u64(self.transactions.len() as u64);
        for record in &self.transactions {
            out.u128(record.id.0);
            out.u8(record.kind as u8);
            out.u32(record.debit_account.0);
            out.u32(record.credit_account.0);
            out.u16(record.asset.0);
            out.u128(record.amount.0);
            out.u64(record.seq);
        }
        out.0.finalize().into()
    }

    /// Checks every invariant by sweeping the whole state: O(state), so tests call it after each
    /// command and the engine itself only checks the O(1) ones. Panics with the first violation.
    ///
    /// - Per asset, every account's available plus held, plus the world's balance, is zero.
    /// - Each account's held balance equals the holds of its live orders.
    /// - A resting buy holds exactly its leaves at its price plus the larger fee; a resting sell
    ///   holds exactly its leaves in base.
    /// - Books are not crossed, levels are sorted strictly, and each level's totals match its
    ///   orders; every order's leaves are positive and at most its quantity.
    /// - Index, account lists, open-order counts and free lists agree with the slab.
    pub fn check_invariants(&self) {
        let assets_max = usize::from(self.config.assets_max);
        let mut held_by_orders = vec![Amount::ZERO; self.balances.len()];
        let mut live_orders = 0usize;
        for (instrument_index, instrument) in self.instruments.iter().enumerate() {
            if !instrument.live {
                assert!(instrument.sides.iter().all(crate::book::SideLevels::is_empty));
                continue;
            }
            let spec = &instrument.spec;
            for side in [Side::Buy, Side::Sell] {
                let levels = &instrument.sides[side_index(side)];
                assert!(levels.len() <= self.config.levels_max as usize);
                assert!(levels.is_strictly_sorted(), "levels unsorted");
                for (key, level_index) in levels.best_first() {
                    let level = &self.levels[level_index as usize];
                    assert_eq!(key, crate::engine::side_key(side, level.price));
                    let (mut count, mut quantity, mut slot, mut prev) =
                        (0u32, 0u64, level.head, NONE);
                    while slot != NONE {
                        let order = &self.orders[slot as usize];
                        assert_eq!(order.level, level_index);
                        assert_eq!(order.prev, prev);
                        assert_eq!(order.side, side);
                        assert_eq!(order.price, level.price);
                        assert_eq!(order.instrument.0 as usize, instrument_index);
                        assert!(order.leaves.0 > 0);
                        assert!(order.leaves <= order.quantity);
                        assert!(order.time_in_force.rests());
                        assert_eq!(order.hold, order_hold(spec, side, order.price, order.leaves));
                        let asset = match side {
                            Side::Buy => spec.quote_asset,
                            Side::Sell => spec.base_asset,
                        };
                        let cell = order.account.0 as usize * assets_max + usize::from(asset.0);
                        held_by_orders[cell] = held_by_orders[cell].plus(order.hold);
                        count += 1;
                        quantity += order.leaves.0;
                        prev = slot;
                        slot = order.next;
                    }
                    assert_eq!(level.tail, prev);
                    assert_eq!(level.orders, count);
                    assert_eq!(level.quantity.0, quantity);
                    assert!(count > 0, "empty level listed");
                    live_orders += count as usize;
                }
            }
            let best = |side: Side| instrument.sides[side_index(side)].best();
            if let (Some(bid), Some(ask)) = (best(Side::Buy), best(Side::Sell)) {
                assert!(
                    self.levels[bid as usize].price < self.levels[ask as usize].price,
                    "crossed"
                );
            }
        }
        // Between commands every live order rests, so the book holds every live order.
        assert_eq!(self.order_index.len(), live_orders);
        assert_eq!(self.orders_free.len() + live_orders, self.config.orders_max as usize);
        for (index, account) in self.accounts.iter().enumerate() {
            let (mut count, mut slot, mut prev) = (0u32, account.head, NONE);
            while slot != NONE {
                let order: &OrderSlot = &self.orders[slot as usize];
                assert_eq!(order.account.0 as usize, index);
                assert_eq!(order.account_prev, prev);
                assert!(order.level != NONE, "live order off the book between commands");
                assert_eq!(self.order_index.get(order.id.0), Some(slot));
                count += 1;
                prev = slot;
                slot = order.account_next;
            }
            assert_eq!(account.tail, prev);
            assert_eq!(account.open_orders, count);
            assert!(account.exists || count == 0);
        }
        for asset_index in 0..assets_max {
            let mut total: i128 = self.assets[asset_index].world;
            for account_index in 0..self.config.accounts_max as usize {
                let cell = account_index * assets_max + asset_index;
                let balance = &self.balances[cell];
                assert_eq!(balance.held, held_by_orders[cell], "held differs from order holds");
                let inside = balance.available.plus(balance.held);
                total = total.checked_add(i128::try_from(inside.0).expect("fits")).expect("fits");
            }
            let asset = AssetId(u16::try_from(asset_index).expect("assets_max is u16"));
            assert_eq!(total, 0, "asset {asset} not conserved");
        }
        assert_eq!(self.transaction_index.len(), self.transactions.len());
        for (index, record) in self.transactions.iter().enumerate() {
            assert_eq!(self.transaction_index.get(record.id.0), u32::try_from(index).ok());
            assert!(record.debit_account != record.credit_account);
        }
    }
}

fn encode_order(out: &mut Canonical, order: &OrderSlot) {
    out.u64(order.id.0);
    out.u32(order.account.0);
    out.u8(order.side as u8);
    out.u8(order.order_type as u8);
    out.u8(order.time_in_force as u8);
    out.u8(u8::from(order.post_only));
    out.u8(order.self_trade_prevention as u8);
    out.u64(order.price.0);
    out.u64(order.quantity.0);
    out.u64(order.leaves.0);
    out.u128(order.hold.0);
}
