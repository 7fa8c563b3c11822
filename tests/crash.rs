//! Crash recovery against the real binary: `exchange simulate` is killed with SIGKILL at
//! several moments, restarted on the same data directory each time, and must end where an
//! uninterrupted run ends. After every kill, everything the simulator reported durable must be
//! in the journal, and `exchange verify` must pass at the end. The simulations snapshot every
//! 2000 commands, so most restarts recover from a snapshot plus the journal tail, and a damaged
//! snapshot must be skipped with a warning.

// Test data is built from small counters; truncating them is the intent.
#![allow(clippy::cast_possible_truncation)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::TempDir;

const COMMANDS: &str = "12000";
const SEED: &str = "11";

fn exchange() -> Command {
    Command::new(env!("CARGO_BIN_EXE_exchange"))
}

fn simulate_args(data_dir: &Path) -> Vec<String> {
    simulate_count(data_dir, COMMANDS)
}

fn simulate_count(data_dir: &Path, commands: &str) -> Vec<String> {
    let data_dir = data_dir.to_str().unwrap().to_owned();
    [
        "simulate",
        "--data-dir",
        &data_dir,
        "--commands",
        commands,
        "--seed",
        SEED,
        "--durability",
        "group-commit:500:64",
        "--report-every",
        "500",
        "--snapshot-every",
        "2000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The last `seq=… state_hash=…` line of a command's output.
fn final_line(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    stdout.lines().last().unwrap().to_owned()
}

fn replayed_seq(data_dir: &Path) -> u64 {
    let output =
        exchange().args(["replay", "--data-dir", data_dir.to_str().unwrap()]).output().unwrap();
    let line = final_line(&output);
    let seq = line.strip_prefix("seq=").unwrap().split_whitespace().next().unwrap();
    seq.parse().unwrap()
}

/// Starts a simulation and kills it once it has reported `kill_after` as durable (plus a
/// moment, so the kill lands mid-batch). Returns the highest durable seq it reported.
fn run_and_kill(data_dir: &Path, kill_after: u64, linger: Duration) -> u64 {
    let mut child = exchange()
        .args(simulate_args(data_dir))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut durable = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(seq) = line.strip_prefix("durable seq=") {
            durable = seq.parse().unwrap();
            if durable >= kill_after {
                std::thread::sleep(linger);
                break;
            }
        }
    }
    // SIGKILL: no chance to flush or clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    durable
}

#[test]
fn killed_simulations_recover_to_the_uninterrupted_result() {
    let clean = TempDir::new("exchange-crash", "clean");
    let expected = final_line(&exchange().args(simulate_args(&clean.0)).output().unwrap());

    let crashed = TempDir::new("exchange-crash", "killed");
    for (round, (kill_after, linger_ms)) in
        [(1_500, 0), (4_000, 3), (6_500, 1), (9_000, 7)].into_iter().enumerate()
    {
        let durable = run_and_kill(&crashed.0, kill_after, Duration::from_millis(linger_ms));
        let recovered = replayed_seq(&crashed.0);
        assert!(
            recovered >= durable,
            "round {round}: reported durable seq {durable} but only {recovered} survived the kill"
        );
    }
    let resumed = final_line(&exchange().args(simulate_args(&crashed.0)).output().unwrap());
    assert_eq!(
        resumed, expected,
        "a killed and resumed run must end where an uninterrupted one does"
    );

    let verify =
        exchange().args(["verify", "--data-dir", crashed.0.to_str().unwrap()]).output().unwrap();
    assert!(verify.status.success(), "verify failed: {}", String::from_utf8_lossy(&verify.stderr));
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(report.contains("replayed events equal the event journal byte for byte"), "{report}");
    assert_eq!(report.lines().last().unwrap(), expected);
}

#[test]
fn verify_refuses_a_corrupted_journal_with_a_specific_message() {
    let dir = TempDir::new("exchange-crash", "corrupt");
    let output = exchange().args(simulate_count(&dir.0, "2000")).output().unwrap();
    assert!(output.status.success());
    let journal = dir.0.join("journal");
    let segment = std::fs::read_dir(&journal)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.file_name().unwrap().to_str().unwrap().starts_with("commands-"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip a bit inside the 100th command record: corruption before the tail.
    let frame = testkit::frame_offsets(&bytes)[99];
    bytes[frame + 40] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let verify =
        exchange().args(["verify", "--data-dir", dir.0.to_str().unwrap()]).output().unwrap();
    assert!(!verify.status.success());
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(stderr.contains("corrupt record"), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    // The node refuses to start on it too, naming the place.
    let restart = exchange().args(simulate_args(&dir.0)).output().unwrap();
    assert!(!restart.status.success());
    let place = format!("offset {frame}");
    assert!(String::from_utf8_lossy(&restart.stderr).contains(&place));
}

#[test]
fn wallet_history_reads_balances_at_past_sequence_numbers() {
    let dir = TempDir::new("exchange-crash", "history");
    let output = exchange().args(simulate_count(&dir.0, "3000")).output().unwrap();
    assert!(output.status.success());
    let data_dir = dir.0.to_str().unwrap();
    let at = |seq: &str| {
        let output = exchange()
            .args(["wallet", "history", "--data-dir", data_dir, "--account", "1", "--at-seq", seq])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let genesis = at("18");
    assert!(genesis.starts_with("account 1 at seq 18"), "{genesis}");
    // At genesis the demo account holds exactly its configured deposits.
    assert!(
        genesis
            .contains("USD    available                  1000000  held                        0"),
        "{genesis}"
    );
    assert_ne!(at("1500"), at("3018"));
    let missing = exchange()
        .args(["wallet", "history", "--data-dir", data_dir, "--account", "99"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("account 99 does not exist"));
}

#[test]
fn a_damaged_snapshot_is_skipped_by_replay_and_reported_by_verify() {
    let dir = TempDir::new("exchange-crash", "snapshot");
    let output = exchange().args(simulate_count(&dir.0, "5000")).output().unwrap();
    let expected = final_line(&output);
    let data_dir = dir.0.to_str().unwrap();
    let replay = |extra: &[&str]| {
        exchange().args(["replay", "--data-dir", data_dir]).args(extra).output().unwrap()
    };
    let from_snapshot = replay(&[]);
    assert_eq!(final_line(&from_snapshot), expected);
    let note = String::from_utf8_lossy(&from_snapshot.stderr).into_owned();
    let newest: u64 = note
        .split("replay: from the snapshot at seq ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("replay names its snapshot: {note}"))
        .parse()
        .unwrap();
    // Periodic snapshots are stored by a writer thread; one that came due while it was busy is
    // taken at shutdown, so the newest is at or after 4000 whatever the disk's speed.
    assert!(newest >= 4000, "{note}");

    // Flip a byte of the newest snapshot's engine bytes, through RocksDB itself.
    {
        let db = rocksdb::DB::open_default(dir.0.join("snapshots")).unwrap();
        let mut value = db.get(newest.to_be_bytes()).unwrap().unwrap();
        value[32 + 100] ^= 0x01;
        db.put(newest.to_be_bytes(), value).unwrap();
    }
    let fallback = replay(&[]);
    assert_eq!(final_line(&fallback), expected, "an older snapshot or genesis gives the same");
    let stderr = String::from_utf8_lossy(&fallback.stderr).into_owned();
    assert!(stderr.contains(&format!("warning: snapshot at seq {newest} skipped")), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    let genesis = replay(&["--from-genesis"]);
    assert_eq!(final_line(&genesis), expected);
    assert!(!String::from_utf8_lossy(&genesis.stderr).contains("from the snapshot"));

    let verify = exchange().args(["verify", "--data-dir", data_dir]).output().unwrap();
    assert_eq!(final_line(&verify), expected);
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(report.contains(&format!("warning: snapshot at seq {newest} skipped")), "{report}");
    assert!(report.contains("plus the journal tail gives the same state hash"), "{report}");

    // The node itself recovers past it, and a later run still verifies.
    let resumed = exchange().args(simulate_count(&dir.0, "5500")).output().unwrap();
    let resumed_stderr = String::from_utf8_lossy(&resumed.stderr).into_owned();
    assert!(resumed.status.success(), "{resumed_stderr}");
    assert!(resumed_stderr.contains("recovery: warning: snapshot at seq"), "{resumed_stderr}");
    let verify = exchange().args(["verify", "--data-dir", data_dir]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
