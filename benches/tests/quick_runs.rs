//! Small end-to-end runs of both benchmarks through the library, as `exchange bench … --quick
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
