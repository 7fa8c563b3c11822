//! Drives `tests/quickfix/fix_client` (a QuickFIX initiator) from a Rust integration test.
//!
//! Include it from a test file with
//! `#[path = "quickfix/driver.rs"] mod quickfix;` and use it like this:
//!
//! ```ignore
//! let binary = quickfix::build_client();
//! let args = ["--sender", "ALICE", "--store", dir, "--port", "9878"];
//! let mut alice = quickfix::Client::spawn(&binary, &args);
//! alice.run("logon");
//! alice.run("send 35=D|11=a1|55=BTC-USD|54=1|38=1|40=2|44=60000|59=1|60=now");
//! alice.run("expect 35=8|150=0|11=a1|37=$oid");
//! let transcript = alice.finish();
//! ```
//!
//! The client executes one scenario command per line and prints exactly one `ok ...` or
//! `fail ...` line per command, so the driver sends a line and reads until that answer. Every
//! other line (`recv`, `sent`, `event`, ...) is kept in the transcript.

// Each test file that includes this module uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long the driver waits for any one command's answer. The client's own `--timeout`
/// (default 10 s) bounds its waits, so this only catches a client that hangs.
const COMMAND_GUARD: Duration = Duration::from_secs(120);

/// Builds the client with `tests/quickfix/build.sh` if it is missing or stale and returns its
/// path. The binary goes to `$CARGO_TARGET_DIR/quickfix` (or `target/quickfix`).
pub fn build_client() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let output = Command::new(root.join("tests/quickfix/build.sh"))
        .arg(target.join("quickfix"))
        .arg("fix_client")
        .output()
        .expect("run tests/quickfix/build.sh");
    assert!(
        output.status.success(),
        "building the QuickFIX client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("build.sh prints a UTF-8 path");
    PathBuf::from(stdout.lines().last().expect("build.sh prints the binary's path").trim())
}

/// Fetches QuickFIX's FIX 4.4 data dictionary with `tests/quickfix/dictionary.sh` (pip, once) and
/// returns its path, for the client's `--dictionary` option; `None` if it cannot be had.
pub fn dictionary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let output = Command::new(root.join("tests/quickfix/dictionary.sh"))
        .arg(target.join("quickfix"))
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let stdout = String::from_utf8(output.stdout).ok()?;
    let path = PathBuf::from(stdout.lines().last()?.trim());
    (output.status.success() && path.is_file()).then_some(path)
}

/// A running QuickFIX client process.
#[derive(Debug)]
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    transcript: Vec<String>,
}

impl Client {
    /// Starts the client with the given command-line arguments (see tests/quickfix/README.md).
    pub fn spawn(binary: &Path, args: &[&str]) -> Client {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the QuickFIX client");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (sender, lines) = mpsc::channel();
        // A reader thread turns the client's stdout into a channel so that waits can time out.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Client { child, stdin, lines, transcript: Vec::new() }
    }

    /// Runs one scenario command and returns the lines printed while it ran, ending with its
    /// `ok` line; panics with the whole transcript if the command fails.
    pub fn run(&mut self, command: &str) -> Vec<String> {
        match self.try_run(command) {
            Ok(lines) => lines,
            Err(error) => panic!(
                "QuickFIX client: {error}\n--- transcript ---\n{}",
                self.transcript.join("\n")
            ),
        }
    }

    /// Runs one scenario command; `Err` carries the client's `fail` line (or why no answer came).
    pub fn try_run(&mut self, command: &str) -> Result<Vec<String>, String> {
        let stdin = self.stdin.as_mut().ok_or("the client's stdin is closed")?;
        writeln!(stdin, "{command}").map_err(|e| format!("writing '{command}': {e}"))?;
        stdin.flush().map_err(|e| format!("writing '{command}': {e}"))?;
        let start = self.transcript.len();
        let deadline = Instant::now() + COMMAND_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let answer = line.starts_with("ok ") || line.starts_with("fail ");
                    let failed = line.starts_with("fail ");
                    self.transcript.push(line.clone());
                    if failed {
                        return Err(line);
                    }
                    if answer {
                        return Ok(self.transcript[start..].to_vec());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no answer to '{command}' within {COMMAND_GUARD:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the client exited while running '{command}'"))
                }
            }
        }
    }

    /// Everything the client has printed so far.
    pub fn transcript(&self) -> &[String] {
        &self.transcript
    }

    /// Sends `quit` (a clean logout), waits for the process to exit successfully and returns
    /// the whole transcript.
    pub fn finish(mut self) -> Vec<String> {
        self.run("quit");
        self.stdin = None;
        while let Ok(line) = self.lines.recv_timeout(COMMAND_GUARD) {
            self.transcript.push(line);
        }
        let status = self.child.wait().expect("wait for the QuickFIX client");
        assert!(status.success(), "QuickFIX client exited with {status}");
        std::mem::take(&mut self.transcript)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A test that panicked half-way must not leave the client running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
