//! Fixed-point newtypes. Every number that means money or size has a type that names its unit,
//! so a price can never be added to a quantity by accident and floats never touch value.
//!
//! Units, as exchange-core defines them:
//! - [`Price`] counts price ticks of one instrument. One tick of one lot is worth
//!   `Instrument::quote_per_tick_lot` minor units of the quote asset.
//! - [`Quantity`] counts lots. One lot is `Instrument::base_per_lot` minor units of the base asset.
//! - [`Amount`] counts minor units of an asset (cents, satoshi). Products of price and quantity
//!   overflow `u64`, so amounts are 128-bit.

use core::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// An asset (currency, coin). Dense: `0..assets_max`.
    AssetId,
    u16
);
id_newtype!(
    /// A tradable pair. Dense: `0..instruments_max`.
    InstrumentId,
    u32
);
id_newtype!(
    /// A wallet account. Dense: `0..accounts_max`; [`AccountId::WORLD`] is the outside world.
    AccountId,
    u32
);
id_newtype!(
    /// A client-chosen order identifier, unique among live orders.
    OrderId,
    u64
);
id_newtype!(
    /// A client-chosen idempotency key for deposits, withdrawals and transfers.
    TransactionId,
    u128
);
id_newtype!(
    /// A price in ticks of its instrument.
    Price,
    u64
);
id_newtype!(
    /// A quantity in lots of its instrument.
    Quantity,
    u64
);
id_newtype!(
    /// An amount in minor units of one asset.
    Amount,
    u128
);

impl AccountId {
    /// The outside world: the counterparty of every deposit and withdrawal. Its balance is the
    /// negative of everything inside the exchange, so the sum over all accounts is always zero.
    pub const WORLD: AccountId = AccountId(u32::MAX);
}

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);

    #[inline]
    pub fn min(self, other: Quantity) -> Quantity {
        Quantity(self.0.min(other.0))
    }
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// Subtraction that panics on underflow: a negative balance is a broken invariant.
    #[inline]
    #[must_use]
    pub fn minus(self, other: Amount) -> Amount {
        Amount(self.0.checked_sub(other.0).expect("amount underflow"))
    }

    /// Addition that panics on overflow: 2^128 minor units do not exist.
    #[inline]
    #[must_use]
    pub fn plus(self, other: Amount) -> Amount {
        Amount(self.0.checked_add(other.0).expect("amount overflow"))
    }
}

/// Which side of the book an order is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Side {
    Buy = 1,
    Sell = 2,
}

impl Side {
    #[inline]
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OrderType {
    Limit = 1,
    /// Executes against the book up to the price band edge; whatever is left is cancelled.
    /// A market buy spends at most its quote budget (FIX CashOrderQty).
    Market = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TimeInForce {
    /// Good till cancelled.
    Gtc = 1,
    /// Rests until the operator's end-of-day command expires it.
    Day = 2,
    /// Immediate or cancel: executes what it can, cancels the rest.
    Ioc = 3,
    /// Fill or kill: executes entirely at once or not at all.
    Fok = 4,
}

impl TimeInForce {
    /// Whether an order with this time in force may rest on the book.
    #[inline]
    pub fn rests(self) -> bool {
        matches!(self, TimeInForce::Gtc | TimeInForce::Day)
    }
}

/// What happens when an incoming order would trade with a resting order of the same account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SelfTradePrevention {
    /// Self-trades are allowed (and settle as a wash).
    None = 0,
    /// Cancel the resting order and keep matching.
    CancelResting = 1,
    /// Cancel the rest of the incoming order.
    CancelIncoming = 2,
    /// Cancel both.
    CancelBoth = 3,
}

/// Notional value in quote minor units of `quantity` lots at `price` ticks.
#[inline]
pub fn notional(price: Price, quantity: Quantity, quote_per_tick_lot: u64) -> Amount {
    // Instrument validation bounds price, quantity and multiplier so that this never overflows;
    // checked arithmetic turns a violated bound into a panic instead of a wrapped value.
    let value = u128::from(price.0)
        .checked_mul(u128::from(quantity.0))
        .and_then(|v| v.checked_mul(u128::from(quote_per_tick_lot)))
        .expect("notional overflow");
    Amount(value)
}

/// A fee of `bps` basis points on `value`, rounded down in the payer's favour.
#[inline]
pub fn fee(value: Amount, bps: u16) -> Amount {
    // Almost every notional fits in 64 bits with room for the multiplication; 128-bit division
    // is a library call, so take the native path when it is exact.
    const FAST_MAX: u128 = (u64::MAX / 10_000) as u128;
    if value.0 <= FAST_MAX {
        #[allow(clippy::cast_possible_truncation)] // Checked just above.
        let value = value.0 as u64;
        return Amount(u128::from(value * u64::from(bps) / 10_000));
    }
    Amount(value.0 * u128::from(bps) / 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_down_and_is_subadditive() {
        assert_eq!(fee(Amount(9_999), 1), Amount(0));
        assert_eq!(fee(Amount(10_000), 1), Amount(1));
        // Splitting a notional can only lower the sum of fees: holds sized on the whole order
        // always cover the fees of its fills.
        for (a, b) in [(5_000u128, 5_000u128), (3_333, 6_667), (1, 19_999)] {
            let whole = fee(Amount(a + b), 7).0;
            assert!(fee(Amount(a), 7).0 + fee(Amount(b), 7).0 <= whole);
        }
    }

    #[test]
    fn notional_does_not_overflow_u64_products() {
        let value = notional(Price(u64::MAX), Quantity(u64::MAX), 1);
        assert_eq!(value.0, u128::from(u64::MAX) * u128::from(u64::MAX));
    }
}
