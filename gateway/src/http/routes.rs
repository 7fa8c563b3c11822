//! The endpoints: authentication and throttling, request parsing at the edge (decimal strings
//! into minor units, exactly), commands onto the input ring, answers and queries as JSON.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::decimal::{format_units, parse_units};
use engine::{
    AccountId, Amount, AssetId, Command, CommandBody, Event, OrderType, Side, TimeInForce,
    TransactionId,
};
use sequencer::record::encode_command_from;
use sequencer::ring::RingProducer;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{ApiKey, Keys};
use super::error::{ApiError, ErrorCode};
use super::metrics::{self, LatencyHistogram};
use super::model::{OrderRecord, ReadModel};
use super::pump::{Answer, Pending};
use super::{AssetInfo, HttpConfig, InstrumentInfo, NodeStatus, RingDepth, OPENAPI_YAML};

/// Shared by every handler.
#[derive(Clone)]
pub(super) struct AppState(Arc<Inner>);

struct Inner {
    config: HttpConfig,
    keys: Keys,
    input: Mutex<RingProducer>,
    model: Arc<RwLock<ReadModel>>,
    pending: Arc<Pending>,
    status: Arc<dyn NodeStatus>,
    output_depth: Arc<AtomicU64>,
    output_capacity: u64,
    latency: LatencyHistogram,
    assets: HashMap<String, AssetInfo>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("bind", &self.0.config.bind).finish_non_exhaustive()
    }
}

impl AppState {
    pub(super) fn new(
        config: HttpConfig,
        input: RingProducer,
        model: Arc<RwLock<ReadModel>>,
        pending: Arc<Pending>,
        status: Arc<dyn NodeStatus>,
        output_depth: Arc<AtomicU64>,
        output_capacity: u64,
    ) -> AppState {
        let keys = Keys::new(config.keys.clone());
        let assets =
            config.assets.iter().map(|asset| (asset.symbol.clone(), asset.clone())).collect();
        AppState(Arc::new(Inner {
            config,
            keys,
            input: Mutex::new(input),
            model,
            pending,
            status,
            output_depth,
            output_capacity,
            latency: LatencyHistogram::default(),
            assets,
        }))
    }
}

/// Every route of the API.
pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/wallet/balance_transfer", post(transfer))
        .route("/v1/wallet/deposit", post(deposit))
        .route("/v1/wallet/withdrawal", post(withdrawal))
        .route("/v1/balances/{account}", get(balances))
        .route("/v1/balances/{account}/history", get(history))
        .route("/v1/orders/{order_id}", get(order))
        .route("/v1/instruments", get(instruments))
        .route("/v1/instruments/{symbol}/halt", post(halt))
        .route("/v1/instruments/{symbol}/resume", post(resume))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/openapi.yaml", get(openapi))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
        })
        .with_state(state)
}

impl Inner {
    /// The key the request names, after its throttle has let it through.
    fn authenticate(&self, headers: &HeaderMap) -> Result<&ApiKey, ApiError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let named = bearer
            .or_else(|| headers.get("x-api-key").and_then(|value| value.to_str().ok()))
            .map(str::trim);
        let Some(named) = named else {
            let message = "an API key is required (Authorization: Bearer or X-API-Key)";
            return Err(ApiError::new(ErrorCode::Unauthenticated, message));
        };
        let Some(key) = self.keys.find(named) else {
            return Err(ApiError::new(ErrorCode::Unauthenticated, "unknown API key"));
        };
        if let Err(wait) = self.keys.take(key, Instant::now()) {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let message = "too many requests for this API key";
            return Err(ApiError::retry_after(ErrorCode::Throttled, message, seconds));
        }
        Ok(key)
    }

    fn asset(&self, symbol: &str) -> Result<&AssetInfo, ApiError> {
        self.assets.get(symbol).ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownCurrency, format!("unknown currency {symbol:?}"))
        })
    }

    fn model(&self) -> std::sync::RwLockReadGuard<'_, ReadModel> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes `body` onto the input ring and waits for the engine's durable answer.
    async fn submit(&self, body: CommandBody) -> Result<Answer, ApiError> {
        let Some((origin, answer)) = self.pending.register() else {
            return Err(ApiError::new(ErrorCode::Unavailable, "the API is shutting down"));
        };
        let record = encode_command_from(&Command { seq: 0, timestamp_ns: 0, body }, origin);
        let pushed = self.input.lock().unwrap_or_else(PoisonError::into_inner).try_push(&record);
        if pushed.is_err() {
            self.pending.cancel(origin);
            let message = "the exchange is busy: its input ring is full; retry later";
            return Err(ApiError::retry_after(ErrorCode::Busy, message, 1));
        }
        let start = Instant::now();
        match tokio::time::timeout(self.config.answer_timeout, answer).await {
            Ok(Ok(answer)) => {
                self.latency.record(start.elapsed());
                Ok(answer)
            }
            Ok(Err(_)) => Err(ApiError::new(ErrorCode::Unavailable, "the API is shutting down")),
            Err(_) => {
                self.pending.cancel(origin);
                // The command may still execute; an idempotent retry finds out how it went.
                let message = "no answer in time; retry with the same transaction_id to learn \
                               the outcome";
                Err(ApiError::new(ErrorCode::Timeout, message))
            }
        }
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::new(ErrorCode::InvalidJson, format!("invalid request body: {error}"))
    })
}

/// Accepts a decimal string of up to 39 digits (below 2^128) or a hyphenated UUID
/// (`8-4-4-4-12` hexadecimal digits, read as a big-endian 128-bit number).
pub(super) fn parse_transaction_id(text: &str) -> Result<u128, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidTransactionId,
            "transaction_id must be decimal digits below 2^128 or a UUID",
        )
    };
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.parse::<u128>().map_err(|_| invalid());
    }
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let hex = groups.iter().all(|group| group.bytes().all(|byte| byte.is_ascii_hexdigit()));
    if lengths != [8, 4, 4, 4, 12] || !hex {
        return Err(invalid());
    }
    u128::from_str_radix(&groups.concat(), 16).map_err(|_| invalid())
}

fn parse_amount(text: &str, asset: &AssetInfo) -> Result<Amount, ApiError> {
    parse_units(text, asset.scale).map(Amount).map_err(|error| {
        let message = format!("amount {text:?} of {}: {error}", asset.symbol);
        ApiError::new(ErrorCode::InvalidAmount, message)
    })
}

fn forbidden(account: u32) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, format!("this API key may not use account {account}"))
}

fn operator_only(key: &ApiKey) -> Result<(), ApiError> {
    if key.is_operator() {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::Forbidden, "this endpoint needs an operator API key"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    from_account: u32,
    to_account: u32,
    amount: String,
    currency: String,
    transaction_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FundsRequest {
    account: u32,
    amount: String,
    currency: String,
    transaction_id: String,
}

/// The body of an executed wallet transaction; a retry gets the same body, with the first
/// execution's seq, plus `Idempotent-Replayed: true`.
fn wallet_answer(answer: &Answer, mut body: Value) -> Result<Response, ApiError> {
    let (seq, replayed) = match answer.event {
        Event::Ledger { .. } => (answer.seq, false),
        Event::TransactionDuplicate { original_seq, .. } => (original_seq, true),
        Event::Rejected { reason, .. } => return Err(ApiError::rejected(reason)),
        other => {
            let message = format!("unexpected answer from the engine: {other:?}");
            return Err(ApiError::new(ErrorCode::Unavailable, message));
        }
    };
    body["status"] = "executed".into();
    body["seq"] = seq.into();
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn transfer(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let state = &state.0;
    let key = state.authenticate(&headers)?;
    let request: TransferRequest = parse_json(&body)?;
    if !key.owns(request.from_account) {
        return Err(forbidden(request.from_account));
    }
    let asset = state.asset(&request.currency)?;
    let amount = parse_amount(&request.amount, asset)?;
    let transaction_id = parse_transaction_id(&request.transaction_id)?;
    let answer = state
        .submit(CommandBody::Transfer {
            transaction_id: TransactionId(transaction_id),
            from: AccountId(request.from_account),
            to: AccountId(request.to_account),
            asset: asset.id,
            amount,
        })
        .await?;
    let body = json!({
        "transaction_id": request.transaction_id,
        "type": "transfer",
        "from_account": request.from_account,
        "to_account": request.to_account,
        "amount": format_units(amount.0, asset.scale).to_string(),
        "currency": asset.symbol,
    });
    wallet_answer(&answer, body)
}

async fn deposit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    funds(&state.0, &headers, &body, true).await
}

async fn withdrawal(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    funds(&state.0, &headers, &body, false).await
}

/// A deposit (money in from the world account) or a withdrawal (out to it); operators only.
async fn funds(
    state: &Inner,
    headers: &HeaderMap,
    body: &Bytes,
    deposit: bool,
) -> Result<Response, ApiError> {
    let key = state.authenticate(headers)?;
    operator_only(key)?;
    let request: FundsRequest = parse_json(body)?;
    let asset = state.asset(&request.currency)?;
    let amount = parse_amount(&request.amount, asset)?;
    let transaction_id = TransactionId(parse_transaction_id(&request.transaction_id)?);
    let account = AccountId(request.account);
    let command = if deposit {
        CommandBody::Deposit { transaction_id, account, asset: asset.id, amount }
    } else {
        CommandBody::Withdraw { transaction_id, account, asset: asset.id, amount }
    };
    let answer = state.submit(command).await?;
    let body = json!({
        "transaction_id": request.transaction_id,
        "type": if deposit { "deposit" } else { "withdrawal" },
        "account": request.account,
        "amount": format_units(amount.0, asset.scale).to_string(),
        "currency": asset.symbol,
    });
    wallet_answer(&answer, body)
}

/// The account named in a path, if this key may see it.
fn path_account(key: &ApiKey, text: &str) -> Result<u32, ApiError> {
    let unknown = || ApiError::new(ErrorCode::UnknownAccount, format!("unknown account {text:?}"));
    let account = text.parse::<u32>().map_err(|_| unknown())?;
    if !key.owns(account) {
        return Err(forbidden(account));
    }
    Ok(account)
}

/// Balances of every configured asset, as decimal strings.
fn balances_json(
    assets: &[AssetInfo],
    mut balance: impl FnMut(AssetId) -> (u128, u128),
) -> Vec<Value> {
    assets
        .iter()
        .map(|asset| {
            let (available, held) = balance(asset.id);
            json!({
                "currency": asset.symbol,
                "available": format_units(available, asset.scale).to_string(),
                "held": format_units(held, asset.scale).to_string(),
            })
        })
        .collect()
}

async fn balances(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> Result<Response, ApiError> {
    let state = &state.0;
    let key = state.authenticate(&headers)?;
    let account = path_account(key, &account)?;
    let model = state.model();
    if !model.account_exists(account) {
        return Err(ApiError::new(ErrorCode::UnknownAccount, format!("unknown account {account}")));
    }
    let rows = balances_json(&state.config.assets, |asset| {
        let row = model.balance(account, asset.0);
        (row.available, row.held)
    });
    Ok(Json(json!({ "account": account, "seq": model.seq(), "balances": rows })).into_response())
}

/// `seq=N` from the query string.
fn query_seq(query: Option<&str>) -> Result<u64, ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidSeq, "the query needs seq=N, N a number");
    let query = query.ok_or_else(invalid)?;
    let value = query.split('&').find_map(|pair| pair.strip_prefix("seq=")).ok_or_else(invalid)?;
    value.parse::<u64>().map_err(|_| invalid())
}

async fn history(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let state = Arc::clone(&state.0);
    let key = state.authenticate(&headers)?;
    let account = path_account(key, &account)?;
    let seq = query_seq(query.as_deref())?;
    let durable = state.status.durable_seq();
    if seq == 0 || seq > durable {
        let message = format!("seq must be between 1 and the durable seq, {durable}");
        return Err(ApiError::new(ErrorCode::InvalidSeq, message));
    }
    let data_dir = state.config.data_dir.clone();
    let engine_config = state.config.engine;
    let replayed = tokio::task::spawn_blocking(move || {
        sequencer::sequencer::replay_from_snapshot(&data_dir, engine_config, Some(seq), |_| {})
    })
    .await
    .map_err(|error| ApiError::new(ErrorCode::ReplayFailed, error.to_string()))?
    .map_err(|error| ApiError::new(ErrorCode::ReplayFailed, error.to_string()))?;
    let engine = replayed.engine;
    if engine.seq() != seq {
        let message = format!("the journal ends at seq {}", engine.seq());
        return Err(ApiError::new(ErrorCode::InvalidSeq, message));
    }
    if !engine.account_exists(AccountId(account)) {
        let message = format!("account {account} did not exist at seq {seq}");
        return Err(ApiError::new(ErrorCode::UnknownAccount, message));
    }
    let rows = balances_json(&state.config.assets, |asset| {
        let balance = engine.balance(AccountId(account), asset);
        (balance.available.0, balance.held.0)
    });
    Ok(Json(json!({ "account": account, "seq": seq, "balances": rows })).into_response())
}

fn side_text(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn order_type_text(order_type: OrderType) -> &'static str {
    match order_type {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
    }
}

fn time_in_force_text(time_in_force: TimeInForce) -> &'static str {
    match time_in_force {
        TimeInForce::Gtc => "GTC",
        TimeInForce::Day => "DAY",
        TimeInForce::Ioc => "IOC",
        TimeInForce::Fok => "FOK",
    }
}

/// `count × units` minor units at `scale`, or null if that does not fit (it always does for
/// what the engine accepted; null is safer than a wrong number).
fn decimal(count: u64, units: u128, scale: u8) -> Value {
    u128::from(count)
        .checked_mul(units)
        .map_or(Value::Null, |value| format_units(value, scale).to_string().into())
}

fn order_json(order: &OrderRecord, config: &HttpConfig) -> Value {
    let instrument = config.instruments.iter().find(|info| info.id.0 == order.instrument);
    let scale = |asset: AssetId| {
        config.assets.iter().find(|info| info.id == asset).map_or(0, |info| info.scale)
    };
    let (symbol, price, quantity, filled, leaves) = match instrument {
        Some(info) => {
            let (quote, base) = (scale(info.quote), scale(info.base));
            (
                Value::from(info.symbol.clone()),
                decimal(order.price_ticks, info.tick_units, quote),
                decimal(order.quantity_lots, info.lot_units, base),
                decimal(order.filled_lots, info.lot_units, base),
                decimal(order.leaves_lots, info.lot_units, base),
            )
        }
        None => (Value::Null, Value::Null, Value::Null, Value::Null, Value::Null),
    };
    let mut body = json!({
        "order_id": order.order_id.to_string(),
        "account": order.account,
        "instrument": symbol,
        "side": side_text(order.side),
        "type": order_type_text(order.order_type),
        "time_in_force": time_in_force_text(order.time_in_force),
        "price": if order.order_type == OrderType::Limit { price } else { Value::Null },
        "quantity": quantity,
        "filled_quantity": filled,
        "leaves_quantity": leaves,
        "status": order.status.as_str(),
        "seq": order.seq,
    });
    if let Some(reason) = order.reject_reason {
        body["reject_code"] = super::error::reject_code_name(reason).into();
        body["reject_reason"] = reason.text().into();
    }
    body
}

async fn order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let state = &state.0;
    let key = state.authenticate(&headers)?;
    // Another account's order is unknown to a trader, exactly as on FIX: nothing is leaked.
    let unknown = || ApiError::new(ErrorCode::UnknownOrder, format!("unknown order {order_id:?}"));
    let id = order_id.parse::<u64>().map_err(|_| unknown())?;
    let model = state.model();
    let order = model.order(id).filter(|order| key.owns(order.account)).ok_or_else(unknown)?;
    Ok(Json(order_json(order, &state.config)).into_response())
}

fn instrument_json(info: &InstrumentInfo, config: &HttpConfig, halted: bool) -> Value {
    let asset = |id: AssetId| config.assets.iter().find(|asset| asset.id == id);
    let (base, quote) = (asset(info.base), asset(info.quote));
    json!({
        "symbol": info.symbol,
        "id": info.id.0,
        "base": base.map(|asset| asset.symbol.clone()),
        "quote": quote.map(|asset| asset.symbol.clone()),
        "tick_size": quote.map(|asset| decimal(1, info.tick_units, asset.scale)),
        "lot_size": base.map(|asset| decimal(1, info.lot_units, asset.scale)),
        "halted": halted,
    })
}

async fn instruments(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let state = &state.0;
    state.authenticate(&headers)?;
    let model = state.model();
    let list: Vec<Value> = state
        .config
        .instruments
        .iter()
        .map(|info| {
            let halted = model.halted(info.id.0).unwrap_or(info.halted);
            instrument_json(info, &state.config, halted)
        })
        .collect();
    Ok(Json(json!({ "instruments": list })).into_response())
}

async fn halt(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(symbol): Path<String>,
) -> Result<Response, ApiError> {
    set_halted(&state.0, &headers, &symbol, true).await
}

async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(symbol): Path<String>,
) -> Result<Response, ApiError> {
    set_halted(&state.0, &headers, &symbol, false).await
}

async fn set_halted(
    state: &Inner,
    headers: &HeaderMap,
    symbol: &str,
    halted: bool,
) -> Result<Response, ApiError> {
    let key = state.authenticate(headers)?;
    operator_only(key)?;
    let Some(info) = state.config.instruments.iter().find(|info| info.symbol == symbol) else {
        let message = format!("unknown instrument {symbol:?}");
        return Err(ApiError::new(ErrorCode::UnknownInstrument, message));
    };
    let answer =
        state.submit(CommandBody::SetInstrumentHalted { instrument: info.id, halted }).await?;
    match answer.event {
        Event::InstrumentHalted { halted, .. } => {
            Ok(Json(json!({ "symbol": symbol, "halted": halted, "seq": answer.seq }))
                .into_response())
        }
        Event::Rejected { reason, .. } => Err(ApiError::rejected(reason)),
        other => {
            let message = format!("unexpected answer from the engine: {other:?}");
            Err(ApiError::new(ErrorCode::Unavailable, message))
        }
    }
}

impl Inner {
    /// Every ring's depth: the node's, and this API's own input and output.
    fn rings(&self) -> Vec<RingDepth> {
        let mut rings = self.status.ring_depths();
        let input = self.input.lock().unwrap_or_else(PoisonError::into_inner);
        rings.push(RingDepth {
            name: "http_input".to_owned(),
            depth: u64::try_from(input.depth()).unwrap_or(u64::MAX),
            capacity: u64::try_from(input.capacity()).unwrap_or(u64::MAX),
        });
        drop(input);
        rings.push(RingDepth {
            name: "http_output".to_owned(),
            depth: self.output_depth.load(Ordering::Acquire),
            capacity: self.output_capacity,
        });
        rings
    }
}

/// Application-level health: 200 while the node says it is healthy and this API's consumer
/// runs; 503 otherwise. No key needed, so that supervisors and load balancers can ask.
async fn health(State(state): State<AppState>) -> Response {
    let state = &state.0;
    let healthy = state.status.healthy() && !state.pending.is_closed();
    let (sequence, durable) = (state.status.sequence(), state.status.durable_seq());
    let rings: Vec<Value> = state
        .rings()
        .iter()
        .map(|ring| json!({ "name": ring.name, "depth": ring.depth, "capacity": ring.capacity }))
        .collect();
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "role": state.status.role(),
        "sequence": sequence,
        "durable_seq": durable,
        "journal_lag": sequence.saturating_sub(durable),
        "read_model_seq": state.model().seq(),
        "fix_sessions": state.status.fix_sessions(),
        "rings": rings,
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus text; no key needed, like `/health`.
async fn metrics_text(State(state): State<AppState>) -> Response {
    let state = &state.0;
    let rings = state.rings();
    let text = {
        let model = state.model();
        metrics::render(&metrics::Snapshot {
            counters: model.counters(),
            orders_known: model.orders_known(),
            model_seq: model.seq(),
            sequence: state.status.sequence(),
            durable_seq: state.status.durable_seq(),
            fix_sessions: state.status.fix_sessions(),
            rings: &rings,
            pending_requests: state.pending.len(),
            latency: &state.latency,
        })
    };
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn openapi() -> Response {
    let content_type = HeaderValue::from_static("application/yaml");
    ([(header::CONTENT_TYPE, content_type)], OPENAPI_YAML).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids() {
        assert_eq!(parse_transaction_id("42").unwrap(), 42);
        let max = u128::MAX.to_string();
        assert_eq!(parse_transaction_id(&max).unwrap(), u128::MAX);
        assert!(parse_transaction_id("340282366920938463463374607431768211456").is_err());
        let uuid = "0000000a-0000-0000-0000-00000000000B";
        assert_eq!(parse_transaction_id(uuid).unwrap(), 10 << 96 | 11);
        for bad in ["", "-1", "1.5", "abc", "0000000a00000000000000000000000b", "g000000a-0000"] {
            assert!(parse_transaction_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seq_query() {
        assert_eq!(query_seq(Some("seq=12")).unwrap(), 12);
        assert_eq!(query_seq(Some("a=b&seq=7")).unwrap(), 7);
        assert!(query_seq(None).is_err());
        assert!(query_seq(Some("seq=x")).is_err());
    }
}
