//! Node configuration: a TOML file (`ops/exchange.toml` is the embedded default) turned into the
//! engine's capacities and the genesis commands that create its assets, instruments and funded
//! accounts. Decimal strings in the file are converted exactly into engine units here, at the
//! edge; anything that does not convert exactly is an error naming the field.

use std::collections::BTreeMap;
use std::path::Path;

use engine::decimal::{parse_increments, parse_units, DecimalError};
use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, Engine, EngineConfig, Event, InstrumentId,
    InstrumentSpec, Price, Quantity, RejectReason, TransactionId,
};
use serde::Deserialize;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../ops/exchange.toml");

/// Transaction ids of genesis deposits carry this tag in their top bits, so they cannot collide
/// with ids a client chooses in practice.
const GENESIS_TRANSACTION_TAG: u128 = 0x6765_6e65_7369_7300 << 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{place}: {value:?} is not a valid amount: {source}")]
    Decimal { place: String, value: String, source: DecimalError },
    #[error("{place}: unknown asset {symbol:?}")]
    UnknownAsset { place: String, symbol: String },
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
    #[error("genesis command {seq} ({command}) was rejected: {reason}")]
    Genesis { seq: u64, command: String, reason: &'static str },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub engine: EngineSection,
    #[serde(default)]
    pub assets: Vec<AssetConfig>,
    #[serde(default)]
    pub instruments: Vec<InstrumentConfig>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    /// How `exchange run` serves: listen addresses, durability, snapshots.
    #[serde(default)]
    pub node: NodeSection,
    /// FIX sessions `exchange run` accepts.
    #[serde(default)]
    pub fix_sessions: Vec<FixSessionConfig>,
    /// HTTP API keys.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// FIX 4.4 acceptor.
    pub fix_listen: String,
    /// HTTP/JSON API.
    pub http_listen: String,
    /// `page-cache`, `group-commit`, `group-commit:<µs>:<records>` or `sync`.
    pub durability: String,
    /// When reports and acknowledgements leave: `written` (the journal write reached the page
    /// cache; group commit's fsync follows) or `durable` (after the fsync).
    pub release: String,
    /// A snapshot every this many commands; zero for none.
    pub snapshot_every: u64,
    /// Our CompID on every FIX session (SenderCompID of what we send).
    pub fix_comp_id: String,
}

impl Default for NodeSection {
    fn default() -> NodeSection {
        NodeSection {
            fix_listen: "127.0.0.1:9878".to_owned(),
            http_listen: "127.0.0.1:8080".to_owned(),
            durability: "group-commit".to_owned(),
            release: "written".to_owned(),
            snapshot_every: sequencer::sequencer::SNAPSHOT_EVERY_COMMANDS,
            fix_comp_id: "EXCHANGE".to_owned(),
        }
    }
}

/// One FIX session: the counterparty's CompID and what it may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixSessionConfig {
    /// The client's SenderCompID (our TargetCompID).
    pub comp_id: String,
    /// Checked against Logon Password (554) when set.
    #[serde(default)]
    pub password: Option<String>,
    /// Accounts the session may trade for.
    pub accounts: Vec<u32>,
    /// Application messages per second (token bucket rate) and burst.
    #[serde(default = "default_throttle_rate")]
    pub throttle_per_second: u32,
    #[serde(default = "default_throttle_burst")]
    pub throttle_burst: u32,
    /// Start both sequence numbers at 1 at every Logon.
    #[serde(default)]
    pub reset_on_logon: bool,
    /// Cancel the session's live orders when it disconnects.
    #[serde(default)]
    pub cancel_on_disconnect: bool,
}

/// One HTTP API key and its role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub key: String,
    /// `trader` (only its `accounts`) or `operator` (everything, deposits and halts included).
    pub role: String,
    #[serde(default)]
    pub accounts: Vec<u32>,
    #[serde(default = "default_throttle_rate")]
    pub throttle_per_second: u32,
    #[serde(default = "default_throttle_burst")]
    pub throttle_burst: u32,
}

fn default_throttle_rate() -> u32 {
    10_000
}

fn default_throttle_burst() -> u32 {
    1_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    pub assets_max: u16,
    pub instruments_max: u32,
    pub accounts_max: u32,
    pub orders_max: u32,
    pub levels_max: u32,
    pub orders_per_account_max: u32,
    pub transactions_max: u32,
    pub fee_account: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    pub id: u16,
    pub symbol: String,
    pub scale: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentConfig {
    pub id: u32,
    pub symbol: String,
    pub base: String,
    pub quote: String,
    pub tick_size: String,
    pub lot_size: String,
    pub quantity_min: String,
    pub quantity_max: String,
    pub reference_price: String,
    pub band_bps: u16,
    pub maker_fee_bps: u16,
    pub taker_fee_bps: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: u32,
    pub name: String,
    /// Asset symbol → decimal amount deposited at genesis.
    #[serde(default)]
    pub deposits: BTreeMap<String, String>,
}

impl Config {
    /// Reads `path`, or the embedded default when there is none.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml(DEFAULT_TOML),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Config::from_toml(&text)
            }
        }
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let engine = &self.engine;
        let positive = [
            ("engine.instruments_max", engine.instruments_max),
            ("engine.accounts_max", engine.accounts_max),
            ("engine.orders_max", engine.orders_max),
            ("engine.levels_max", engine.levels_max),
            ("engine.orders_per_account_max", engine.orders_per_account_max),
            ("engine.assets_max", u32::from(engine.assets_max)),
        ];
        for (place, value) in positive {
            if value == 0 {
                return Err(invalid(place, "must be positive"));
            }
        }
        if engine.fee_account >= engine.accounts_max {
            return Err(invalid("engine.fee_account", "must be below accounts_max"));
        }
        if engine.orders_max == u32::MAX || engine.transactions_max == u32::MAX {
            return Err(invalid("engine", "orders_max and transactions_max must be below 2^32-1"));
        }
        for (place, address) in [
            ("node.fix_listen", &self.node.fix_listen),
            ("node.http_listen", &self.node.http_listen),
        ] {
            if address.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(place, "must be an address such as 127.0.0.1:9878"));
            }
        }
        self.durability()?;
        self.release()?;
        for session in &self.fix_sessions {
            let place = format!("fix_sessions {}", session.comp_id);
            if session.accounts.is_empty() || session.throttle_per_second == 0 {
                return Err(invalid(&place, "needs accounts and a positive throttle"));
            }
        }
        for key in &self.api_keys {
            if !matches!(key.role.as_str(), "trader" | "operator") {
                return Err(invalid("api_keys.role", "must be trader or operator"));
            }
            if key.role == "trader" && key.accounts.is_empty() {
                return Err(invalid("api_keys", "a trader key needs its accounts"));
            }
        }
        Ok(())
    }

    /// The node's durability policy.
    pub fn durability(&self) -> Result<sequencer::journal::Durability, ConfigError> {
        self.node.durability.parse().map_err(|message| ConfigError::Invalid {
            place: "node.durability".to_owned(),
            message,
        })
    }

    /// When the node releases output; see [`sequencer::app_loop::Release`].
    pub fn release(&self) -> Result<sequencer::app_loop::Release, ConfigError> {
        self.node
            .release
            .parse()
            .map_err(|message| ConfigError::Invalid { place: "node.release".to_owned(), message })
    }

    pub fn engine_config(&self) -> EngineConfig {
        let engine = &self.engine;
        EngineConfig {
            assets_max: engine.assets_max,
            instruments_max: engine.instruments_max,
            accounts_max: engine.accounts_max,
            orders_max: engine.orders_max,
            levels_max: engine.levels_max,
            orders_per_account_max: engine.orders_per_account_max,
            transactions_max: engine.transactions_max,
            fee_account: AccountId(engine.fee_account),
        }
    }

    fn asset(&self, place: &str, symbol: &str) -> Result<&AssetConfig, ConfigError> {
        self.assets.iter().find(|asset| asset.symbol == symbol).ok_or_else(|| {
            ConfigError::UnknownAsset { place: place.to_owned(), symbol: symbol.to_owned() }
        })
    }

    /// Converts an instrument's decimal parameters into engine units.
    ///
    /// A tick is `tick_size` quote per whole base unit and a lot is `lot_size` base units, so one
    /// lot at one tick is worth `tick × lot` quote; that must be a whole number of quote minor
    /// units for every fill's value to be exact.
    pub fn instrument_spec(
        &self,
        instrument: &InstrumentConfig,
    ) -> Result<InstrumentSpec, ConfigError> {
        let place = format!("instrument {}", instrument.symbol);
        let base = self.asset(&place, &instrument.base)?;
        let quote = self.asset(&place, &instrument.quote)?;
        let decimal = |field: &str, value: &str, result: Result<u128, DecimalError>| {
            result.map_err(|source| ConfigError::Decimal {
                place: format!("{place}.{field}"),
                value: value.to_owned(),
                source,
            })
        };
        let tick_units = decimal(
            "tick_size",
            &instrument.tick_size,
            parse_units(&instrument.tick_size, quote.scale),
        )?;
        let lot_units = decimal(
            "lot_size",
            &instrument.lot_size,
            parse_units(&instrument.lot_size, base.scale),
        )?;
        if tick_units == 0 || lot_units == 0 {
            return Err(invalid(&place, "tick_size and lot_size must be positive"));
        }
        let base_unit = 10u128.pow(u32::from(base.scale));
        let Some(tick_lot) = tick_units.checked_mul(lot_units) else {
            return Err(invalid(&place, "tick_size × lot_size too large"));
        };
        if tick_lot % base_unit != 0 {
            return Err(invalid(
                &place,
                "tick_size × lot_size is not a whole number of quote minor units",
            ));
        }
        let lots = |field: &str, text: &str| -> Result<u64, ConfigError> {
            let count = decimal(field, text, parse_increments(text, base.scale, lot_units))?;
            u64::try_from(count).map_err(|_| invalid(&place, "quantity too large"))
        };
        let reference = decimal(
            "reference_price",
            &instrument.reference_price,
            parse_increments(&instrument.reference_price, quote.scale, tick_units),
        )?;
        Ok(InstrumentSpec {
            instrument: InstrumentId(instrument.id),
            base_asset: AssetId(base.id),
            quote_asset: AssetId(quote.id),
            tick_size: Price(1),
            lot_size: Quantity(1),
            quantity_min: Quantity(lots("quantity_min", &instrument.quantity_min)?),
            quantity_max: Quantity(lots("quantity_max", &instrument.quantity_max)?),
            base_per_lot: u64::try_from(lot_units)
                .map_err(|_| invalid(&place, "lot_size too large"))?,
            quote_per_tick_lot: u64::try_from(tick_lot / base_unit)
                .map_err(|_| invalid(&place, "tick_size × lot_size too large"))?,
            reference_price: Price(
                u64::try_from(reference)
                    .map_err(|_| invalid(&place, "reference_price too large"))?,
            ),
            band_bps: instrument.band_bps,
            maker_fee_bps: instrument.maker_fee_bps,
            taker_fee_bps: instrument.taker_fee_bps,
        })
    }

    /// The commands that build the configured exchange from an empty engine, in order: assets,
    /// instruments, accounts, then each account's deposits (by asset symbol).
    pub fn genesis(&self) -> Result<Vec<CommandBody>, ConfigError> {
        let mut commands = Vec::new();
        for asset in &self.assets {
            commands.push(CommandBody::AddAsset { asset: AssetId(asset.id), scale: asset.scale });
        }
        for instrument in &self.instruments {
            commands.push(CommandBody::AddInstrument(self.instrument_spec(instrument)?));
        }
        for account in &self.accounts {
            if account.id != self.engine.fee_account {
                commands.push(CommandBody::CreateAccount { account: AccountId(account.id) });
            }
        }
        for account in &self.accounts {
            let place = format!("account {}", account.name);
            for (symbol, text) in &account.deposits {
                let asset = self.asset(&place, symbol)?;
                let amount =
                    parse_units(text, asset.scale).map_err(|source| ConfigError::Decimal {
                        place: format!("{place}.deposits.{symbol}"),
                        value: text.clone(),
                        source,
                    })?;
                let id =
                    GENESIS_TRANSACTION_TAG | u128::from(account.id) << 16 | u128::from(asset.id);
                commands.push(CommandBody::Deposit {
                    transaction_id: TransactionId(id),
                    account: AccountId(account.id),
                    asset: AssetId(asset.id),
                    amount: Amount(amount),
                });
            }
        }
        Ok(commands)
    }

    /// An engine with the genesis commands applied, sequenced from 1 at timestamp zero. Any
    /// reject is an error: a configuration the engine refuses must not start.
    pub fn genesis_engine(&self) -> Result<Engine, ConfigError> {
        let mut engine = Engine::new(self.engine_config());
        let mut events = Vec::new();
        for (index, body) in self.genesis()?.into_iter().enumerate() {
            let seq = index as u64 + 1;
            events.clear();
            engine.handle(&Command { seq, timestamp_ns: 0, body }, &mut events);
            if let Some(reason) = events.iter().find_map(rejection) {
                let command = format!("{body:?}");
                return Err(ConfigError::Genesis { seq, command, reason: reason.text() });
            }
        }
        Ok(engine)
    }
}

fn rejection(event: &Event) -> Option<RejectReason> {
    match event {
        Event::Rejected { reason, .. } => Some(*reason),
        _ => None,
    }
}

fn invalid(place: &str, message: &str) -> ConfigError {
    ConfigError::Invalid { place: place.to_owned(), message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_builds_a_funded_exchange() {
        let config = Config::load(None).unwrap();
        let engine = config.genesis_engine().unwrap();
        let btc_usd = engine.instrument(InstrumentId(0)).unwrap();
        // One lot is 0.01 BTC (1,000,000 satoshi); one tick of one lot is one cent.
        assert_eq!(btc_usd.base_per_lot, 1_000_000);
        assert_eq!(btc_usd.quote_per_tick_lot, 1);
        assert_eq!(btc_usd.reference_price, Price(60_000));
        assert_eq!(btc_usd.quantity_max, Quantity(100_000));
        let eth_btc = engine.instrument(InstrumentId(2)).unwrap();
        assert_eq!(eth_btc.quote_per_tick_lot, 100);
        assert_eq!(eth_btc.reference_price, Price(5_000));
        // Alice holds one million dollars in cents.
        assert_eq!(engine.balance(AccountId(1), AssetId(1)).available, Amount(100_000_000));
        engine.check_invariants();
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let broken = DEFAULT_TOML.replace("tick_size = \"0.00001\"", "tick_size = \"0.00000001\"");
        let error = Config::from_toml(&broken).unwrap().genesis().unwrap_err();
        assert!(error.to_string().contains("instrument ETH-BTC"), "{error}");
        let broken = DEFAULT_TOML.replace("quote = \"USD\"", "quote = \"EUR\"");
        let error = Config::from_toml(&broken).unwrap().genesis().unwrap_err();
        assert!(error.to_string().contains("unknown asset \"EUR\""), "{error}");
        let broken =
            DEFAULT_TOML.replace("reference_price = \"60000\"", "reference_price = \"60000.5\"");
        let error = Config::from_toml(&broken).unwrap().genesis().unwrap_err();
        assert!(error.to_string().contains("reference_price"), "{error}");
        let broken = DEFAULT_TOML.replace("levels_max = 4096", "levels_max = 0");
        assert!(Config::from_toml(&broken).unwrap_err().to_string().contains("levels_max"));
        let broken = DEFAULT_TOML.replace("[engine]", "[engine]\nspeed = \"ludicrous\"");
        assert!(Config::from_toml(&broken).unwrap_err().to_string().contains("speed"));
        let broken = DEFAULT_TOML.replace("id = 2\nname = \"bob\"", "id = 1\nname = \"bob\"");
        let error = Config::from_toml(&broken).unwrap().genesis_engine().unwrap_err();
        assert!(error.to_string().contains("account already exists"), "{error}");
        let broken = DEFAULT_TOML.replace("release = \"written\"", "release = \"eventually\"");
        let error = Config::from_toml(&broken).unwrap_err().to_string();
        assert!(error.contains("node.release") && error.contains("eventually"), "{error}");
    }

    #[test]
    fn the_release_policy_defaults_to_written_and_reads_durable() {
        let config = Config::load(None).unwrap();
        assert_eq!(config.release().unwrap(), sequencer::app_loop::Release::Written);
        let durable = DEFAULT_TOML.replace("release = \"written\"", "release = \"durable\"");
        let config = Config::from_toml(&durable).unwrap();
        assert_eq!(config.release().unwrap(), sequencer::app_loop::Release::Durable);
    }
}
