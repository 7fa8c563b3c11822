//! The `exchange` binary as a user runs it: exit codes, the last-line JSON contract of the
//! benchmarks, and clear messages for bad input.

use std::process::{Command, Output};

fn exchange(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exchange")).args(arguments).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_checks_the_embedded_default() {
    let output = exchange(&["config"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("instrument 0 (BTC-USD)"), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("genesis: seq=18 state_hash="), "{last}");
    // The hash is a pure function of the config: a second process agrees.
    assert_eq!(text(&exchange(&["config"]).stdout).lines().last().unwrap(), last);
}

#[test]
fn config_refuses_a_broken_file_with_a_specific_message() {
    let directory = std::env::temp_dir().join(format!("exchange-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("broken.toml");
    let broken =
        include_str!("../ops/exchange.toml").replace("lot_size = \"0.01\"", "lot_size = \"0.001\"");
    std::fs::write(&path, broken).unwrap();
    let output = exchange(&["config", "--config", path.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("instrument BTC-USD"), "{stderr}");
    assert!(stderr.contains("not a whole number of quote minor units"), "{stderr}");
    let missing = exchange(&["config", "--config", "/nonexistent/exchange.toml"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("cannot read /nonexistent/exchange.toml"));
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn benchmarks_end_with_one_json_line() {
    let out = std::env::temp_dir().join(format!("exchange-cli-bench-{}", std::process::id()));
    let out = out.to_str().unwrap();
    for (bench, extra) in
        [("engine", &["--instruments", "1", "--no-peer"][..]), ("wallet", &[][..])]
    {
        let mut arguments = vec!["bench", bench, "--quick", "--json", "--out", out];
        arguments.extend_from_slice(extra);
        let output = exchange(&arguments);
        assert!(output.status.success(), "{bench}: {}", text(&output.stderr));
        let stdout = text(&output.stdout);
        let last = stdout.lines().last().unwrap();
        for key in ["commands_per_sec", "p50_ns", "p99_ns", "p9999_ns", "max_ns", "offered_per_sec"]
        {
            assert!(last.contains(&format!("\"{key}\":")), "{bench} JSON lacks {key}: {last}");
        }
        assert!(last.starts_with('{') && last.ends_with('}'), "{last}");
    }
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn unknown_subcommands_are_refused() {
    let output = exchange(&["frobnicate"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("unrecognized subcommand"));
}
