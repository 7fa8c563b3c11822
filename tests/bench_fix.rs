//! `exchange bench fix --quick` end to end: the binary starts a node of its own, drives it over
//! loopback FIX sessions, and must print a well-formed report with the JSON keys every benchmark
//! shares, and write its `.hgrm` file and plot. It lives here rather than in
//! `benches/tests/quick_runs.rs` because the node is part of the `exchange` binary, which the
//! benches crate cannot depend on. Timings are never asserted.

use std::process::Command;

#[test]
fn quick_fix_bench_reports_json_and_files() {
    let out_dir =
        std::env::temp_dir().join(format!("exchange-bench-fix-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let output = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["bench", "fix", "--quick", "--sessions", "2", "--json", "--durability"])
        .arg("page-cache")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("p99.99"), "{stdout}");
    assert!(stdout.contains("machine:"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let value: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    for key in [
        "commands_per_sec",
        "offered_per_sec",
        "p50_ns",
        "p99_ns",
        "p9999_ns",
        "max_ns",
        "durability",
        "machine",
        "generator_pinning",
    ] {
        assert!(value.get(key).is_some_and(|v| !v.is_null()), "missing key {key}: {last}");
    }
    assert_eq!(value["bench"], "fix");
    assert_eq!(value["durability"], "page-cache");
    assert_eq!(value["sessions"], 2);
    let rate = &value["rates"][0];
    assert!(rate["new_orders"]["commands"].as_u64().unwrap() > 0, "{last}");
    // The split covers every measured NewOrderSingle, and each part of a message's latency is
    // at most the whole, so no percentile of a part can exceed the whole's.
    for part in ["new_orders_send_delay", "new_orders_from_write"] {
        assert_eq!(rate[part]["commands"], rate["new_orders"]["commands"], "{part}: {last}");
        for key in ["p50_ns", "p99_ns", "max_ns"] {
            let (part_ns, whole_ns) = (&rate[part][key], &rate["new_orders"][key]);
            assert!(part_ns.as_u64().unwrap() <= whole_ns.as_u64().unwrap(), "{part} {key}");
        }
    }
    assert!(stdout.contains("NewOrderSingle, split: due → write began p50"), "{stdout}");
    // Arrival at the socket, by the kernel's receive timestamp, comes before the read; a
    // generator that got no timestamps would report the read's time and an equal median.
    let at_socket = &rate["new_orders_at_socket"];
    assert_eq!(at_socket["commands"], rate["new_orders"]["commands"], "{last}");
    let median = |summary: &serde_json::Value| summary["p50_ns"].as_u64().unwrap();
    assert!(median(at_socket) < median(&rate["new_orders"]), "{last}");
    assert!(stdout.contains("first answer at the generator's socket (kernel receive"), "{stdout}");
    assert_eq!(rate["counts"]["session_rejects"], 0, "{last}");
    assert!(value["closed_loop"]["acknowledged"].as_u64().unwrap() > 0, "{last}");
    for name in ["fix.png", "fix-newordersingle-at-5000-per-sec.hgrm"] {
        assert!(out_dir.join(name).exists(), "{name} written");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn fix_path_bench_times_every_stage_of_real_messages() {
    let output = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["bench", "fix-path", "--messages", "200", "--warmup", "50"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Every second order fills the one before it: an ack for each, and two fill reports per
    // pair, so two reports per message; fewer would mean a stage did not run.
    assert!(stdout.contains("; 400 execution reports"), "{stdout}");
    for stage in ["frame + decode", "application loop", "session outbound", "total per message"] {
        assert!(stdout.contains(stage), "missing {stage}: {stdout}");
    }
}
