//! The HTTP API against a real node: a `Sequencer` and an `AppLoop` on their own thread over
//! in-memory rings and a temporary data directory, and the axum server on 127.0.0.1:0. A second
//! input ring plays the FIX gateway. Every wait is on an answer; time bounds are only failure
//! limits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use testkit::TempDir;

use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, EngineConfig, InstrumentId, InstrumentSpec,
    NewOrder, OrderId, OrderType, Price, Quantity, SelfTradePrevention, Side, TimeInForce,
    TransactionId,
};
use gateway::http::{
    ApiKey, AssetInfo, HttpApi, HttpConfig, HttpHandle, InstrumentInfo, ReadModel, Role,
    SharedStatus, ThrottleConfig,
};
use sequencer::app_loop::{AppLoop, LoopConfig};
use sequencer::journal::Durability;
use sequencer::record::{encode_command_from, RECORD_BYTES};
use sequencer::ring::{BackoffConfig, BackoffIdle, Ring, RingProducer};
use sequencer::sequencer::{replay, Sequencer, SequencerConfig};
use serde_json::{json, Value};

const OPERATOR: &str = "operator-key";
/// Trades for accounts 1 and 2.
const ALICE: &str = "alice-key";
/// Trades for account 3.
const BOB: &str = "bob-key";
/// A key with a tight throttle.
const SLOW: &str = "slow-key";
const WAIT_LIMIT: Duration = Duration::from_secs(20);

fn engine_config() -> EngineConfig {
    EngineConfig {
        assets_max: 4,
        instruments_max: 2,
        accounts_max: 16,
        orders_max: 1 << 10,
        levels_max: 64,
        orders_per_account_max: 64,
        transactions_max: 1 << 10,
        fee_account: AccountId(0),
    }
}

/// BTC (scale 8) and USD (scale 2); BTC-USD with a lot of 0.01 BTC and a tick of 0.01 USD;
/// accounts 1 to 4, each with 1,000 USD and 1 BTC.
fn genesis() -> Vec<CommandBody> {
    let mut commands = vec![
        CommandBody::AddAsset { asset: AssetId(0), scale: 8 },
        CommandBody::AddAsset { asset: AssetId(1), scale: 2 },
        CommandBody::AddInstrument(testkit::btc_usd_spec()),
    ];
    for account in 1..=4u32 {
        commands.push(CommandBody::CreateAccount { account: AccountId(account) });
        let deposits = [(AssetId(0), 100_000_000), (AssetId(1), 100_000)];
        for (asset, amount) in deposits {
            commands.push(CommandBody::Deposit {
                transaction_id: TransactionId(
                    1 << 100 | u128::from(account) << 8 | u128::from(asset.0),
                ),
                account: AccountId(account),
                asset,
                amount: Amount(amount),
            });
        }
    }
    commands
}

fn assets() -> Vec<AssetInfo> {
    vec![
        AssetInfo { id: AssetId(0), symbol: "BTC".to_owned(), scale: 8 },
        AssetInfo { id: AssetId(1), symbol: "USD".to_owned(), scale: 2 },
    ]
}

fn spec() -> InstrumentSpec {
    let CommandBody::AddInstrument(spec) = genesis()[2] else { unreachable!("genesis order") };
    spec
}

fn instruments() -> Vec<InstrumentInfo> {
    let info = InstrumentInfo::from_spec("BTC-USD", &spec(), 8, false).unwrap();
    // One tick is one cent per lot of 0.01 BTC: one dollar per whole BTC.
    assert_eq!((info.tick_units, info.lot_units), (100, 1_000_000));
    vec![info]
}

fn keys() -> Vec<ApiKey> {
    let generous = ThrottleConfig { rate_per_second: 10_000, burst: 10_000 };
    let key = |key: &str, role: Role, throttle: ThrottleConfig| ApiKey {
        key: key.to_owned(),
        name: key.trim_end_matches("-key").to_owned(),
        role,
        throttle,
    };
    vec![
        key(OPERATOR, Role::Operator, generous),
        key(ALICE, Role::Trader { accounts: vec![AccountId(1), AccountId(2)] }, generous),
        key(BOB, Role::Trader { accounts: vec![AccountId(3)] }, generous),
        key(SLOW, Role::Operator, ThrottleConfig { rate_per_second: 1, burst: 1 }),
    ]
}

/// A running node with the API in front of it.
struct Node {
    dir: TempDir,
    api: Option<HttpHandle>,
    fix: RingProducer,
    stop: Arc<AtomicBool>,
    app: Option<JoinHandle<()>>,
    status: Arc<SharedStatus>,
}

impl Node {
    fn start(name: &str) -> Node {
        Node::open(TempDir::new("gateway-http", name))
    }

    /// Stops everything and starts again on the same data directory.
    fn restart(mut self) -> Node {
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        drop(self);
        Node::open(dir)
    }

    /// Recovers the data directory (genesis if it is new) and starts the loop and the API.
    fn open(dir: TempDir) -> Node {
        let config = SequencerConfig {
            data_dir: dir.0.clone(),
            engine: engine_config(),
            durability: Durability::PageCache,
            segment_bytes: 1 << 20,
            truncate_corrupt: false,
            snapshot_every_commands: 0,
            snapshots_kept: 3,
        };
        let mut sequencer = Sequencer::open(&config).unwrap().0;
        if sequencer.engine().seq() == 0 {
            for body in genesis() {
                sequencer.submit(body, 0).unwrap();
            }
            sequencer.flush().unwrap();
        }
        let engine = sequencer.engine();
        let halted = engine.is_halted(InstrumentId(0));
        let instruments = vec![InstrumentInfo::from_spec("BTC-USD", &spec(), 8, halted).unwrap()];
        let model = ReadModel::from_engine(engine, &assets(), &instruments, 1_000);
        let status = Arc::new(SharedStatus::default());
        status.sequence.store(sequencer.engine().seq(), Ordering::Release);
        status.durable_seq.store(sequencer.engine().seq(), Ordering::Release);
        status.healthy.store(true, Ordering::Release);
        let ring = || Ring::create_in_memory(1024, RECORD_BYTES).unwrap().split();
        let (http_input, http_loop) = ring();
        let (fix_input, fix_loop) = ring();
        let (loop_output, http_output) = ring();
        let loop_config = LoopConfig { echo_commands: true, ..LoopConfig::default() };
        let mut app = AppLoop::new(sequencer, http_loop, Some(loop_output), loop_config);
        app.add_input(fix_loop);
        let stop = Arc::new(AtomicBool::new(false));
        let app = {
            let (stop, status) = (Arc::clone(&stop), Arc::clone(&status));
            let first_seq = status.sequence.load(Ordering::Acquire);
            std::thread::spawn(move || {
                let mut idle = BackoffIdle::new(BackoffConfig::default());
                app.run(&mut idle, |stats| {
                    status.sequence.store(first_seq + stats.commands, Ordering::Release);
                    status.durable_seq.store(stats.durable_seq, Ordering::Release);
                    stop.load(Ordering::Acquire)
                })
                .unwrap();
            })
        };
        let http_config = HttpConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            assets(),
            instruments,
            keys(),
            dir.0.clone(),
            engine_config(),
        );
        let api = HttpApi::start(
            http_config,
            http_input,
            http_output,
            model,
            Arc::clone(&status) as Arc<dyn gateway::http::NodeStatus>,
        )
        .unwrap();
        Node { dir, api: Some(api), fix: fix_input, stop, app: Some(app), status }
    }

    fn addr(&self) -> SocketAddr {
        self.api.as_ref().unwrap().local_addr()
    }

    fn get(&self, path: &str, key: Option<&str>) -> Reply {
        request(self.addr(), "GET", path, key, None)
    }

    fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Reply {
        request(self.addr(), "POST", path, key, Some(body.to_string().as_bytes()))
    }

    /// Submits a command on the FIX ring, as the FIX gateway would.
    fn submit_fix(&mut self, body: CommandBody, counter: u32) {
        let record =
            encode_command_from(&Command { seq: 0, timestamp_ns: 0, body }, 1 << 24 | counter);
        self.fix.try_push(&record).unwrap();
    }

    /// Polls `GET path` until `done` holds for the answer.
    fn wait_for(&self, path: &str, key: &str, done: impl Fn(&Reply) -> bool) -> Reply {
        let start = Instant::now();
        loop {
            let reply = self.get(path, Some(key));
            if done(&reply) {
                return reply;
            }
            assert!(start.elapsed() < WAIT_LIMIT, "gave up waiting on {path}: {reply:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(api) = self.api.take() {
            api.shutdown();
        }
        self.stop.store(true, Ordering::Release);
        if let Some(app) = self.app.take() {
            let _ = app.join();
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The stable error code of an error reply.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {self:?}"))
            .to_owned()
    }

    /// Asserts the status and error code of an error reply.
    fn error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
        assert!(self.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// A minimal HTTP/1.1 client: one request per connection, read to the end.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT_LIMIT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let body = body.unwrap_or_default();
    if method == "POST" {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value == "chunked");
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Reply { status, headers, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn balance(reply: &Reply, currency: &str) -> (String, String) {
    let rows = reply.json()["balances"].as_array().unwrap().clone();
    let row = rows.iter().find(|row| row["currency"] == currency).unwrap();
    (row["available"].as_str().unwrap().to_owned(), row["held"].as_str().unwrap().to_owned())
}

fn funds(account: u32, amount: &str, id: &str) -> Value {
    json!({
        "account": account, "amount": amount, "currency": "BTC", "transaction_id": id,
    })
}

fn transfer(from: u32, to: u32, amount: &str, id: &str) -> Value {
    json!({
        "from_account": from, "to_account": to, "amount": amount, "currency": "USD",
        "transaction_id": id,
    })
}

#[test]
fn transfer_then_balances_and_idempotent_retries() {
    let node = Node::start("transfer");
    let before = node.get("/v1/balances/1", Some(ALICE));
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(balance(&before, "USD"), ("1000".to_owned(), "0".to_owned()));
    assert_eq!(balance(&before, "BTC"), ("1".to_owned(), "0".to_owned()));

    let first =
        node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "12.5", "77"));
    assert_eq!(first.status, 200, "{first:?}");
    let body = first.json();
    assert_eq!(body["status"], "executed");
    assert_eq!(body["amount"], "12.5");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["transaction_id"], "77");
    assert!(first.header("idempotent-replayed").is_none());
    let seq = body["seq"].as_u64().unwrap();

    // The answer comes after the read model applied the leg, so no waiting is needed here.
    let alice = node.get("/v1/balances/1", Some(ALICE));
    assert_eq!(balance(&alice, "USD"), ("987.5".to_owned(), "0".to_owned()));
    assert!(alice.json()["seq"].as_u64().unwrap() >= seq);
    let bob = node.get("/v1/balances/3", Some(BOB));
    assert_eq!(balance(&bob, "USD").0, "1012.5");

    // An identical retry returns the first result and moves nothing.
    let retry =
        node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "12.50", "77"));
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.json(), body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(&node.get("/v1/balances/1", Some(ALICE)), "USD").0, "987.5");

    // The same id with other fields is a conflict.
    let conflict =
        node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "13", "77"));
    conflict.error(409, "TRANSACTION_ID_REUSED");
    assert_eq!(conflict.json()["error"]["reject_code"], 20);

    // A UUID transaction id works like a number.
    let uuid = "7d3f1c2e-9a4b-4c1d-8e2f-0a1b2c3d4e5f";
    let by_uuid =
        node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(2, 1, "0.01", uuid));
    assert_eq!(by_uuid.status, 200, "{by_uuid:?}");
    assert_eq!(balance(&node.get("/v1/balances/2", Some(ALICE)), "USD").0, "999.99");

    // Engine rejects: 422 with the engine's code and text.
    let poor = node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "5000", "78"));
    poor.error(422, "INSUFFICIENT_FUNDS");
    assert_eq!(poor.json()["error"]["message"], "insufficient available balance");
    let nowhere = node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 9, "1", "79"));
    nowhere.error(422, "UNKNOWN_ACCOUNT");
    let zero = node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "0", "80"));
    zero.error(422, "INVALID_AMOUNT");
    let same = node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 1, "1", "81"));
    same.error(422, "SAME_ACCOUNT");
    // A rejected attempt does not use up its id.
    let again = node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "1", "78"));
    assert_eq!(again.status, 200, "{again:?}");
}

#[test]
fn deposits_withdrawals_roles_and_bad_requests() {
    let node = Node::start("roles");
    let deposit = node.post("/v1/wallet/deposit", Some(OPERATOR), &funds(3, "0.5", "1000"));
    assert_eq!(deposit.status, 200, "{deposit:?}");
    assert_eq!(deposit.json()["type"], "deposit");
    let withdrawal = node.post("/v1/wallet/withdrawal", Some(OPERATOR), &funds(3, "0.25", "1001"));
    assert_eq!(withdrawal.status, 200, "{withdrawal:?}");
    let bob = node.get("/v1/balances/3", Some(OPERATOR));
    assert_eq!(balance(&bob, "BTC").0, "1.25");
    let retry = node.post("/v1/wallet/deposit", Some(OPERATOR), &funds(3, "0.5", "1000"));
    assert_eq!(retry.json(), deposit.json());
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    node.post("/v1/wallet/withdrawal", Some(OPERATOR), &funds(3, "100", "1002"))
        .error(422, "INSUFFICIENT_FUNDS");
    node.post("/v1/wallet/deposit", Some(OPERATOR), &funds(3, "0.5", "0"))
        .error(422, "INVALID_TRANSACTION_ID");

    // 401: no key, an unknown key; X-API-Key works as well as Bearer.
    node.get("/v1/balances/1", None).error(401, "UNAUTHENTICATED");
    node.get("/v1/balances/1", Some("nope")).error(401, "UNAUTHENTICATED");
    let mut stream = TcpStream::connect(node.addr()).unwrap();
    let head = format!(
        "GET /v1/balances/1 HTTP/1.1\r\nHost: x\r\nX-API-Key: {ALICE}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_reply(&raw).status, 200);

    // 403: a trader depositing, or touching another's account.
    node.post("/v1/wallet/deposit", Some(ALICE), &funds(1, "1", "1003")).error(403, "FORBIDDEN");
    node.post("/v1/wallet/withdrawal", Some(BOB), &funds(3, "1", "1004")).error(403, "FORBIDDEN");
    node.post("/v1/wallet/balance_transfer", Some(BOB), &transfer(1, 3, "1", "1005"))
        .error(403, "FORBIDDEN");
    node.get("/v1/balances/3", Some(ALICE)).error(403, "FORBIDDEN");
    node.get("/v1/balances/3/history?seq=1", Some(ALICE)).error(403, "FORBIDDEN");

    // 404: unknown accounts and endpoints.
    node.get("/v1/balances/9", Some(OPERATOR)).error(404, "UNKNOWN_ACCOUNT");
    node.get("/v1/balances/x", Some(OPERATOR)).error(404, "UNKNOWN_ACCOUNT");
    node.get("/v1/nothing", Some(OPERATOR)).error(404, "NOT_FOUND");
    node.get("/v1/wallet/deposit", Some(OPERATOR)).error(405, "METHOD_NOT_ALLOWED");

    // 400s, each with its own code.
    let path = "/v1/wallet/balance_transfer";
    let raw_post =
        |body: &str| request(node.addr(), "POST", path, Some(ALICE), Some(body.as_bytes()));
    raw_post("{not json").error(400, "INVALID_JSON");
    raw_post(r#"{"from_account": 1}"#).error(400, "INVALID_JSON");
    let mut extra = transfer(1, 3, "1", "1006");
    extra["memo"] = "hi".into();
    node.post(path, Some(ALICE), &extra).error(400, "INVALID_JSON");
    node.post(path, Some(ALICE), &transfer(1, 3, "1.001", "1007")).error(400, "INVALID_AMOUNT");
    node.post(path, Some(ALICE), &transfer(1, 3, "-1", "1008")).error(400, "INVALID_AMOUNT");
    node.post(path, Some(ALICE), &transfer(1, 3, "1e3", "1009")).error(400, "INVALID_AMOUNT");
    let mut euro = transfer(1, 3, "1", "1010");
    euro["currency"] = "EUR".into();
    node.post(path, Some(ALICE), &euro).error(400, "UNKNOWN_CURRENCY");
    node.post(path, Some(ALICE), &transfer(1, 3, "1", "12ab")).error(400, "INVALID_TRANSACTION_ID");
    let mut numeric = transfer(1, 3, "1", "1011");
    numeric["amount"] = 1.into();
    node.post(path, Some(ALICE), &numeric).error(400, "INVALID_JSON");
}

#[test]
fn history_at_several_seqs_equals_a_replay() {
    let node = Node::start("history");
    let mut seqs = vec![];
    for (index, amount) in ["1", "2.5", "3.25", "400"].iter().enumerate() {
        let id = (5000 + index).to_string();
        let reply =
            node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 2, amount, &id));
        assert_eq!(reply.status, 200, "{reply:?}");
        seqs.push(reply.json()["seq"].as_u64().unwrap());
    }
    let genesis_end = seqs[0] - 1;
    seqs.insert(0, genesis_end);
    for &seq in &seqs {
        let reply = node.get(&format!("/v1/balances/1/history?seq={seq}"), Some(ALICE));
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json()["seq"], seq);
        let engine = replay(&node.dir.0, engine_config(), Some(seq), |_| {}).unwrap();
        for asset in assets() {
            let expected = engine.balance(AccountId(1), asset.id);
            let (available, held) = balance(&reply, &asset.symbol);
            let text = |units: u128| engine::decimal::format_units(units, asset.scale).to_string();
            assert_eq!(available, text(expected.available.0), "seq {seq}");
            assert_eq!(held, text(expected.held.0), "seq {seq}");
        }
    }
    let at_end = node.get(&format!("/v1/balances/1/history?seq={}", seqs[4]), Some(ALICE));
    assert_eq!(balance(&at_end, "USD").0, "593.25");
    // Before the account existed, and seqs out of range or missing.
    node.get("/v1/balances/1/history?seq=3", Some(ALICE)).error(404, "UNKNOWN_ACCOUNT");
    node.get("/v1/balances/1/history?seq=0", Some(ALICE)).error(400, "INVALID_SEQ");
    node.get("/v1/balances/1/history?seq=99999", Some(ALICE)).error(400, "INVALID_SEQ");
    node.get("/v1/balances/1/history", Some(ALICE)).error(400, "INVALID_SEQ");
    node.get("/v1/balances/1/history?seq=x", Some(ALICE)).error(400, "INVALID_SEQ");
}

fn limit_buy(order_id: u64, account: u32, price_ticks: u64) -> CommandBody {
    CommandBody::NewOrder(NewOrder {
        order_id: OrderId(order_id),
        account: AccountId(account),
        instrument: InstrumentId(0),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        self_trade_prevention: SelfTradePrevention::None,
        price: Price(price_ticks),
        quantity: Quantity(1),
        quote_budget: Amount(0),
    })
}

#[test]
fn halt_rejects_orders_until_resumed_and_orders_are_private() {
    let mut node = Node::start("halt");
    let list = node.get("/v1/instruments", Some(BOB));
    assert_eq!(list.status, 200, "{list:?}");
    let btc_usd = &list.json()["instruments"][0];
    assert_eq!(btc_usd["symbol"], "BTC-USD");
    assert_eq!(btc_usd["tick_size"], "1");
    assert_eq!(btc_usd["lot_size"], "0.01");
    assert_eq!(btc_usd["halted"], false);

    node.post("/v1/instruments/BTC-USD/halt", Some(ALICE), &json!({})).error(403, "FORBIDDEN");
    node.post("/v1/instruments/XRP-USD/halt", Some(OPERATOR), &json!({}))
        .error(404, "UNKNOWN_INSTRUMENT");
    let halted = node.post("/v1/instruments/BTC-USD/halt", Some(OPERATOR), &json!({}));
    assert_eq!(halted.status, 200, "{halted:?}");
    assert_eq!(halted.json()["halted"], true);
    assert_eq!(node.get("/v1/instruments", Some(BOB)).json()["instruments"][0]["halted"], true);

    // An order from the FIX ring is rejected while halted.
    node.submit_fix(limit_buy(41, 1, 50_000), 1);
    let rejected = node.wait_for("/v1/orders/41", ALICE, |reply| reply.status == 200);
    let body = rejected.json();
    assert_eq!(body["status"], "rejected", "{body}");
    assert_eq!(body["reject_code"], "INSTRUMENT_HALTED");
    assert_eq!(body["price"], "50000");
    assert_eq!(body["quantity"], "0.01");

    let resumed = node.post("/v1/instruments/BTC-USD/resume", Some(OPERATOR), &json!({}));
    assert_eq!(resumed.status, 200, "{resumed:?}");
    assert_eq!(resumed.json()["halted"], false);
    node.submit_fix(limit_buy(42, 1, 50_000), 2);
    let live = node.wait_for("/v1/orders/42", ALICE, |reply| reply.status == 200);
    let body = live.json();
    assert_eq!(body["status"], "new", "{body}");
    assert_eq!(body["instrument"], "BTC-USD");
    assert_eq!(body["side"], "buy");
    assert_eq!(body["leaves_quantity"], "0.01");
    assert_eq!(body["filled_quantity"], "0");
    // The order's hold shows in the balance: 0.01 BTC at 50,000 USD is 500 USD, plus the most
    // it could pay in fees; available and held still add up to the 1,000 USD deposited.
    let alice = node.get("/v1/balances/1", Some(ALICE));
    let (available, held) = balance(&alice, "USD");
    assert_ne!(held, "0", "{alice:?}");
    assert_eq!(
        engine::decimal::parse_units(&available, 2).unwrap()
            + engine::decimal::parse_units(&held, 2).unwrap(),
        100_000
    );

    // Another trader's order is unknown to Bob; the operator sees it.
    node.get("/v1/orders/42", Some(BOB)).error(404, "UNKNOWN_ORDER");
    assert_eq!(node.get("/v1/orders/42", Some(OPERATOR)).status, 200);
    node.get("/v1/orders/999", Some(ALICE)).error(404, "UNKNOWN_ORDER");
    node.get("/v1/orders/abc", Some(ALICE)).error(404, "UNKNOWN_ORDER");

    // Cancelling it from the FIX ring releases the hold.
    node.submit_fix(CommandBody::CancelOrder { order_id: OrderId(42), account: AccountId(1) }, 3);
    node.wait_for("/v1/orders/42", ALICE, |reply| reply.json()["status"] == "cancelled");
    let alice = node.get("/v1/balances/1", Some(ALICE));
    assert_eq!(balance(&alice, "USD"), ("1000".to_owned(), "0".to_owned()));

    let metrics = node.get("/metrics", None).body;
    assert!(
        metrics.contains("exchange_rejects_total{code=\"4\",reason=\"INSTRUMENT_HALTED\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("exchange_orders_accepted_total 1\n"), "{metrics}");
    assert!(metrics.contains("exchange_order_cancels_total 1\n"), "{metrics}");
}

#[test]
fn health_metrics_openapi_and_throttling() {
    let node = Node::start("health");
    let reply = node.post("/v1/wallet/balance_transfer", Some(ALICE), &transfer(1, 3, "1", "9"));
    let seq = reply.json()["seq"].as_u64().unwrap();

    let health = node.wait_for("/health", ALICE, |reply| {
        reply.json()["durable_seq"].as_u64().is_some_and(|durable| durable >= seq)
    });
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["role"], "single");
    assert!(body["sequence"].as_u64().unwrap() >= seq);
    assert!(body["read_model_seq"].as_u64().unwrap() >= seq);
    let rings = body["rings"].as_array().unwrap();
    assert!(rings.iter().any(|ring| ring["name"] == "http_input" && ring["capacity"] == 1024));
    assert!(rings.iter().any(|ring| ring["name"] == "http_output"));

    let metrics = node.get("/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.body;
    for line in [
        "# TYPE exchange_http_command_latency_seconds histogram",
        "exchange_http_command_latency_seconds_count 1\n",
        "exchange_http_command_latency_seconds_bucket{le=\"+Inf\"} 1\n",
        "exchange_transfers_total 1\n",
        "exchange_fix_sessions 0\n",
        "exchange_ring_capacity{ring=\"http_input\"} 1024\n",
        "# TYPE exchange_journal_lag gauge",
        "# TYPE exchange_fills_total counter",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }

    let openapi = node.get("/openapi.yaml", None);
    assert_eq!(openapi.status, 200);
    assert!(openapi.body.starts_with("openapi: 3"));
    for path in [
        "/v1/wallet/balance_transfer:",
        "/v1/wallet/deposit:",
        "/v1/wallet/withdrawal:",
        "/v1/balances/{account}:",
        "/v1/balances/{account}/history:",
        "/v1/orders/{order_id}:",
        "/v1/instruments:",
        "/v1/instruments/{symbol}/halt:",
        "/v1/instruments/{symbol}/resume:",
        "/health:",
        "/metrics:",
    ] {
        assert!(openapi.body.contains(path), "{path} missing from the OpenAPI file");
    }

    // One request a second, burst one: a quick series is throttled with a Retry-After.
    let mut throttled = None;
    for _ in 0..20 {
        let reply = node.get("/v1/instruments", Some(SLOW));
        if reply.status == 429 {
            throttled = Some(reply);
            break;
        }
    }
    let throttled = throttled.expect("twenty requests at once must exceed one a second");
    throttled.error(429, "THROTTLED");
    assert_eq!(throttled.header("retry-after"), Some("1"));

    node.status.healthy.store(false, Ordering::Release);
    let sick = node.get("/health", None);
    assert_eq!(sick.status, 503);
    assert_eq!(sick.json()["status"], "unavailable");
}

/// With no loop behind the input ring, requests time out (504) until the ring is full, and then
/// get 503 at once: back-pressure, never a blocked worker.
#[test]
fn full_input_ring_is_503_and_no_answer_is_504() {
    let dir = TempDir::new("gateway-http", "busy");
    let (input, _loop_side) = Ring::create_in_memory(2, RECORD_BYTES).unwrap().split();
    let (_loop_output, output) = Ring::create_in_memory(2, RECORD_BYTES).unwrap().split();
    let mut config = HttpConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        assets(),
        instruments(),
        keys(),
        dir.0.clone(),
        engine_config(),
    );
    config.answer_timeout = Duration::from_millis(100);
    config.drain_timeout = Duration::from_millis(100);
    let status = Arc::new(SharedStatus::default());
    let api = HttpApi::start(config, input, output, ReadModel::new(10), status).unwrap();
    let addr = api.local_addr();
    let body = transfer(1, 3, "1", "1").to_string();
    let post =
        || request(addr, "POST", "/v1/wallet/balance_transfer", Some(ALICE), Some(body.as_bytes()));
    post().error(504, "TIMEOUT");
    post().error(504, "TIMEOUT");
    let busy = post();
    busy.error(503, "BUSY");
    assert_eq!(busy.header("retry-after"), Some("1"));
    // A client that never finishes its request does not hold up shutdown past the drain limit.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    api.shutdown();
    assert!(start.elapsed() < WAIT_LIMIT);
}

#[test]
fn retries_after_a_restart_return_the_first_result() {
    let node = Node::start("restart");
    let path = "/v1/wallet/balance_transfer";
    let first = node.post(path, Some(ALICE), &transfer(1, 3, "21.05", "555"));
    assert_eq!(first.status, 200, "{first:?}");
    let seq = first.json()["seq"].as_u64().unwrap();
    let halted = node.post("/v1/instruments/BTC-USD/halt", Some(OPERATOR), &json!({}));
    assert_eq!(halted.status, 200, "{halted:?}");
    let before = node.get("/v1/balances/1", Some(ALICE)).json();

    let node = node.restart();
    let after = node.get("/v1/balances/1", Some(ALICE)).json();
    assert_eq!(after["balances"], before["balances"]);
    assert_eq!(node.get("/v1/instruments", Some(ALICE)).json()["instruments"][0]["halted"], true);
    let retry = node.post(path, Some(ALICE), &transfer(1, 3, "21.05", "555"));
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.json(), first.json());
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    node.post(path, Some(ALICE), &transfer(1, 3, "21.06", "555"))
        .error(409, "TRANSACTION_ID_REUSED");
    let history = node.get(&format!("/v1/balances/1/history?seq={seq}"), Some(ALICE));
    assert_eq!(balance(&history, "USD").0, "978.95");
    assert_eq!(node.get("/v1/balances/1", Some(ALICE)).json()["balances"], before["balances"]);
}
