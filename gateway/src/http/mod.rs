//! The HTTP/JSON wallet and admin API: axum on a one-thread tokio runtime, off the engine thread.
//!
//! Requests that change state become engine commands, pushed onto this API's own input ring with
//! an origin of source [`SOURCE_HTTP`] and a request counter; the application loop echoes every
//! sequenced command ahead of its events on an output ring, once durable, and this API's
//! consumer thread matches the echo's origin to the waiting request and answers it with the first
//! event that follows (every wallet and halt command produces exactly one). A full input ring is
//! back-pressure: the request gets 503, a tokio worker never waits on the ring.
//!
//! Queries never touch the engine, which belongs to the loop thread: the consumer thread keeps a
//! [`ReadModel`] (balances, orders, counters) that starts from the recovered engine's state and
//! follows every event on the output ring. Balances at a past sequence number are replayed from
//! the newest snapshot and the journal on a blocking task.
//!
//! Retries of a wallet transaction: the engine remembers every executed transaction id and
//! answers an identical retry with `TransactionDuplicate { original_seq }`. An identical retry
//! has, by the engine's definition, the same accounts, asset and amount as the first request, so
//! the API rebuilds the first result from the request and `original_seq` (the same body, with
//! the original seq, and an `Idempotent-Replayed: true` header); it needs no memory of its own
//! and works the same after a restart. A rejected attempt does not use up its id, so its retry
//! runs again. A retry with different fields is the engine's `TransactionIdReused`: 409.

mod auth;
mod error;
mod metrics;
mod model;
mod pump;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use engine::{AssetId, EngineConfig, InstrumentId};
use sequencer::ring::{BackoffConfig, RingConsumer, RingProducer};

pub use auth::{ApiKey, Role, ThrottleConfig};
pub use error::{reject_code_name, ErrorCode};
pub use model::{BalanceRow, Counters, OrderRecord, OrderStatus, ReadModel};

/// The source tag in the top 8 bits of every origin this API puts on its commands.
pub const SOURCE_HTTP: u8 = 2;

/// The OpenAPI 3 description of this API, served at `GET /openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// An asset as the API names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetInfo {
    pub id: AssetId,
    /// The `currency` of requests and responses, e.g. `USD`.
    pub symbol: String,
    /// Decimal places of one whole unit: amounts are written with at most this many.
    pub scale: u8,
}

/// An instrument as the API names it, with the decimal sizes that turn ticks and lots into
/// prices and quantities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentInfo {
    pub id: InstrumentId,
    /// e.g. `BTC-USD`; the `{symbol}` of the halt and resume paths.
    pub symbol: String,
    pub base: AssetId,
    pub quote: AssetId,
    /// Quote minor units one price tick is worth per whole base unit.
    pub tick_units: u128,
    /// Base minor units in one lot.
    pub lot_units: u128,
    /// Halted at start (from the recovered engine); the read model follows later changes.
    pub halted: bool,
}

impl InstrumentInfo {
    /// The API's view of an engine instrument, given its symbol and its base asset's scale.
    ///
    /// The engine knows a lot as `base_per_lot` base minor units and one tick of one lot as
    /// `quote_per_tick_lot` quote minor units, so one tick per whole base unit is
    /// `quote_per_tick_lot × 10^base_scale / base_per_lot` quote minor units. `None` when that
    /// is not a whole number (a configuration the node's loader refuses anyway) or a size is 0.
    pub fn from_spec(
        symbol: &str,
        spec: &engine::InstrumentSpec,
        base_scale: u8,
        halted: bool,
    ) -> Option<InstrumentInfo> {
        let lot_units = u128::from(spec.base_per_lot);
        let base_unit = 10u128.checked_pow(u32::from(base_scale))?;
        let tick_lot = u128::from(spec.quote_per_tick_lot).checked_mul(base_unit)?;
        if lot_units == 0 || tick_lot == 0 || tick_lot % lot_units != 0 {
            return None;
        }
        Some(InstrumentInfo {
            id: spec.instrument,
            symbol: symbol.to_owned(),
            base: spec.base_asset,
            quote: spec.quote_asset,
            tick_units: tick_lot / lot_units,
            lot_units,
            halted,
        })
    }
}

/// One ring's fill level, for `/health` and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingDepth {
    /// A metric label value, e.g. `fix_input`.
    pub name: String,
    pub depth: u64,
    pub capacity: u64,
}

/// What the node knows about itself that the API cannot see: filled by the node, read on every
/// `/health` and `/metrics` request (so it must be cheap and must not block).
pub trait NodeStatus: Send + Sync + 'static {
    /// The last sequence number the sequencer assigned.
    fn sequence(&self) -> u64;
    /// The sequence number up to which everything is durable under the configured policy.
    fn durable_seq(&self) -> u64;
    /// The rings this API does not own (its own two it reports itself).
    fn ring_depths(&self) -> Vec<RingDepth> {
        Vec::new()
    }
    /// Logged-on FIX sessions.
    fn fix_sessions(&self) -> u64 {
        0
    }
    /// `leader`, `follower` or `single`.
    fn role(&self) -> &'static str {
        "single"
    }
    /// False once the node knows it cannot serve (the loop stopped, the journal failed).
    fn healthy(&self) -> bool {
        true
    }
}

/// A [`NodeStatus`] made of shared counters that the node's threads update.
#[derive(Debug, Default)]
pub struct SharedStatus {
    pub sequence: Arc<AtomicU64>,
    pub durable_seq: Arc<AtomicU64>,
    pub fix_sessions: Arc<AtomicU64>,
    pub healthy: Arc<AtomicBool>,
    /// Ring depths published by their owners.
    pub rings: Mutex<Vec<RingDepth>>,
}

impl NodeStatus for SharedStatus {
    fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }
    fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }
    fn ring_depths(&self) -> Vec<RingDepth> {
        self.rings.lock().map(|rings| rings.clone()).unwrap_or_default()
    }
    fn fix_sessions(&self) -> u64 {
        self.fix_sessions.load(Ordering::Acquire)
    }
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

/// Everything [`HttpApi::start`] needs besides the rings and the read model.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen; port zero picks a free one ([`HttpHandle::local_addr`] says which).
    pub bind: SocketAddr,
    pub assets: Vec<AssetInfo>,
    pub instruments: Vec<InstrumentInfo>,
    pub keys: Vec<ApiKey>,
    /// The node's data directory and engine capacities, for balance history by replay.
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    /// How long a request waits for its durable answer before a 504.
    pub answer_timeout: Duration,
    /// How long shutdown waits for requests in flight before it drops their connections.
    pub drain_timeout: Duration,
    /// Final orders the read model remembers for `GET /v1/orders/{id}`; older ones are
    /// forgotten first (live orders are always kept).
    pub finished_orders_max: usize,
    /// The output ring consumer's idle strategy.
    pub idle: BackoffConfig,
}

impl HttpConfig {
    /// A config with the usual timeouts and limits.
    pub fn new(
        bind: SocketAddr,
        assets: Vec<AssetInfo>,
        instruments: Vec<InstrumentInfo>,
        keys: Vec<ApiKey>,
        data_dir: PathBuf,
        engine: EngineConfig,
    ) -> HttpConfig {
        HttpConfig {
            bind,
            assets,
            instruments,
            keys,
            data_dir,
            engine,
            answer_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            finished_orders_max: 100_000,
            // The pump follows every record of the loop, FIX traffic included, and shares a
            // core with the FIX gateway: yielding and short parks after each record would cost
            // that core a dozen context switches per order. Parks from 200 µs keep it to a few,
            // and add at most a millisecond to an HTTP answer.
            idle: BackoffConfig {
                spins_max: 0,
                yields_max: 0,
                park_ns_min: 200_000,
                park_ns_max: 1_000_000,
            },
        }
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The API's entry point: [`HttpApi::start`].
#[derive(Debug)]
pub struct HttpApi;

/// A running API: its address, and a clean stop.
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    stop_server: Option<tokio::sync::watch::Sender<bool>>,
    server: Option<JoinHandle<()>>,
    stop_pump: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
}

impl HttpApi {
    /// Binds `config.bind`, starts the output-ring consumer thread (`http-pump`) and the server
    /// thread (`http-api`, a current-thread tokio runtime plus tokio's blocking pool for
    /// history replays), and returns at once.
    ///
    /// `input` is this API's own input ring of the application loop; `output` an output ring
    /// of a loop running with `echo_commands`; `model` the state at the loop's start, usually
    /// [`ReadModel::from_engine`] of the recovered engine.
    pub fn start(
        config: HttpConfig,
        input: RingProducer,
        output: RingConsumer,
        model: ReadModel,
        status: Arc<dyn NodeStatus>,
    ) -> Result<HttpHandle, HttpError> {
        auth::check_keys(&config.keys).map_err(HttpError::Config)?;
        let listener = std::net::TcpListener::bind(config.bind)
            .map_err(|source| HttpError::Bind { addr: config.bind, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr: config.bind, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Bind { addr: config.bind, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .build()
            .map_err(HttpError::Runtime)?;
        let model = Arc::new(RwLock::new(model));
        let pending = Arc::new(pump::Pending::default());
        let stop_pump = Arc::new(AtomicBool::new(false));
        let output_depth = Arc::new(AtomicU64::new(0));
        let output_capacity = u64::try_from(output.capacity()).unwrap_or(u64::MAX);
        let pump = pump::spawn(
            output,
            Arc::clone(&model),
            Arc::clone(&pending),
            Arc::clone(&stop_pump),
            Arc::clone(&output_depth),
            config.idle,
        )
        .map_err(HttpError::Runtime)?;
        let config_drain_timeout = config.drain_timeout;
        let state = routes::AppState::new(
            config,
            input,
            model,
            pending,
            status,
            output_depth,
            output_capacity,
        );
        let router = routes::router(state);
        let (stop_server, stopped) = tokio::sync::watch::channel(false);
        let drain_timeout = config_drain_timeout;
        let server = std::thread::Builder::new()
            .name("http-api".to_owned())
            .spawn(move || {
                runtime.block_on(serve(listener, router, stopped, drain_timeout));
            })
            .map_err(HttpError::Runtime)?;
        Ok(HttpHandle {
            local_addr,
            stop_server: Some(stop_server),
            server: Some(server),
            stop_pump,
            pump: Some(pump),
        })
    }
}

impl HttpHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight finish for up to
    /// [`HttpConfig::drain_timeout`] (answers still arrive meanwhile), then stops the consumer
    /// (requests still waiting get 503) and joins both threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(true);
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        self.stop_pump.store(true, Ordering::Release);
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

/// Serves until `stopped` turns true, then drains connections for at most `drain_timeout`: a
/// client that never finishes its request must not hold up the node's shutdown.
async fn serve(
    listener: std::net::TcpListener,
    router: axum::Router,
    stopped: tokio::sync::watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let mut graceful = stopped.clone();
    let shutdown = async move {
        let _ = graceful.wait_for(|stopped| *stopped).await;
    };
    let mut deadline = stopped;
    let cut_off = async move {
        let _ = deadline.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(drain_timeout).await;
    };
    // A server error ends this thread; `/health` then stops answering, which is what a
    // supervisor watches for.
    tokio::select! {
        _ = axum::serve(listener, router).with_graceful_shutdown(shutdown) => {}
        () = cut_off => {}
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
