//! Interoperability with a FIX engine someone else wrote: QuickFIX 1.15 (C++, Debian's
//! `libquickfix-dev`), unmodified and under standard settings, is the initiator against the real
//! `exchange run` binary over loopback TCP. It logs on with a password, sends orders of each
//! type, amends and cancels, trades between two sessions, logs out, reconnects and asks for a
//! resend; then the node is stopped with SIGTERM and restarted, and the same session continues
//! with the same sequence numbers and the same orders. With QuickFIX's FIX 4.4 data dictionary
//! (fetched once by `tests/quickfix/dictionary.sh`), QuickFIX also checks every message we send
//! against the standard and would answer a malformed one with a Reject, which the test forbids.
//!
//! The same binary's HTTP API is exercised end to end too: a transfer, authentication and
//! authorization errors, balances, and after a restart the same balances and an idempotent retry
//! answered with the first result.

#[path = "quickfix/driver.rs"]
mod quickfix;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use testkit::TempDir;

/// A running `exchange run`, with the FIX port it printed.
struct NodeProcess {
    child: Child,
    fix_port: u16,
    http: String,
    lines: mpsc::Receiver<String>,
    /// What the node printed up to its addresses.
    banner: Vec<String>,
}

impl NodeProcess {
    fn start(data_dir: &Path, config: &Path) -> NodeProcess {
        NodeProcess::start_with(data_dir, config, &[])
    }

    /// As [`NodeProcess::start`], with more arguments for `exchange run`.
    fn start_with(data_dir: &Path, config: &Path, arguments: &[&str]) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_exchange"))
            .args(["run", "--data-dir", data_dir.to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .args(arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        // A failure bound only: the node prints its addresses as soon as it listens.
        let (mut fix_port, mut http, mut banner) = (None, None, Vec::new());
        while fix_port.is_none() || http.is_none() {
            let line = lines.recv_timeout(Duration::from_secs(60)).expect("the node starts");
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("FIX 4.4 on ") {
                let address = rest.split(':').nth(1).unwrap();
                fix_port = Some(address.trim().parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("HTTP API on http://") {
                http = Some(rest.trim().to_owned());
            }
        }
        NodeProcess { child, fix_port: fix_port.unwrap(), http: http.unwrap(), lines, banner }
    }

    /// SIGTERM, then the node's last line (`stopped: seq=... state_hash=...`).
    fn stop(&mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the node exits cleanly on SIGTERM: {status}");
        let mut last = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            last = line;
        }
        assert!(last.starts_with("stopped: seq="), "{last}");
        last
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A failed test must not leave a node behind; after a clean stop this finds none.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns the status line's code, the headers
/// and the body. `Connection: close` lets the body run to the end of the stream.
fn http(address: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let auth = key.map(|key| format!("Authorization: Bearer {key}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response)
}

/// A fresh directory for one test, created: the node and the clients write into it.
fn interop_dir(name: &str) -> TempDir {
    let dir = TempDir::new("exchange-interop", name);
    std::fs::create_dir_all(&dir.0).unwrap();
    dir
}

/// The embedded default configuration on a FIX port that was free a moment ago (the same one
/// after the restart, so that QuickFIX reconnects to it) and any free HTTP port.
fn config(dir: &Path) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/exchange.toml");
    let text = std::fs::read_to_string(default)
        .unwrap()
        .replace("fix_listen = \"127.0.0.1:9878\"", &format!("fix_listen = \"127.0.0.1:{port}\""))
        .replace("http_listen = \"127.0.0.1:8080\"", "http_listen = \"127.0.0.1:0\"");
    let path = dir.join("exchange.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn client(
    binary: &Path,
    dictionary: Option<&Path>,
    port: u16,
    sender: &str,
    password: &str,
    store: &Path,
) -> quickfix::Client {
    let port = port.to_string();
    let mut args = vec![
        "--sender",
        sender,
        "--password",
        password,
        "--store",
        store.to_str().unwrap(),
        "--port",
        &port,
        "--heartbeat",
        "5",
    ];
    if let Some(dictionary) = dictionary {
        args.extend(["--dictionary", dictionary.to_str().unwrap()]);
    }
    quickfix::Client::spawn(binary, &args)
}

#[test]
// tidy: long function, one trading story across sessions and a restart reads best in order.
fn quickfix_trades_through_exchange_run_across_a_restart() {
    let dir = interop_dir("quickfix");
    let binary = quickfix::build_client();
    let dictionary = quickfix::dictionary();
    if dictionary.is_none() {
        eprintln!("note: no FIX44.xml; QuickFIX runs without validating our messages");
    }
    let dictionary = dictionary.as_deref();
    let data_dir = dir.0.join("data");
    let config = config(&dir.0);
    let mut node = NodeProcess::start(&data_dir, &config);
    let port = node.fix_port;
    let (alice_store, bob_store) = (dir.0.join("alice"), dir.0.join("bob"));

    // Alice rests a sell, is refused a duplicate ClOrdID and an unknown symbol, and logs out.
    let mut alice =
        client(&binary, dictionary, node.fix_port, "ALICE", "alice-secret", &alice_store);
    alice.run("logon");
    alice.run("send 35=D|11=a1|1=1|55=BTC-USD|54=2|38=0.5|40=2|44=60000|59=1|60=now");
    alice.run("expect 35=8|150=0|39=0|11=a1|151=0.5|14=0|37=$order");
    alice.run("send 35=D|11=a1|1=1|55=BTC-USD|54=2|38=0.5|40=2|44=61000|59=1|60=now");
    alice.run("expect 35=8|150=8|39=8|11=a1|103=6");
    alice.run("send 35=D|11=a9|1=1|55=DOGE-USD|54=2|38=1|40=2|44=1|59=1|60=now");
    alice.run("expect 35=j|380=2|372=D");
    alice.run("none-sent 35=3");
    alice.run("logout");

    // Bob takes part of it with an IOC, buys more with a market order, rests a bid, asks for
    // its status, cannot touch Alice's order, and mass-cancels his own.
    let mut bob = client(&binary, dictionary, node.fix_port, "BOB", "bob-secret", &bob_store);
    bob.run("logon");
    bob.run("send 35=D|11=b1|1=2|55=BTC-USD|54=1|38=0.2|40=2|44=60000|59=3|60=now");
    bob.run("expect 35=8|150=F|39=2|11=b1|32=0.2|31=60000|14=0.2|151=0|6=60000");
    bob.run("send 35=D|11=b2|1=2|55=BTC-USD|54=1|38=0.1|40=1|152=10000|59=3|60=now");
    bob.run("expect 35=8|150=F|11=b2|32=0.1|31=60000");
    bob.run("send 35=D|11=b3|1=2|55=BTC-USD|54=1|38=0.3|40=2|44=59000|59=1|60=now");
    bob.run("expect 35=8|150=0|11=b3");
    bob.run("send 35=H|11=b3|55=BTC-USD|54=1");
    bob.run("expect 35=8|150=I|39=0|11=b3|151=0.3");
    bob.run("send 35=F|11=b4|41=a1|55=BTC-USD|54=2|60=now");
    bob.run("expect 35=9|11=b4|102=1");
    bob.run("send 35=q|11=b5|530=7|60=now");
    bob.run("expect 35=r|11=b5|531=7|533=1");
    bob.run("expect 35=8|150=4|11=b3");
    bob.run("none-sent 35=3");
    bob.finish();

    // Alice comes back: the fills made while she was away arrive as resends; she amends and
    // cancels, and asks for a resend of the whole session.
    alice.run("logon");
    alice.run("expect-wire 35=8|150=F|11=a1|32=0.2|151=0.3|43=Y");
    alice.run("expect-wire 35=8|150=F|11=a1|32=0.1|151=0.2|14=0.3|43=Y");
    alice.run("send 35=G|11=a2|41=a1|1=1|55=BTC-USD|54=2|38=0.4|40=2|44=60000|60=now");
    alice.run("expect 35=8|150=5|11=a2|41=a1|38=0.4|151=0.1|14=0.3");
    alice.run("send 35=F|11=a3|41=a2|55=BTC-USD|54=2|60=now");
    alice.run("expect 35=8|150=4|39=4|11=a3|41=a2|151=0");
    alice.run("resend-request 1 0");
    alice.run("expect-wire 35=8|43=Y|122=*|11=a3|150=4");
    alice.run("none-sent 35=3");
    alice.run("logout");

    // The market maker's session cancels on disconnect: its resting quote is gone once its
    // connection drops without a Logout, and it hears so when it comes back.
    let mm_store = dir.0.join("mm");
    let mut mm = client(&binary, dictionary, port, "MM", "mm-secret", &mm_store);
    mm.run("logon");
    mm.run("send 35=D|11=m1|1=3|55=ETH-USD|54=2|38=1|40=2|44=3100|59=1|60=now");
    mm.run("expect 35=8|150=0|11=m1");
    let _ = mm.try_run("crash");
    drop(mm);
    let mut mm = client(&binary, dictionary, port, "MM", "mm-secret", &mm_store);
    mm.run("logon");
    mm.run("expect-wire 35=8|150=4|39=4|11=m1");
    mm.run("none-sent 35=3");
    mm.finish();

    let before = node.stop();
    let mut node = NodeProcess::start(&data_dir, &config);
    assert_eq!(node.fix_port, port);
    // The same session continues after the restart: QuickFIX's stored sequence numbers are
    // accepted, and the orders are the ones it knows.
    alice.run("logon");
    alice.run("send 35=H|11=a1|55=BTC-USD|54=2");
    alice.run("expect 35=8|150=I|39=4|37=$order|14=0.3");
    alice.run("send 35=D|11=a2|1=1|55=BTC-USD|54=2|38=0.5|40=2|44=61000|59=1|60=now");
    alice.run("expect 35=8|150=8|11=a2|103=6");
    alice.run("none-sent 35=3");
    let transcript = alice.finish();
    assert!(
        transcript.iter().all(|line| !line.starts_with("recv") || !line.contains("|35=3|")),
        "QuickFIX never needed to reject anything"
    );
    let after = node.stop();
    // Nothing after the restart reached the engine (status and a local duplicate reject), so
    // the state is exactly the one the first run stopped with.
    let state = |line: &str| line.split(';').next().unwrap().to_owned();
    assert_eq!(state(&after), state(&before));

    let verify = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["verify", "--data-dir", data_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn the_http_api_of_exchange_run_moves_funds_and_remembers_them_across_a_restart() {
    let dir = interop_dir("http");
    let data_dir = dir.0.join("data");
    let config = config(&dir.0);
    let mut node = NodeProcess::start(&data_dir, &config);
    let (status, health) = http(&node.http, "GET", "/health", None, "");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let transfer = r#"{"from_account":1,"to_account":2,"amount":"10.50","currency":"USD",
        "transaction_id":"7001"}"#;
    let path = "/v1/wallet/balance_transfer";
    let (status, first) = http(&node.http, "POST", path, Some("alice-key"), transfer);
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("\"status\":\"executed\""), "{first}");
    let (status, unauthenticated) = http(&node.http, "POST", path, None, transfer);
    assert_eq!(status, 401, "{unauthenticated}");
    let (status, forbidden) = http(&node.http, "GET", "/v1/balances/2", Some("alice-key"), "");
    assert_eq!(status, 403, "{forbidden}");
    let (_, balances) = http(&node.http, "GET", "/v1/balances/2", Some("bob-key"), "");
    assert!(balances.contains("\"available\":\"1000010.5\""), "{balances}");
    node.stop();

    // After a restart the balance is still there and a retry returns the first result.
    let mut node = NodeProcess::start(&data_dir, &config);
    let (_, balances) = http(&node.http, "GET", "/v1/balances/2", Some("bob-key"), "");
    assert!(balances.contains("\"available\":\"1000010.5\""), "{balances}");
    let (status, retry) = http(&node.http, "POST", path, Some("alice-key"), transfer);
    assert_eq!(status, 200, "{retry}");
    let body = |response: &str| response.split("\r\n\r\n").nth(1).unwrap().to_owned();
    assert_eq!(body(&retry), body(&first), "the retry answers with the first result");
    assert!(retry.to_ascii_lowercase().contains("idempotent-replayed: true"), "{retry}");
    node.stop();
}

/// The CPUs a thread may run on, from `/proc/<pid>/task/<tid>/status` (`Cpus_allowed_list`,
/// such as `0-1` or `0,2-3`).
fn allowed_cpus(status: &str) -> Vec<usize> {
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .expect("the status names the allowed CPUs")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                cpus.extend(first.parse::<usize>().unwrap()..=last.parse::<usize>().unwrap());
            }
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

#[test]
fn exchange_run_keeps_every_thread_but_the_loop_off_the_loops_core() {
    let dir = interop_dir("affinity");
    let config = config(&dir.0);
    // The FIX thread's idle strategy given apart from the loop's (which keeps its default).
    let gateway_idle = "backoff:spins=7,yields=3,park-ns-min=1000,park-ns-max=1000000";
    let mut node =
        NodeProcess::start_with(&dir.0.join("data"), &config, &["--gateway-idle", gateway_idle]);
    let idle = node.banner.iter().find(|line| line.starts_with("idle: ")).expect("idle line");
    assert_eq!(
        idle,
        &format!(
            "idle: application loop backoff:spins=100,yields=10,park-ns-min=1000,\
             park-ns-max=1000000, FIX thread {gateway_idle}"
        )
    );
    let pid = node.child.id();
    // The node pins its loop to the last CPU it was allowed. Its main thread has that mask back
    // once the node prints its banner; the loop thread may not have pinned itself yet (it is
    // named, and listed, from the moment it is spawned, with the mask of the thread that spawned
    // it): list the threads again until the loop is pinned there, within a bound that only a
    // broken node reaches. Checking before that once failed here.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut threads = Vec::new();
    loop {
        threads.clear();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let task = task.unwrap().path();
            // A thread that ended while being listed is not one to check.
            let (Ok(comm), Ok(status)) = (
                std::fs::read_to_string(task.join("comm")),
                std::fs::read_to_string(task.join("status")),
            ) else {
                continue;
            };
            let tid: u32 = task.file_name().unwrap().to_str().unwrap().parse().unwrap();
            threads.push((tid, comm.trim().to_owned(), allowed_cpus(&status)));
        }
        let node_cpus = threads.iter().find(|(tid, _, _)| *tid == pid).map(|(_, _, cpus)| cpus);
        let loop_cpus = threads.iter().find(|(_, name, _)| name == "application-loo");
        let pinned = match (node_cpus, loop_cpus) {
            (Some(node_cpus), Some((_, _, loop_cpus))) => {
                loop_cpus[..] == node_cpus[node_cpus.len() - 1..]
            }
            _ => false,
        };
        if pinned || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, _, loop_cpus) = threads
        .iter()
        .find(|(_, name, _)| name == "application-loo")
        .expect("the application loop thread runs");
    let (_, _, node_cpus) = threads.iter().find(|(tid, _, _)| *tid == pid).expect("main thread");
    // A node allowed one CPU has nowhere else to put its other threads.
    if node_cpus.len() >= 2 {
        assert_eq!(loop_cpus[..], node_cpus[node_cpus.len() - 1..], "pinned: {threads:?}");
        let core = loop_cpus[0];
        // The main thread only waits for a signal; it gets its own affinity back.
        for (tid, name, cpus) in threads.iter().filter(|(tid, _, _)| *tid != pid) {
            if name != "application-loo" {
                assert!(!cpus.contains(&core), "thread {tid} {name} may run on {core}: {cpus:?}");
            }
        }
        assert!(threads.iter().any(|(_, name, _)| name == "fix-acceptor"), "{threads:?}");
    }
    node.stop();
}
