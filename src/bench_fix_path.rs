//! `exchange bench fix-path`: what the FIX order path costs in CPU per message, on one thread,
//! without sockets or a scheduler in the way.
//!
//! `exchange bench fix` measures the path as a client sees it, and on a two-core machine its
//! figures are mostly the cost of sharing a core: the generator, the gateway's I/O thread and
//! every helper take turns on one core. This benchmark runs every stage of the path in turn on
//! the calling thread, with the node's real parts (fefix decoding, the session layer with its
//! session log, the order entry and its request log, in-memory rings, the application loop with its
//! sequencer, journals and engine), and times each stage, so that work on the path can be
//! measured in microseconds per message rather than guessed from a noisy wire-to-wire figure.
//!
//! Per message: the NewOrderSingle's bytes are framed and decoded, the session checks and
//! records them, the bridge turns them into a stored request and pushes its command, the loop
//! sequences, journals (page cache) and matches it, the bridge turns the output into execution
//! reports, and the session numbers, stores and encodes them; the store is flushed as the
//! acceptor does before sending. Two sessions alternate buy and sell orders at one price, so
//! every second order fills the one before it and the book stays small. The orders' bytes are
//! encoded before the clock starts; nothing else is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use gateway::bridge::FixBridge;
use gateway::fix::codec::{
    encode, format_utc_timestamp, DecoderTables, FixDecoder, FrameBuffer, Header,
};
use gateway::fix::{FixStore, Outbox, Session, SessionConfig, SessionEvent, SessionKey};
use gateway::orders::store::OrderStore;
use gateway::Message;
use sequencer::app_loop::{AppLoop, LoopConfig, Release};
use sequencer::journal::Durability;
use sequencer::record::RECORD_BYTES;
use sequencer::ring::Ring;

use crate::bench_fix::{bench_logins, in_data_dir, node_toml};
use crate::config::Config;
use crate::node::{fix_sessions, instruments};
use crate::simulate::open_sequencer;

/// Flags of `exchange bench fix-path`.
#[derive(Debug, Args)]
pub struct FixPathArgs {
    /// Messages measured.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Messages sent first, untimed, to warm caches, the book and the stores.
    #[arg(long, default_value_t = 50_000)]
    warmup: u64,
    /// Data directory [default: a fresh directory under the system's temporary directory,
    /// removed afterwards].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The stages of one message, in order, as the report names them.
const STAGES: [&str; 7] = [
    "frame + decode",
    "session inbound (checks, sequence store)",
    "order entry (parse, validate, request stored)",
    "submit (order store write, ring push)",
    "application loop (sequence, journal, match)",
    "reports (output ring to ExecutionReports)",
    "session outbound (number, store, encode) + store write",
];

/// Per-stage nanoseconds summed over the measured messages.
#[derive(Debug, Default)]
struct Totals {
    stages: [u64; STAGES.len()],
    reports: u64,
}

struct FixPath {
    sessions: Vec<(SessionConfig, Session)>,
    fix_store: FixStore,
    bridge: FixBridge,
    app: AppLoop,
    frames: FrameBuffer,
    decoder: FixDecoder,
    outbox: Outbox,
    sent: Vec<u8>,
}

/// Runs the benchmark and prints its report.
pub fn run(args: &FixPathArgs, out: &mut impl Write) -> anyhow::Result<()> {
    in_data_dir(args.data_dir.as_deref(), "exchange-bench-fix-path", |dir| measure(args, dir, out))
}

fn measure(args: &FixPathArgs, dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let mut path = build(dir)?;
    let orders = encode_orders(&path.sessions, args.warmup + args.messages);
    let mut totals = Totals::default();
    for (index, (session, bytes)) in orders.iter().enumerate() {
        if index as u64 == args.warmup {
            totals = Totals::default();
        }
        path.message(*session, bytes, &mut totals)?;
    }
    let measured = args.messages.max(1);
    let total: u64 = totals.stages.iter().sum();
    writeln!(
        out,
        "FIX order path on one thread, no sockets: {} messages after {} untimed, page cache, \
         released when written; {} execution reports",
        args.messages, args.warmup, totals.reports
    )?;
    for (name, nanos) in STAGES.iter().zip(totals.stages) {
        let share = 100.0 * nanos as f64 / total.max(1) as f64;
        writeln!(out, "  {:>8.2} µs  {share:>5.1}%  {name}", nanos as f64 / measured as f64 / 1e3)?;
    }
    writeln!(
        out,
        "  {:>8.2} µs  total per message ({:.0} messages/s on one core)",
        total as f64 / measured as f64 / 1e3,
        measured as f64 * 1e9 / total.max(1) as f64
    )?;
    Ok(())
}

/// A node's FIX path without its threads: two logged-on sessions, the bridge, the loop.
fn build(dir: &Path) -> anyhow::Result<FixPath> {
    let logins = bench_logins(2);
    let config = Config::from_toml(&node_toml("page-cache", Release::Written, &logins)?)?;
    let (sequencer, _) = open_sequencer(dir, &config, Durability::PageCache, 0)?;
    let (input, input_consumer) = Ring::create_in_memory(1 << 16, RECORD_BYTES)?.split();
    let (output_producer, output) = Ring::create_in_memory(1 << 16, RECORD_BYTES)?.split();
    let session_configs = fix_sessions(&config);
    let order_store = OrderStore::open(&dir.join("fix-orders"), false)?;
    let bridge = FixBridge::recover(
        instruments(&config)?,
        &session_configs,
        order_store,
        dir,
        input,
        output,
    )?;
    let loop_config =
        LoopConfig { echo_commands: true, release: Release::Written, ..LoopConfig::default() };
    let app = AppLoop::new(sequencer, input_consumer, Some(output_producer), loop_config);
    let fix_store = FixStore::open(&dir.join("fix-sessions"))?;
    let mut sessions = Vec::new();
    for session_config in session_configs {
        let store =
            fix_store.session(&session_config.sender_comp_id, &session_config.target_comp_id)?;
        let session = Session::new(session_config.clone(), Box::new(store))?;
        sessions.push((session_config, session));
    }
    let tables = DecoderTables::fix44();
    let mut path = FixPath {
        sessions,
        fix_store,
        bridge,
        app,
        frames: FrameBuffer::new(16 * 1024),
        decoder: FixDecoder::new(Arc::clone(&tables)),
        outbox: Outbox::default(),
        sent: Vec::with_capacity(1 << 16),
    };
    let now = now_ns();
    for ((config, session), login) in path.sessions.iter_mut().zip(&logins) {
        let logon = client_message(config, 1, &logon_message(login));
        path.frames.extend(&logon);
        let range = path.frames.next_frame().context("a whole Logon")??;
        let inbound = path.decoder.decode(path.frames.frame(range))?;
        session.handle_inbound(now, inbound)?;
        while session.poll_event().is_some() {}
        session.drain_transmit(&mut path.sent);
    }
    Ok(path)
}

impl FixPath {
    /// One NewOrderSingle through every stage; adds each stage's time to `totals`.
    fn message(&mut self, index: usize, bytes: &[u8], totals: &mut Totals) -> anyhow::Result<()> {
        let now = now_ns();
        let mut clock = Instant::now();
        let mut lap = |totals: &mut Totals, stage: usize| {
            let elapsed = clock.elapsed();
            clock = Instant::now();
            totals.stages[stage] += u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        };
        self.frames.extend(bytes);
        let range = self.frames.next_frame().context("a whole message")??;
        let inbound = self.decoder.decode(self.frames.frame(range))?;
        lap(totals, 0);
        let (config, session) = &mut self.sessions[index];
        session.handle_inbound(now, inbound)?;
        let event = session.poll_event();
        lap(totals, 1);
        let key = SessionKey(u32::try_from(index)?);
        match event {
            Some(SessionEvent::Application { message, .. }) => {
                gateway::fix::Application::on_message(
                    &mut self.bridge,
                    key,
                    config,
                    message,
                    &mut self.outbox,
                );
            }
            other => anyhow::bail!("expected an application message, got {other:?}"),
        }
        lap(totals, 2);
        gateway::fix::Application::poll(&mut self.bridge, &mut self.outbox);
        lap(totals, 3);
        self.app.do_work()?;
        lap(totals, 4);
        gateway::fix::Application::poll(&mut self.bridge, &mut self.outbox);
        lap(totals, 5);
        while let Some((to, report)) = self.outbox.pop() {
            totals.reports += u64::from(report.msg_type == "8");
            let (_, session) = &mut self.sessions[to.0 as usize];
            session.send_application(now, &report)?;
            session.drain_transmit(&mut self.sent);
        }
        self.fix_store.flush()?;
        self.sent.clear();
        lap(totals, 6);
        Ok(())
    }
}

fn now_ns() -> u64 {
    gateway::fix::acceptor::now_ns()
}

fn utc_now() -> String {
    let mut text = String::new();
    format_utc_timestamp(now_ns(), &mut text);
    text
}

fn logon_message(login: &benches::FixLogin) -> Message {
    let mut logon = Message::new("A").with(98, '0').with(108, 30u32).with(141, 'Y');
    logon.push(553, &login.comp_id);
    if let Some(password) = &login.password {
        logon.push(554, password);
    }
    logon
}

/// A message as the session's counterparty sends it.
fn client_message(config: &SessionConfig, seq: u64, message: &Message) -> Vec<u8> {
    let sending_time = utc_now();
    let header = Header {
        sender_comp_id: &config.target_comp_id,
        target_comp_id: &config.sender_comp_id,
        seq,
        sending_time: &sending_time,
        orig_sending_time: None,
    };
    let mut bytes = Vec::new();
    encode(&mut bytes, &header, &message.msg_type, message.body());
    bytes
}

/// `count` NewOrderSingles, alternating sessions and sides at one price: each sell fills the
/// buy before it. Returns the session index and the bytes of each.
fn encode_orders(sessions: &[(SessionConfig, Session)], count: u64) -> Vec<(usize, Vec<u8>)> {
    (0..count)
        .map(|number| {
            let index = usize::try_from(number % 2).expect("0 or 1");
            let seq = 2 + number / 2;
            let side = if index == 0 { '1' } else { '2' };
            let order = Message::new("D")
                .with(11, format!("o{number}"))
                .with(1, sessions[index].0.accounts[0])
                .with(55, "BTC-USD")
                .with(54, side)
                .with(38, "0.01")
                .with(40, '2')
                .with(44, "60000")
                .with(59, '1')
                .with(60, utc_now());
            (index, client_message(&sessions[index].0, seq, &order))
        })
        .collect()
}
