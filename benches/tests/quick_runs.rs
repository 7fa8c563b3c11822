//! Small end-to-end runs of the benchmarks through the library, as `exchange bench … --quick
//! --json` would make them: they must finish, write their files and print JSON with the keys
//! scripts rely on.

use std::path::PathBuf;

use benches::{EngineBenchConfig, Mix, WalletBenchConfig};

fn out_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("exchange-bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn assert_keys(json_line: &str, keys: &[&str]) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_str(json_line).expect("the JSON line parses");
    for key in keys {
        assert!(value.get(key).is_some_and(|v| !v.is_null()), "missing key {key}: {json_line}");
    }
    value
}

#[test]
fn quick_engine_bench_reports_json_and_files() {
    let dir = out_dir("engine");
    let config = EngineBenchConfig {
        mixes: vec![Mix::ExchangeCore, Mix::MarketSelfTrade],
        instruments: vec![1, 4],
        accounts: 200,
        resting_per_instrument: Some(20),
        measured_commands: 4_000,
        warmup_commands: 1_000,
        rates_per_sec: vec![200_000, 400_000],
        seed: 5,
        out_dir: dir.clone(),
        peer: true,
    };
    let mut text = Vec::new();
    let report = benches::engine_bench::run(&config, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("p99.99"), "{text}");
    let value = assert_keys(
        &report.to_json_line().unwrap(),
        &[
            "commands_per_sec",
            "p50_ns",
            "p99_ns",
            "p9999_ns",
            "max_ns",
            "offered_per_sec",
            "peer_commands_per_sec",
        ],
    );
    assert_eq!(value["offered_per_sec"], 200_000);
    assert_eq!(value["scenarios"].as_array().unwrap().len(), 4);
    assert!(report.commands_per_sec > 0.0);
    for name in
        ["engine-exchange-core-1instr.png", "engine-market-selftrade-4instr-at-400000-per-sec.hgrm"]
    {
        assert!(dir.join(name).is_file(), "{name} was not written");
    }
    let hgrm =
        std::fs::read_to_string(dir.join("engine-exchange-core-4instr-at-200000-per-sec.hgrm"))
            .unwrap();
    assert!(hgrm.contains("Percentile") && hgrm.contains("#[Max"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quick_wallet_bench_reports_json_and_files() {
    let dir = out_dir("wallet");
    let config = WalletBenchConfig {
        accounts: 100,
        measured_commands: 5_000,
        warmup_commands: 500,
        rates_per_sec: vec![250_000],
        out_dir: dir.clone(),
        ..WalletBenchConfig::quick()
    };
    let report = benches::wallet::run(&config, &mut std::io::sink()).unwrap();
    let value = assert_keys(
        &report.to_json_line().unwrap(),
        &["commands_per_sec", "p50_ns", "p99_ns", "p9999_ns", "max_ns", "offered_per_sec"],
    );
    assert!(value.get("peer_commands_per_sec").is_none());
    assert_eq!(report.rejects, report.stream.conflicting_retries);
    assert!(dir.join("wallet-transfers.png").is_file());
    assert!(dir.join("wallet-transfers-at-250000-per-sec.hgrm").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_settings_are_errors() {
    let config = EngineBenchConfig { rates_per_sec: vec![], ..EngineBenchConfig::quick() };
    let result = benches::engine_bench::run(&config, &mut std::io::sink());
    assert!(matches!(result, Err(benches::BenchError::InvalidSetting(_))));
}

#[test]
fn quick_ring_bench_reports_json_and_files() {
    let dir = out_dir("ring");
    let config = benches::RingBenchConfig {
        records: 20_000,
        warmup_records: 2_000,
        throughput_records: 100_000,
        rates_per_sec: vec![200_000, 400_000],
        slots: 256,
        ring_dir: std::env::temp_dir(),
        out_dir: dir.clone(),
        ..benches::RingBenchConfig::quick()
    };
    let mut text = Vec::new();
    let report = benches::ring::run(&config, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("p99.99"), "{text}");
    let value = assert_keys(
        &report.to_json_line().unwrap(),
        &["commands_per_sec", "p50_ns", "p99_ns", "p9999_ns", "max_ns", "offered_per_sec"],
    );
    assert_eq!(value["offered_per_sec"], 200_000);
    assert_eq!(value["latency"].as_array().unwrap().len(), 2);
    assert_eq!(report.latency[1].commands, 20_000);
    assert!(report.commands_per_sec > 0.0);
    assert!(dir.join("ring-hop.png").is_file());
    assert!(dir.join("ring-hop-at-400000-per-sec.hgrm").is_file());
    assert!(!config.ring_dir.join(format!("exchange-bench-ring-{}", std::process::id())).exists());
    std::fs::remove_dir_all(&dir).unwrap();
    let invalid = benches::RingBenchConfig { slots: 1000, ..benches::RingBenchConfig::quick() };
    let result = benches::ring::run(&invalid, &mut std::io::sink());
    assert!(matches!(result, Err(benches::BenchError::InvalidSetting(_))));
}

const DURABLE_KEYS: [&str; 7] =
    ["commands_per_sec", "p50_ns", "p99_ns", "p9999_ns", "max_ns", "offered_per_sec", "policies"];

fn assert_policies(value: &serde_json::Value, count: usize) {
    let policies = value["policies"].as_array().expect("a policies array");
    assert_eq!(policies.len(), count);
    for policy in policies {
        for key in &DURABLE_KEYS[..6] {
            assert!(policy.get(key).is_some_and(|v| !v.is_null()), "policy lacks {key}");
        }
    }
    assert_eq!(value["durability"], policies[0]["policy"]);
}

#[test]
fn quick_journal_bench_reports_every_policy() {
    let dir = out_dir("journal");
    let config = benches::JournalBenchConfig {
        throughput_records: 20_000,
        records: 5_000,
        warmup_records: 1_000,
        rate_per_sec: 200_000,
        time_limit_ns: 100_000_000,
        dir: std::env::temp_dir(),
        out_dir: dir.clone(),
        ..benches::JournalBenchConfig::quick()
    };
    let mut text = Vec::new();
    let report = benches::journal_bench::run(&config, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("page-cache") && text.contains("sync") && text.contains("pinned"));
    let value = assert_keys(&report.to_json_line().unwrap(), &DURABLE_KEYS);
    assert_policies(&value, 3);
    assert_eq!(value["durability"], "page-cache");
    assert!(report.commands_per_sec > 0.0);
    assert!(dir.join("journal-append.png").is_file());
    assert!(dir.join("journal-append-group-commit-at-200000-per-sec.hgrm").is_file());
    let leftover = format!("exchange-bench-journal-sync-{}", std::process::id());
    assert!(!config.dir.join(leftover).exists(), "the temporary journal was removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quick_loop_bench_reports_every_policy() {
    let dir = out_dir("loop");
    let config = benches::LoopBenchConfig {
        accounts: 100,
        resting_per_instrument: 50,
        warmup_commands: 1_000,
        measured_commands: 5_000,
        rate_per_sec: 200_000,
        time_limit_ns: 200_000_000,
        ring_dir: std::env::temp_dir(),
        out_dir: dir.clone(),
        ..benches::LoopBenchConfig::quick()
    };
    let mut text = Vec::new();
    let report = benches::loop_bench::run(&config, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("p99.99") && text.contains("pinned"), "{text}");
    let value = assert_keys(&report.to_json_line().unwrap(), &DURABLE_KEYS);
    assert_policies(&value, 3);
    assert_eq!(value["offered_per_sec"], 200_000);
    assert!(dir.join("loop.png").is_file());
    assert!(dir.join("loop-page-cache-at-200000-per-sec.hgrm").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quick_journaled_wallet_bench_counts_durable_transfers() {
    let dir = out_dir("wallet-journal");
    let config = WalletBenchConfig {
        accounts: 100,
        measured_commands: 5_000,
        warmup_commands: 500,
        rates_per_sec: vec![100_000],
        out_dir: dir.clone(),
        ..WalletBenchConfig::quick()
    };
    let durability = benches::durable::group_commit();
    let report = benches::wallet_journal::run(
        &config,
        durability,
        &std::env::temp_dir(),
        &mut std::io::sink(),
    )
    .unwrap();
    let value = assert_keys(&report.to_json_line().unwrap(), &DURABLE_KEYS);
    assert_policies(&value, 1);
    assert_eq!(value["durability"], "group-commit:1000:4096");
    assert_eq!(report.policies[0].measured, 5_000, "every transfer acknowledged once durable");
    assert!(dir.join("wallet-journal.png").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}
