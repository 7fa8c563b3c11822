//! `exchange replay`, `exchange verify` and `exchange wallet history`: reading a data directory's
//! snapshots and journals back into an engine, to rebuild, audit, or look at the past.
//!
//! Replay and history start from the newest valid snapshot at or below the requested seq and
//! replay only the journal after it; a snapshot that fails its checks is skipped with a warning
//! on stderr. Verification replays from genesis regardless, and checks every stored snapshot
//! against that replay as well as the newest one plus its tail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use engine::decimal::format_units;
use engine::{AccountId, AssetId, Engine};
use indicatif::{ProgressBar, ProgressStyle};
use sequencer::record::{encode_event, EventRecord};
use sequencer::sequencer::{
    read_commands, read_commands_from, read_events, replay, replay_from_snapshot, Replayed,
};
use sequencer::snapshot_store::{SnapshotStore, SnapshotStoreError, SNAPSHOTS};

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

/// Where the command journal ends, read from its last segment only.
fn journal_end(data_dir: &Path) -> anyhow::Result<u64> {
    let summary = read_commands_from(data_dir, u64::MAX, |_| Ok(()))
        .context("reading the end of the command journal")?;
    Ok(summary.last_seq.unwrap_or(0))
}

/// Rebuilds the engine to `to_seq` or the end: from the newest valid snapshot at or below it and
/// the journal after it, or from genesis with `from_genesis`. Skipped snapshots are warned about
/// on stderr.
pub fn rebuild(
    data_dir: &Path,
    to_seq: Option<u64>,
    from_genesis: bool,
) -> anyhow::Result<Replayed> {
    let config = load_config(data_dir)?;
    let end = journal_end(data_dir)?;
    let bar = progress(to_seq.map_or(end, |to_seq| to_seq.min(end)));
    let on_progress = |seq: u64| {
        if seq % 4096 == 0 {
            bar.set_position(seq);
        }
    };
    let replayed = if from_genesis {
        let engine = replay(data_dir, config.engine_config(), to_seq, on_progress)?;
        Replayed { engine, snapshot_seq: None, skipped: Vec::new(), journal_seq: end }
    } else {
        replay_from_snapshot(data_dir, config.engine_config(), to_seq, on_progress)?
    };
    bar.finish_and_clear();
    for skipped in &replayed.skipped {
        eprintln!("warning: {skipped}");
    }
    if let Some(seq) = replayed.snapshot_seq {
        eprintln!("replay: from the snapshot at seq {seq}");
    }
    if let Some(to_seq) = to_seq {
        if replayed.engine.seq() < to_seq {
            bail!("the journal ends at seq {}, before the requested {to_seq}", end);
        }
    }
    Ok(replayed)
}

/// `exchange replay`: prints `seq=<n> state_hash=<hex>` last.
pub fn run_replay(
    data_dir: &Path,
    to_seq: Option<u64>,
    from_genesis: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let engine = rebuild(data_dir, to_seq, from_genesis)?.engine;
    writeln!(out, "seq={} state_hash={}", engine.seq(), hex(&engine.state_hash()))?;
    Ok(())
}

/// The state hash of every stored snapshot that restores, by seq, for comparison with the
/// replay from genesis. Snapshots that do not restore, or lie past the journal, are reported as
/// warnings: recovery would skip them too, so they do not fail verification.
fn snapshot_hashes(
    data_dir: &Path,
    config: &Config,
    journal_seq: u64,
    out: &mut impl Write,
) -> anyhow::Result<BTreeMap<u64, [u8; 32]>> {
    let mut hashes = BTreeMap::new();
    let Some(store) = SnapshotStore::open_read_only(&data_dir.join(SNAPSHOTS))? else {
        return Ok(hashes);
    };
    for info in store.list()? {
        if info.seq > journal_seq {
            writeln!(
                out,
                "warning: snapshot at seq {} is past the end of the command journal \
                 (seq {journal_seq}); recovery deletes it",
                info.seq
            )?;
            continue;
        }
        match store.load(info.seq, config.engine_config()) {
            Ok(engine) => {
                hashes.insert(info.seq, engine.state_hash());
            }
            Err(SnapshotStoreError::Defect { seq, defect }) => {
                writeln!(out, "warning: snapshot at seq {seq} skipped: {defect}")?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(hashes)
}

/// `exchange verify`: every check must hold; the first that fails is the error.
// tidy: long function, the checks read best as one sequence in the order they are reported.
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
    let snapshots = snapshot_hashes(data_dir, &config, commands, out)?;
    let mut snapshot_mismatch = None;

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
        if let Some(hash) = snapshots.get(&command.seq) {
            if *hash != engine.state_hash() && snapshot_mismatch.is_none() {
                snapshot_mismatch = Some(command.seq);
            }
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
    if let Some(seq) = snapshot_mismatch {
        bail!("the snapshot at seq {seq} differs from the replay from genesis at that seq");
    }
    if !snapshots.is_empty() {
        let seqs: Vec<String> = snapshots.keys().map(u64::to_string).collect();
        writeln!(
            out,
            "ok: snapshots at seq {} equal the replay from genesis at their seqs",
            seqs.join(", ")
        )?;
    }
    let tail = replay_from_snapshot(data_dir, config.engine_config(), None, |_| {})
        .context("replay from the newest snapshot")?;
    if tail.engine.state_hash() != engine.state_hash() {
        bail!(
            "replay from the snapshot at seq {} and its journal tail gives state hash {} at seq \
             {}, replay from genesis gives {} at seq {}",
            tail.snapshot_seq.unwrap_or(0),
            hex(&tail.engine.state_hash()),
            tail.engine.seq(),
            hex(&engine.state_hash()),
            engine.seq(),
        );
    }
    match tail.snapshot_seq {
        Some(seq) => writeln!(
            out,
            "ok: replay from the newest valid snapshot (seq {seq}) plus the journal tail gives \
             the same state hash as replay from genesis"
        )?,
        None => writeln!(out, "ok: no valid snapshot; replay from genesis only")?,
    }
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
    let engine = rebuild(data_dir, at_seq, false)?.engine;
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
