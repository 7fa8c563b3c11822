//! Fixtures shared by the gateway's integration tests: a temporary directory and the BTC-USD
//! instrument the bridge and HTTP tests trade.

#![allow(dead_code)] // Each test binary uses a different subset.

use engine::{AssetId, InstrumentId, InstrumentSpec, Price, Quantity};

pub use testkit::TempDir;

/// BTC-USD: BTC is asset 0 (scale 8), USD asset 1 (scale 2); a lot of 0.01 BTC, a tick of
/// 0.01 USD, at most 10 BTC per order, a reference price of 600 USD with a 50% band.
pub fn btc_usd_spec() -> InstrumentSpec {
    InstrumentSpec {
        instrument: InstrumentId(0),
        base_asset: AssetId(0),
        quote_asset: AssetId(1),
        tick_size: Price(1),
        lot_size: Quantity(1),
        quantity_min: Quantity(1),
        quantity_max: Quantity(1_000),
        base_per_lot: 1_000_000,
        quote_per_tick_lot: 1,
        reference_price: Price(60_000),
        band_bps: 5_000,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
    }
}
