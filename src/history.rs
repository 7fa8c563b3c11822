//! `exchange replay`, `exchange verify` and `exchange wallet history`: reading a data directory's
//! journals back into an engine, to rebuild, audit, or look at the past.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use engine::decimal::format_units;
use engine::{AccountId, AssetId, Engine};
use indicatif::{ProgressBar, ProgressStyle};
use sequencer::record::{encode_event, EventRecord};
use sequencer::sequencer::{read_commands, read_events, replay};

use crate::config::Config;
use crate::simulate::{hex, CONFIG_FILE};

fn load_config(data_dir: &Path) -> anyhow::Result<Config> {
    let path = data_dir.join(CONFIG_FILE);
    if !path.exists() {
        bail!("{} is not a data directory: {} is missing", data_dir.display(), path.display());
    }
    Ok(Config::load(Some(&path))?)
}

/// A progress bar on a terminal; hidden when stderr is not one.
fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style =
        ProgressStyle::with_template("{bar:40} {pos}/{len} commands ({per_sec}, eta {eta})");
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

/// Rebuilds the engine from the journal, to `to_seq` or the end.
pub fn rebuild(data_dir: &Path, to_seq: Option<u64>) -> anyhow::Result<Engine> {
    let config = load_config(data_dir)?;
    let total = read_commands(data_dir, |_| Ok(())).context("reading the command journal")?;
    let bar = progress(to_seq.map_or(total, |to_seq| to_seq.min(total)));
    let engine = replay(data_dir, config.engine_config(), to_seq, |seq| {
        if seq % 4096 == 0 {
            bar.set_position(seq);
        }
    })?;
    bar.finish_and_clear();
    if let Some(to_seq) = to_seq {
        if engine.seq() < to_seq {
            bail!("the journal ends at seq {}, before the requested {to_seq}", engine.seq());
        }
    }
    Ok(engine)
}

/// `exchange replay`: prints `seq=<n> state_hash=<hex>` last.
pub fn run_replay(
    data_dir: &Path,
    to_seq: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let engine = rebuild(data_dir, to_seq)?;
    writeln!(out, "seq={} state_hash={}", engine.seq(), hex(&engine.state_hash()))?;
    Ok(())
}

/// `exchange verify`: every check must hold; the first that fails is the error.
pub fn run_verify(data_dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let config = load_config(data_dir)?;
    let commands = read_commands(data_dir, |_| Ok(()))
        .context("command journal: checksums and sequence continuity")?;
    writeln!(out, "ok: {commands} commands, every checksum valid, sequence gap-free from 1")?;
    let mut journaled = Vec::new();
    let events = read_events(data_dir, |record| {
        journaled.push(record);
        Ok(())
    })
    .context("event journal: checksums and order")?;
    writeln!(out, "ok: {events} events, every checksum valid, in command order")?;

    let mut engine = Engine::new(config.engine_config());
    let mut scratch = Vec::with_capacity(1 << 16);
    let mut next = 0usize;
    let bar = progress(commands);
    read_commands(data_dir, |command| {
        scratch.clear();
        engine.handle(&command, &mut scratch);
        for (index, event) in scratch.iter().enumerate() {
            let index = u32::try_from(index).expect("events per command fit u32");
            let replayed = EventRecord {
                seq: command.seq,
                timestamp_ns: command.timestamp_ns,
                index,
                event: *event,
            };
            let Some(stored) = journaled.get(next) else {
                return Err(sequencer::sequencer::SequencerError::EventMismatch {
                    seq: command.seq,
                    index,
                });
            };
            if encode_event(stored) != encode_event(&replayed) {
                return Err(sequencer::sequencer::SequencerError::EventMismatch {
                    seq: command.seq,
                    index,
                });
            }
            next += 1;
        }
        if command.seq % 4096 == 0 {
            bar.set_position(command.seq);
        }
        Ok(())
    })
    .context("replayed events differ from the event journal")?;
    bar.finish_and_clear();
    if next != journaled.len() {
        bail!(
            "the event journal holds {} events the replay does not produce",
            journaled.len() - next
        );
    }
    writeln!(out, "ok: replayed events equal the event journal byte for byte")?;
    let audit =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.check_invariants()));
    if audit.is_err() {
        bail!("wallet and book invariants do not hold after replay (see the panic message above)");
    }
    writeln!(out, "ok: invariants hold (conservation per asset, holds, books, indexes)")?;
    writeln!(out, "seq={} state_hash={}", engine.seq(), hex(&engine.state_hash()))?;
    Ok(())
}

/// `exchange wallet history`: an account's balances at a past sequence number.
pub fn run_history(
    data_dir: &Path,
    account: u32,
    at_seq: Option<u64>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let config = load_config(data_dir)?;
    let engine = rebuild(data_dir, at_seq)?;
    let account = AccountId(account);
    if !engine.account_exists(account) {
        bail!("account {account} does not exist at seq {}", engine.seq());
    }
    writeln!(out, "account {account} at seq {}", engine.seq())?;
    for asset in &config.assets {
        let balance = engine.balance(account, AssetId(asset.id));
        writeln!(
            out,
            "{:<6} available {:>24}  held {:>24}",
            asset.symbol,
            format_units(balance.available.0, asset.scale).to_string(),
            format_units(balance.held.0, asset.scale).to_string(),
        )?;
    }
    Ok(())
}
