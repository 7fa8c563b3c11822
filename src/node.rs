//! `exchange run`: one node. It recovers the data directory (or starts it from the
//! configuration's genesis), starts the pinned application loop with one input and one output
//! ring per gateway, the FIX acceptor on its own I/O thread, and the HTTP API on a small tokio
//! runtime, prints how to connect, and runs until SIGTERM or SIGINT.
//!
//! Shutdown is ordered so that nothing acknowledged is lost and nothing is left half told: the
//! loop stops taking input, snapshots, and releases every durable command's output; the
//! gateways then deliver what their output rings still hold; only then are FIX sessions logged
//! out and the HTTP server stopped. A restart recovers everything from the journals, the
//! snapshots and the gateways' own stores.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway::bridge::{BridgeMetrics, FixBridge};
use gateway::fix::{
    Acceptor, AcceptorConfig, AcceptorHandle, AcceptorStats, SessionConfig, ThrottleConfig,
};
use gateway::http::{
    ApiKey, AssetInfo, HttpApi, HttpConfig, HttpHandle, InstrumentInfo, NodeStatus, ReadModel,
    RingDepth, Role,
};
use gateway::orders::store::OrderStore;
use gateway::orders::{Instrument, Instruments};
use sequencer::app_loop::{AppLoop, Control, LoopConfig, LoopProgress, LoopStats};
use sequencer::journal::Durability;
use sequencer::record::RECORD_BYTES;
use sequencer::ring::{IdleConfig, Ring, RingConsumer, RingProducer};
use sequencer::sequencer::{Sequencer, SequencerError};

use crate::config::Config;
use crate::simulate::{data_dir_config, open_sequencer};

/// Slots of each input and output ring: a few milliseconds of traffic at full rate.
const RING_SLOTS: usize = 1 << 16;

/// While alive, keeps the thread that made it, and the threads it spawns, off one core; the
/// thread's former affinity comes back on drop.
///
/// The application loop busy-spins on its core. Any other thread that the scheduler puts there
/// (the FIX I/O thread, a journal flusher, the HTTP runtime) competes with a thread that never
/// sleeps, so each time it wakes it may wait a whole scheduler time slice, milliseconds, for
/// the CPU; a thread that itself spins while it waits for the loop's answer even stops the
/// loop that would give it. Keeping them on the other cores bounds that to their own sharing.
struct OffCore {
    former: Option<rustix::thread::CpuSet>,
}

impl OffCore {
    fn enter(core: usize) -> OffCore {
        let Ok(former) = rustix::thread::sched_getaffinity(None) else {
            return OffCore { former: None };
        };
        let mut others = former;
        others.unset(core);
        // With only that core allowed there is nowhere else to go.
        if others.count() == 0 || rustix::thread::sched_setaffinity(None, &others).is_err() {
            return OffCore { former: None };
        }
        OffCore { former: Some(former) }
    }
}

impl Drop for OffCore {
    fn drop(&mut self) {
        if let Some(former) = &self.former {
            let _ = rustix::thread::sched_setaffinity(None, former);
        }
    }
}

#[derive(Debug)]
pub struct RunArgs {
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    /// How the application loop waits when idle.
    pub idle: IdleConfig,
    /// How the gateways' I/O threads wait when idle.
    pub gateway_idle: IdleConfig,
}

/// The FIX sessions of the configuration, as the acceptor takes them.
pub fn fix_sessions(config: &Config) -> Vec<SessionConfig> {
    config
        .fix_sessions
        .iter()
        .map(|session| {
            let mut fix = SessionConfig::new(&config.node.fix_comp_id, &session.comp_id);
            fix.password.clone_from(&session.password);
            fix.accounts.clone_from(&session.accounts);
            fix.throttle = ThrottleConfig {
                rate_per_s: session.throttle_per_second,
                burst: session.throttle_burst,
                ..ThrottleConfig::default()
            };
            fix.reset_on_logon = session.reset_on_logon;
            fix.cancel_on_disconnect = session.cancel_on_disconnect;
            fix
        })
        .collect()
}

/// The instruments of the configuration with their decimal scales, for the gateways.
pub fn instruments(config: &Config) -> anyhow::Result<Instruments> {
    let mut instruments = Vec::new();
    for instrument in &config.instruments {
        let spec = config.instrument_spec(instrument)?;
        let scale = |symbol: &str| {
            config.assets.iter().find(|asset| asset.symbol == symbol).map(|asset| asset.scale)
        };
        let (Some(base), Some(quote)) = (scale(&instrument.base), scale(&instrument.quote)) else {
            anyhow::bail!("instrument {}: unknown asset", instrument.symbol);
        };
        instruments.push(Instrument::from_spec(&instrument.symbol, &spec, base, quote)?);
    }
    Ok(Instruments::new(instruments))
}

/// The HTTP API's view of the configuration: assets, instruments (with their halted state in the
/// recovered engine) and keys.
fn http_config(
    config: &Config,
    engine: &engine::Engine,
    bind: SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<HttpConfig> {
    let assets: Vec<AssetInfo> = config
        .assets
        .iter()
        .map(|asset| AssetInfo {
            id: engine::AssetId(asset.id),
            symbol: asset.symbol.clone(),
            scale: asset.scale,
        })
        .collect();
    let mut instruments = Vec::new();
    for instrument in &config.instruments {
        let spec = config.instrument_spec(instrument)?;
        let base = assets.iter().find(|asset| asset.symbol == instrument.base);
        let halted = engine.is_halted(spec.instrument);
        let info = base.and_then(|base| {
            InstrumentInfo::from_spec(&instrument.symbol, &spec, base.scale, halted)
        });
        instruments.push(info.with_context(|| format!("instrument {}", instrument.symbol))?);
    }
    let keys = config
        .api_keys
        .iter()
        .enumerate()
        .map(|(index, key)| ApiKey {
            key: key.key.clone(),
            name: format!("{}-{index}", key.role),
            role: if key.role == "operator" {
                Role::Operator
            } else {
                Role::Trader {
                    accounts: key.accounts.iter().copied().map(engine::AccountId).collect(),
                }
            },
            throttle: gateway::http::ThrottleConfig {
                rate_per_second: key.throttle_per_second,
                burst: key.throttle_burst,
            },
        })
        .collect();
    Ok(HttpConfig::new(
        bind,
        assets,
        instruments,
        keys,
        data_dir.to_owned(),
        config.engine_config(),
    ))
}

/// What `/health` and `/metrics` report about the parts the HTTP API does not own.
#[derive(Debug)]
struct Status {
    progress: Arc<LoopProgress>,
    fix: Arc<BridgeMetrics>,
    ring_capacity: u64,
}

impl NodeStatus for Status {
    fn sequence(&self) -> u64 {
        self.progress.seq.load(Ordering::Relaxed)
    }

    fn durable_seq(&self) -> u64 {
        self.progress.durable_seq.load(Ordering::Relaxed)
    }

    fn ring_depths(&self) -> Vec<RingDepth> {
        let ring = |name: &str, depth: &std::sync::atomic::AtomicU64| RingDepth {
            name: name.to_owned(),
            depth: depth.load(Ordering::Relaxed),
            capacity: self.ring_capacity,
        };
        vec![ring("fix_input", &self.fix.input_depth), ring("fix_output", &self.fix.output_depth)]
    }

    fn fix_sessions(&self) -> u64 {
        self.fix.sessions_logged_on.load(Ordering::Relaxed)
    }

    fn healthy(&self) -> bool {
        !self.progress.stopped.load(Ordering::Acquire)
    }
}

/// A ring in the data directory's `rings/` folder, created afresh: rings carry only what is in
/// flight, and recovery starts from the journals.
fn ring(data_dir: &Path, name: &str) -> anyhow::Result<(RingProducer, RingConsumer)> {
    let directory = data_dir.join("rings");
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let path = directory.join(format!("{name}.ring"));
    let _ = std::fs::remove_file(&path);
    Ok(Ring::create(&path, RING_SLOTS, RECORD_BYTES)?.split())
}

fn parse_address(text: &str, place: &str) -> anyhow::Result<SocketAddr> {
    text.parse().with_context(|| format!("{place}: {text:?} is not an address"))
}

/// A running node: its bound addresses, and the threads [`Node::stop`] shuts down in order.
#[derive(Debug)]
pub struct Node {
    pub fix_address: SocketAddr,
    pub http_address: SocketAddr,
    http: HttpHandle,
    pub resume_seq: u64,
    control: Arc<crossbeam_queue::ArrayQueue<Control>>,
    application_loop: std::thread::JoinHandle<(Sequencer, Result<LoopStats, SequencerError>)>,
    fix: AcceptorHandle<FixBridge>,
    fix_metrics: Arc<BridgeMetrics>,
}

/// What [`Node::stop`] reports.
#[derive(Debug)]
pub struct Stopped {
    pub seq: u64,
    pub state_hash: [u8; 32],
    pub commands: u64,
    pub fix: AcceptorStats,
}

impl Node {
    /// Recovers the data directory and starts every thread; see the module documentation.
    pub fn start(args: &RunArgs) -> anyhow::Result<(Node, Config)> {
        // Every thread started here, except the loop, inherits this thread's affinity for as
        // long as the guard lives: keep them all off the loop's core.
        let loop_core = core_affinity::get_core_ids().and_then(|cores| cores.last().copied());
        let _off_loop_core = loop_core.map(|core| OffCore::enter(core.id));
        let config = data_dir_config(&args.data_dir, args.config.as_deref())?;
        let durability = config.durability()?;
        let fix_listen = parse_address(&config.node.fix_listen, "node.fix_listen")?;
        let http_listen = parse_address(&config.node.http_listen, "node.http_listen")?;
        let (mut sequencer, _) =
            open_sequencer(&args.data_dir, &config, durability, config.node.snapshot_every)?;
        sequencer.start_snapshot_writer()?;
        let resume_seq = sequencer.seq();

        let (fix_input, fix_input_consumer) = ring(&args.data_dir, "fix-in")?;
        let (fix_output_producer, fix_output) = ring(&args.data_dir, "fix-out")?;
        let sessions = fix_sessions(&config);
        // Requests must be as durable as the journal they will be matched against.
        let sync_requests = durability == Durability::SyncEachCommit;
        let order_store = OrderStore::open(&args.data_dir.join("fix-orders"), sync_requests)?;
        let mut bridge = FixBridge::recover(
            instruments(&config)?,
            &sessions,
            order_store,
            &args.data_dir,
            fix_input,
            fix_output,
        )?;
        // The order entry's snapshots bound its replay after a restart as the engine's bound
        // the loop's.
        bridge.set_snapshot_every(config.node.snapshot_every);
        let fix_metrics = bridge.metrics();
        let mut acceptor_config = AcceptorConfig::new(fix_listen, sessions);
        acceptor_config.store_path = Some(args.data_dir.join("fix-sessions"));
        acceptor_config.idle = args.gateway_idle;
        let acceptor = Acceptor::bind(acceptor_config)?;
        let fix_address = acceptor.local_addr();
        let fix = acceptor.spawn(bridge);

        let (http_input, http_input_consumer) = ring(&args.data_dir, "http-in")?;
        let (http_output_producer, http_output) = ring(&args.data_dir, "http-out")?;
        let http_config = http_config(&config, sequencer.engine(), http_listen, &args.data_dir)?;
        let model = ReadModel::from_engine(
            sequencer.engine(),
            &http_config.assets,
            &http_config.instruments,
            http_config.finished_orders_max,
        );

        let loop_config =
            LoopConfig { echo_commands: true, release: config.release()?, ..LoopConfig::default() };
        let mut app =
            AppLoop::new(sequencer, fix_input_consumer, Some(fix_output_producer), loop_config);
        app.add_input(http_input_consumer);
        app.add_output(http_output_producer);
        let control = app.control();
        let status = Status {
            progress: app.progress(),
            fix: Arc::clone(&fix_metrics),
            ring_capacity: RING_SLOTS as u64,
        };
        let http = HttpApi::start(http_config, http_input, http_output, model, Arc::new(status))?;
        let http_address = http.local_addr();
        let idle = args.idle;
        let application_loop =
            std::thread::Builder::new().name("application-loop".to_owned()).spawn(move || {
                if !loop_core.is_some_and(core_affinity::set_for_current) {
                    eprintln!("application loop: not pinned");
                }
                let mut idle = idle.build();
                let stats = app.run(&mut idle, |_| false);
                (app.into_sequencer(), stats)
            })?;
        // Every table the node sizes up front exists now.
        crate::huge_pages::stop_prefaulting();
        let node = Node {
            fix_address,
            http_address,
            http,
            resume_seq,
            control,
            application_loop,
            fix,
            fix_metrics,
        };
        Ok((node, config))
    }

    /// Whether the application loop has stopped on its own (an error).
    pub fn failed(&self) -> bool {
        self.application_loop.is_finished()
    }

    /// Stops in order: the loop stops taking input, snapshots, flushes and releases what is
    /// durable; the gateways deliver the last reports; then sessions are logged out.
    pub fn stop(self) -> anyhow::Result<Stopped> {
        let _ = self.control.push(Control::Snapshot);
        let _ = self.control.push(Control::Shutdown);
        let (sequencer, stats) = self
            .application_loop
            .join()
            .map_err(|_| anyhow::anyhow!("application loop panicked"))?;
        let stats = stats.context("application loop")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.fix_metrics.seq.load(Ordering::Acquire) < stats.durable_seq
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (_bridge, fix) = self.fix.stop();
        self.http.shutdown();
        Ok(Stopped {
            seq: sequencer.seq(),
            state_hash: sequencer.engine().state_hash(),
            commands: stats.commands,
            fix,
        })
    }
}

/// Runs a node until SIGTERM or SIGINT, printing how to connect.
pub fn run(args: &RunArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let (node, config) = Node::start(args)?;
    writeln!(
        out,
        "exchange node running: data in {}, resumed at seq {}",
        args.data_dir.display(),
        node.resume_seq
    )?;
    writeln!(
        out,
        "durability {}; reports and acknowledgements released once {}",
        config.node.durability, config.node.release
    )?;
    writeln!(out, "idle: application loop {}, FIX thread {}", args.idle, args.gateway_idle)?;
    writeln!(out, "FIX 4.4 on {}: TargetCompID {}", node.fix_address, config.node.fix_comp_id)?;
    for session in &config.fix_sessions {
        writeln!(
            out,
            "  session SenderCompID {} (accounts {:?}){}",
            session.comp_id,
            session.accounts,
            if session.password.is_some() { ", Password (554) required" } else { "" }
        )?;
    }
    writeln!(out, "HTTP API on http://{}", node.http_address)?;
    for key in &config.api_keys {
        writeln!(
            out,
            "  API key {} ({}{})",
            key.key,
            key.role,
            if key.accounts.is_empty() {
                String::new()
            } else {
                format!(", accounts {:?}", key.accounts)
            }
        )?;
    }
    writeln!(
        out,
        "  e.g. curl -H 'Authorization: Bearer alice-key' http://{}/v1/balances/1",
        node.http_address
    )?;
    writeln!(out, "stop with SIGTERM or Ctrl-C")?;
    out.flush()?;
    while !stop.load(Ordering::Acquire) && !node.failed() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = node.stop()?;
    writeln!(
        out,
        "stopped: seq={} state_hash={}; {} commands this run; FIX {:?}",
        stopped.seq,
        crate::simulate::hex(&stopped.state_hash),
        stopped.commands,
        stopped.fix,
    )?;
    Ok(())
}
