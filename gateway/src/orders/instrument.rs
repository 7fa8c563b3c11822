//! Instruments as the order-entry layer sees them: a FIX Symbol (55) and the decimal scales that
//! turn wire prices and quantities into the engine's ticks and lots and back, exactly.

use engine::decimal::{format_units, parse_increments, parse_units, DecimalDisplay, DecimalError};
use engine::{Amount, InstrumentId, InstrumentSpec, Price, Quantity};

/// Why an instrument's decimal description could not be derived from its engine spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstrumentError {
    #[error("instrument {0}: a lot or a tick is zero")]
    Zero(String),
    #[error("instrument {0}: one tick is not a whole number of quote minor units")]
    InexactTick(String),
    #[error("instrument {0}: increments too large")]
    Overflow(String),
}

/// One tradable instrument's symbol and scales.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    pub id: InstrumentId,
    /// FIX Symbol (55), e.g. `BTC-USD`.
    pub symbol: String,
    /// Decimal places of the quote asset: prices and CashOrderQty are written at this scale.
    pub quote_scale: u8,
    /// Quote minor units one price tick is worth per whole base unit.
    pub tick_units: u128,
    /// Decimal places of the base asset: quantities are written at this scale.
    pub base_scale: u8,
    /// Base minor units in one lot.
    pub lot_units: u128,
    /// The largest order quantity: a market buy given only CashOrderQty asks for up to this.
    pub quantity_max: Quantity,
}

impl Instrument {
    /// Derives the decimal description from the engine's spec and the scales of its two assets.
    ///
    /// The engine knows a lot as `base_per_lot` base minor units and one tick of one lot as
    /// `quote_per_tick_lot` quote minor units, so one tick per whole base unit is
    /// `quote_per_tick_lot × 10^base_scale / base_per_lot` quote minor units; the configuration
    /// guarantees that this division is exact, and a spec for which it is not is refused.
    pub fn from_spec(
        symbol: &str,
        spec: &InstrumentSpec,
        base_scale: u8,
        quote_scale: u8,
    ) -> Result<Instrument, InstrumentError> {
        let lot_units = u128::from(spec.base_per_lot);
        if lot_units == 0 || spec.quote_per_tick_lot == 0 {
            return Err(InstrumentError::Zero(symbol.to_owned()));
        }
        let base_unit = 10u128
            .checked_pow(u32::from(base_scale))
            .ok_or_else(|| InstrumentError::Overflow(symbol.to_owned()))?;
        let tick_lot = u128::from(spec.quote_per_tick_lot)
            .checked_mul(base_unit)
            .ok_or_else(|| InstrumentError::Overflow(symbol.to_owned()))?;
        if tick_lot % lot_units != 0 {
            return Err(InstrumentError::InexactTick(symbol.to_owned()));
        }
        Ok(Instrument {
            id: spec.instrument,
            symbol: symbol.to_owned(),
            quote_scale,
            tick_units: tick_lot / lot_units,
            base_scale,
            lot_units,
            quantity_max: spec.quantity_max,
        })
    }

    /// A wire price in ticks.
    pub fn parse_price(&self, text: &str) -> Result<Price, DecimalError> {
        let ticks = parse_increments(text, self.quote_scale, self.tick_units)?;
        u64::try_from(ticks).map(Price).map_err(|_| DecimalError::Overflow)
    }

    /// A wire quantity in lots.
    pub fn parse_quantity(&self, text: &str) -> Result<Quantity, DecimalError> {
        let lots = parse_increments(text, self.base_scale, self.lot_units)?;
        u64::try_from(lots).map(Quantity).map_err(|_| DecimalError::Overflow)
    }

    /// A wire amount of the quote asset (CashOrderQty) in minor units.
    pub fn parse_quote_amount(&self, text: &str) -> Result<Amount, DecimalError> {
        parse_units(text, self.quote_scale).map(Amount)
    }

    /// A price as wire text; it formats without allocating (see [`DecimalDisplay`]).
    pub fn format_price(&self, price: Price) -> DecimalDisplay {
        format_units(u128::from(price.0) * self.tick_units, self.quote_scale)
    }

    pub fn format_quantity(&self, quantity: Quantity) -> DecimalDisplay {
        format_units(u128::from(quantity.0) * self.lot_units, self.base_scale)
    }

    pub fn format_quote_amount(&self, amount: Amount) -> DecimalDisplay {
        format_units(amount.0, self.quote_scale)
    }

    /// The quantity-weighted average of fills whose price × quantity sum to `ticks_lots`, over
    /// `lots` lots, as a decimal. It is exact whenever the quotient has at most
    /// [`AVERAGE_EXTRA_DIGITS`] digits beyond the quote scale, and rounded half up to that many
    /// otherwise: fills of 1 lot at 1 and 2 lots at 2 average 5/3, which has no exact decimal.
    pub fn format_average_price(&self, ticks_lots: u128, lots: u64) -> DecimalDisplay {
        if lots == 0 {
            return format_units(0, 0);
        }
        let scale = 10u128.pow(u32::from(AVERAGE_EXTRA_DIGITS));
        let numerator = ticks_lots * self.tick_units * scale;
        let denominator = u128::from(lots);
        let rounded = (numerator + denominator / 2) / denominator;
        format_units(rounded, self.quote_scale + AVERAGE_EXTRA_DIGITS)
    }
}

/// Digits beyond the quote scale that AvgPx (6) may carry.
pub const AVERAGE_EXTRA_DIGITS: u8 = 6;

/// Every instrument the gateway accepts orders for, by symbol and by id.
#[derive(Clone, Debug, Default)]
pub struct Instruments {
    by_id: std::collections::BTreeMap<u32, Instrument>,
}

impl Instruments {
    pub fn new(instruments: impl IntoIterator<Item = Instrument>) -> Instruments {
        let by_id = instruments.into_iter().map(|i| (i.id.0, i)).collect();
        Instruments { by_id }
    }

    pub fn by_symbol(&self, symbol: &str) -> Option<&Instrument> {
        // A venue lists a few dozen instruments at most, so a scan is as fast as a map here.
        self.by_id.values().find(|instrument| instrument.symbol == symbol)
    }

    pub fn by_id(&self, id: InstrumentId) -> Option<&Instrument> {
        self.by_id.get(&id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc_usd() -> Instrument {
        let spec = InstrumentSpec {
            quantity_max: Quantity(100_000),
            band_bps: 1000,
            ..testkit::btc_usd_spec()
        };
        Instrument::from_spec("BTC-USD", &spec, 8, 2).unwrap()
    }

    #[test]
    fn converts_exactly_both_ways() {
        let instrument = btc_usd();
        assert_eq!(instrument.tick_units, 100);
        assert_eq!(instrument.parse_price("60000"), Ok(Price(60_000)));
        assert_eq!(instrument.parse_price("60000.5"), Err(DecimalError::NotAMultiple));
        assert_eq!(instrument.parse_quantity("0.25"), Ok(Quantity(25)));
        assert_eq!(instrument.parse_quantity("0.001"), Err(DecimalError::NotAMultiple));
        assert_eq!(instrument.format_price(Price(60_001)).to_string(), "60001");
        assert_eq!(instrument.format_quantity(Quantity(150)).to_string(), "1.5");
        let average = |ticks_lots, lots| instrument.format_average_price(ticks_lots, lots);
        assert_eq!(average(3 * 60_000 + 60_001, 4).to_string(), "60000.25");
        assert_eq!(average(5, 3).to_string(), "1.66666667");
        assert_eq!(average(0, 0).to_string(), "0");
    }
}
