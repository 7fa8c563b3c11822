//! `exchange bench fix`: starts a node in this process (or takes the address of a running one)
//! and runs the FIX load generator of `benches::fix_bench` against it.
//!
//! The node started here is an ordinary [`Node`] on a fresh data directory, configured from the
//! embedded default with loopback ports chosen by the OS, the durability and release policies
//! asked for, and
//! one FIX session per generator session, each trading for its own well-funded account with a
//! throttle far above any offered rate (the benchmark measures the path, not the throttle).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use benches::fix_bench::Length;
use benches::{FixBenchConfig, FixBenchReport, FixLogin};
use clap::Args;
use sequencer::app_loop::Release;
use sequencer::journal::Durability;
use sequencer::ring::IdleConfig;

use crate::config::{Config, DEFAULT_TOML};
use crate::node::{Node, RunArgs};

/// Account ids of the generator's sessions start here, clear of the demo accounts.
const FIRST_ACCOUNT: u32 = 100;

/// Flags of `exchange bench fix`.
#[derive(Debug, Args)]
pub struct FixArgs {
    /// FIX sessions the generator opens.
    #[arg(long, default_value_t = 4)]
    sessions: usize,
    /// Offered rates of the open-loop runs, order messages per second over all sessions (a
    /// comma list; the first is the JSON headline) [default: 50000].
    #[arg(long = "rate", value_delimiter = ',')]
    rates_per_sec: Option<Vec<u64>>,
    /// Seconds of each measured open-loop run [default: 10].
    #[arg(long, conflicts_with = "orders")]
    seconds: Option<f64>,
    /// Order messages of each measured open-loop run, instead of --seconds.
    #[arg(long)]
    orders: Option<u64>,
    /// Seconds of warm-up before each measured run, at its rate, not recorded [default: 3].
    #[arg(long)]
    warmup_seconds: Option<f64>,
    /// Seconds of the closed-loop throughput run; 0 skips it [default: 5].
    #[arg(long)]
    closed_seconds: Option<f64>,
    /// Durability of the node started here: page-cache, group-commit,
    /// group-commit:MICROS:RECORDS or sync. With --connect, only a label for the report.
    #[arg(long)]
    durability: Option<Durability>,
    /// When the started node releases reports: written (journal write in the page cache, the
    /// group commit's fsync following) or durable (after the fsync: fsync before release)
    /// [default: written]. With --connect, only a label for the report.
    #[arg(long)]
    release: Option<Release>,
    /// Run against the node at this address instead of starting one.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// With --connect: sessions as COMPID:PASSWORD (a comma list) [default: the demo sessions
    /// of ops/exchange.toml].
    #[arg(long = "login", value_delimiter = ',')]
    logins: Option<Vec<String>>,
    /// How the started node's application loop waits when idle (it has a core of its own).
    #[arg(long, default_value = "busy-spin")]
    idle: IdleConfig,
    /// How the started node's FIX I/O thread waits when idle (it shares a core with the
    /// generator on two cores): backoff sleeps in epoll until a socket is ready (up to 1 ms)
    /// whenever no answer is awaited, and its spin and park settings do not apply; busy-spin
    /// and yield never sleep.
    #[arg(long, default_value = "backoff")]
    gateway_idle: IdleConfig,
    /// Data directory of the started node [default: a fresh directory under the system's
    /// temporary directory, removed afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seed of the order mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for .hgrm files and the PNG plot [default: ./bench-out].
    #[arg(long = "out")]
    out_dir: Option<PathBuf>,
    /// A small run for a smoke test.
    #[arg(long)]
    quick: bool,
    /// Print the summary as one JSON line last.
    #[arg(long)]
    pub json: bool,
}

fn nanos(seconds: f64) -> anyhow::Result<u64> {
    let duration = Duration::try_from_secs_f64(seconds).context("seconds must be non-negative")?;
    Ok(u64::try_from(duration.as_nanos())?)
}

/// The benchmark settings from the flags, for the node at `address`.
fn bench_config(
    args: &FixArgs,
    address: SocketAddr,
    logins: Vec<FixLogin>,
) -> anyhow::Result<FixBenchConfig> {
    let mut config = if args.quick {
        FixBenchConfig::quick(address, logins)
    } else {
        FixBenchConfig::new(address, logins)
    };
    if let Some(rates) = &args.rates_per_sec {
        config.rates_per_sec.clone_from(rates);
    }
    if let Some(seconds) = args.seconds {
        config.measured = Length::Nanos(nanos(seconds)?);
    }
    if let Some(orders) = args.orders {
        config.measured = Length::Messages(orders);
    }
    if let Some(seconds) = args.warmup_seconds {
        config.warmup_ns = nanos(seconds)?;
    }
    if let Some(seconds) = args.closed_seconds {
        config.closed_loop_ns = nanos(seconds)?;
    }
    config.seed = args.seed;
    config.out_dir = args.out_dir.clone().unwrap_or_else(|| PathBuf::from("bench-out"));
    Ok(config)
}

/// The sessions the generator logs on with, against a node started here.
pub fn bench_logins(sessions: usize) -> Vec<FixLogin> {
    (1..=sessions)
        .map(|index| FixLogin {
            comp_id: format!("BENCH{index}"),
            password: Some(format!("bench-{index}")),
        })
        .collect()
}

/// The node's configuration: the embedded default with OS-chosen loopback ports, `durability`,
/// `release`, and one session and funded account per generator session.
pub fn node_toml(
    durability: &str,
    release: Release,
    logins: &[FixLogin],
) -> anyhow::Result<String> {
    let mut table: toml::Table = DEFAULT_TOML.parse()?;
    let node = table
        .entry("node")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("[node] is a table")?;
    node.insert("fix_listen".into(), "127.0.0.1:0".into());
    node.insert("http_listen".into(), "127.0.0.1:0".into());
    node.insert("durability".into(), durability.into());
    node.insert("release".into(), release.to_string().into());
    let mut sessions = toml::value::Array::new();
    let mut accounts =
        table.get("accounts").and_then(toml::Value::as_array).cloned().unwrap_or_default();
    for (index, login) in logins.iter().enumerate() {
        let account = FIRST_ACCOUNT + u32::try_from(index)?;
        let mut session = toml::Table::new();
        session.insert("comp_id".into(), login.comp_id.clone().into());
        if let Some(password) = &login.password {
            session.insert("password".into(), password.clone().into());
        }
        session.insert("accounts".into(), vec![i64::from(account)].into());
        session.insert("throttle_per_second".into(), 10_000_000.into());
        session.insert("throttle_burst".into(), 1_000_000.into());
        sessions.push(session.into());
        let mut deposits = toml::Table::new();
        deposits.insert("USD".into(), "1000000000".into());
        deposits.insert("BTC".into(), "100000".into());
        let mut entry = toml::Table::new();
        entry.insert("id".into(), i64::from(account).into());
        entry.insert("name".into(), format!("bench-{}", index + 1).into());
        entry.insert("deposits".into(), deposits.into());
        accounts.push(entry.into());
    }
    table.insert("fix_sessions".into(), sessions.into());
    table.insert("accounts".into(), accounts.into());
    let text = toml::to_string(&table)?;
    // The node must accept what it is given; a bad configuration fails here, not mid-run.
    Config::from_toml(&text)?;
    Ok(text)
}

/// The demo sessions of the embedded configuration, or `COMPID:PASSWORD` flags.
fn connect_logins(args: &FixArgs) -> anyhow::Result<Vec<FixLogin>> {
    if let Some(logins) = &args.logins {
        return Ok(logins
            .iter()
            .map(|text| match text.split_once(':') {
                Some((comp_id, password)) => {
                    FixLogin { comp_id: comp_id.to_string(), password: Some(password.to_string()) }
                }
                None => FixLogin { comp_id: text.clone(), password: None },
            })
            .collect());
    }
    let config = Config::from_toml(DEFAULT_TOML)?;
    Ok(config
        .fix_sessions
        .iter()
        .take(args.sessions)
        .map(|session| FixLogin {
            comp_id: session.comp_id.clone(),
            password: session.password.clone(),
        })
        .collect())
}

fn policy_text(durability: Durability) -> String {
    benches::durable::policy_name(durability)
}

fn release(args: &FixArgs) -> Release {
    args.release.unwrap_or(Release::Written)
}

fn release_text(release: Release) -> String {
    match release {
        Release::Written => "written (journal in the page cache)".to_string(),
        Release::Durable => "durable (fsync before release)".to_string(),
    }
}

/// Runs `exchange bench fix` and prints its report (not the JSON line).
pub fn run(args: &FixArgs, out: &mut impl Write) -> anyhow::Result<FixBenchReport> {
    if let Some(address) = args.connect {
        let mut config = bench_config(args, address, connect_logins(args)?)?;
        config.durability = args.durability.map_or_else(
            || "as configured on the node (not known to the generator)".to_string(),
            policy_text,
        );
        config.release = args.release.map_or_else(
            || "as configured on the node (not known to the generator)".to_string(),
            release_text,
        );
        config.node = format!("already running at {address}");
        return Ok(benches::fix_bench::run(&config, out)?);
    }
    let durability = args.durability.unwrap_or_else(benches::durable::group_commit);
    let logins = bench_logins(args.sessions);
    in_data_dir(args.data_dir.as_deref(), "exchange-bench-fix", |data_dir| {
        let config_path = data_dir.join("bench-fix.toml");
        let toml = node_toml(&policy_text(durability), release(args), &logins)?;
        std::fs::write(&config_path, toml)?;
        run_on_node(args, data_dir, &config_path, durability, logins, out)
    })
}

/// Runs `run` in `given`, or in a fresh directory `<temp>/<name>-<pid>` that is removed
/// afterwards, whatever the outcome.
pub fn in_data_dir<T>(
    given: Option<&Path>,
    name: &str,
    run: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(given) = given else {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let result = run(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    };
    std::fs::create_dir_all(given)?;
    run(given)
}

fn run_on_node(
    args: &FixArgs,
    data_dir: &Path,
    config_path: &Path,
    durability: Durability,
    logins: Vec<FixLogin>,
    out: &mut impl Write,
) -> anyhow::Result<FixBenchReport> {
    let run_args = RunArgs {
        data_dir: data_dir.to_path_buf(),
        config: Some(config_path.to_path_buf()),
        idle: args.idle,
        gateway_idle: args.gateway_idle,
    };
    let (node, _config) = Node::start(&run_args).context("starting the node")?;
    let mut config = bench_config(args, node.fix_address, logins)?;
    config.durability = policy_text(durability);
    config.release = release_text(release(args));
    config.node = format!(
        "started in this process on {}: application loop pinned to the last core, idle {}; \
         every other thread (FIX gateway I/O, journal flushers, HTTP) kept off that core, \
         gateway idle {}; data in {}",
        node.fix_address,
        args.idle,
        args.gateway_idle,
        data_dir.display()
    );
    let report = benches::fix_bench::run(&config, out);
    let stopped = node.stop().context("stopping the node")?;
    writeln!(out, "node stopped at seq {} after {} commands", stopped.seq, stopped.commands)?;
    Ok(report?)
}
