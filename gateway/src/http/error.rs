//! Every error the API returns: an HTTP status and a JSON body
//! `{"error": {"code": "STABLE_CODE", "message": "..."}}`. Codes are stable: clients branch on
//! them, so never rename one. Engine rejects carry the engine's own reject name in upper snake
//! case (for example `INSUFFICIENT_FUNDS`) and its numeric code in `reject_code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use engine::RejectReason;

/// The API's own error codes (engine rejects use [`reject_code_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    Throttled,
    InvalidJson,
    InvalidAmount,
    InvalidTransactionId,
    InvalidSeq,
    UnknownCurrency,
    UnknownAccount,
    UnknownOrder,
    UnknownInstrument,
    NotFound,
    MethodNotAllowed,
    /// The input ring is full: back-pressure.
    Busy,
    /// The answer did not come in time.
    Timeout,
    /// The API is stopping or its consumer failed.
    Unavailable,
    /// A history replay failed.
    ReplayFailed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::Throttled => "THROTTLED",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidAmount => "INVALID_AMOUNT",
            ErrorCode::InvalidTransactionId => "INVALID_TRANSACTION_ID",
            ErrorCode::InvalidSeq => "INVALID_SEQ",
            ErrorCode::UnknownCurrency => "UNKNOWN_CURRENCY",
            ErrorCode::UnknownAccount => "UNKNOWN_ACCOUNT",
            ErrorCode::UnknownOrder => "UNKNOWN_ORDER",
            ErrorCode::UnknownInstrument => "UNKNOWN_INSTRUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Busy => "BUSY",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::ReplayFailed => "REPLAY_FAILED",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Throttled => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InvalidJson
            | ErrorCode::InvalidAmount
            | ErrorCode::InvalidTransactionId
            | ErrorCode::InvalidSeq
            | ErrorCode::UnknownCurrency => StatusCode::BAD_REQUEST,
            ErrorCode::UnknownAccount
            | ErrorCode::UnknownOrder
            | ErrorCode::UnknownInstrument
            | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Busy | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::ReplayFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error response.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    reject_code: Option<u16>,
    retry_after_s: Option<u64>,
}

impl ApiError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code: code.as_str(),
            message: message.into(),
            reject_code: None,
            retry_after_s: None,
        }
    }

    /// 429 (or 503) with a `Retry-After` of at least one second.
    pub(super) fn retry_after(code: ErrorCode, message: impl Into<String>, seconds: u64) -> Self {
        ApiError { retry_after_s: Some(seconds.max(1)), ..ApiError::new(code, message) }
    }

    /// The engine refused the command: 409 for a reused transaction id, 422 otherwise.
    pub(super) fn rejected(reason: RejectReason) -> ApiError {
        let status = match reason {
            RejectReason::TransactionIdReused => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError {
            status,
            code: reject_code_name(reason),
            message: reason.text().to_owned(),
            reject_code: Some(reason.code()),
            retry_after_s: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(code) = self.reject_code {
            error["reject_code"] = code.into();
        }
        let body = serde_json::json!({ "error": error });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The stable code of an engine reject, in the API's upper snake case.
pub fn reject_code_name(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::UnknownInstrument => "UNKNOWN_INSTRUMENT",
        RejectReason::UnknownAccount => "UNKNOWN_ACCOUNT",
        RejectReason::UnknownAsset => "UNKNOWN_ASSET",
        RejectReason::InstrumentHalted => "INSTRUMENT_HALTED",
        RejectReason::InvalidPrice => "INVALID_PRICE",
        RejectReason::InvalidQuantity => "INVALID_QUANTITY",
        RejectReason::PriceOutsideBand => "PRICE_OUTSIDE_BAND",
        RejectReason::InsufficientFunds => "INSUFFICIENT_FUNDS",
        RejectReason::DuplicateOrderId => "DUPLICATE_ORDER_ID",
        RejectReason::UnknownOrder => "UNKNOWN_ORDER",
        RejectReason::PostOnlyWouldTake => "POST_ONLY_WOULD_TAKE",
        RejectReason::OrdersCapacityReached => "ORDERS_CAPACITY_REACHED",
        RejectReason::AccountOrdersLimitReached => "ACCOUNT_ORDERS_LIMIT_REACHED",
        RejectReason::PriceLevelsCapacityReached => "PRICE_LEVELS_CAPACITY_REACHED",
        RejectReason::MarketBuyNeedsBudget => "MARKET_BUY_NEEDS_BUDGET",
        RejectReason::UnexpectedBudget => "UNEXPECTED_BUDGET",
        RejectReason::InvalidTimeInForce => "INVALID_TIME_IN_FORCE",
        RejectReason::AmendQuantityNotAboveFilled => "AMEND_QUANTITY_NOT_ABOVE_FILLED",
        RejectReason::AmendNoChange => "AMEND_NO_CHANGE",
        RejectReason::TransactionIdReused => "TRANSACTION_ID_REUSED",
        RejectReason::TransactionsCapacityReached => "TRANSACTIONS_CAPACITY_REACHED",
        RejectReason::AccountExists => "ACCOUNT_EXISTS",
        RejectReason::AccountsCapacityReached => "ACCOUNTS_CAPACITY_REACHED",
        RejectReason::InvalidAmount => "INVALID_AMOUNT",
        RejectReason::SameAccount => "SAME_ACCOUNT",
        RejectReason::AssetExists => "ASSET_EXISTS",
        RejectReason::InstrumentExists => "INSTRUMENT_EXISTS",
        RejectReason::InvalidInstrument => "INVALID_INSTRUMENT",
        RejectReason::InstrumentsCapacityReached => "INSTRUMENTS_CAPACITY_REACHED",
        RejectReason::AssetsCapacityReached => "ASSETS_CAPACITY_REACHED",
        RejectReason::WorldAccount => "WORLD_ACCOUNT",
        RejectReason::BalanceOverflow => "BALANCE_OVERFLOW",
        RejectReason::InvalidTransactionId => "INVALID_TRANSACTION_ID",
        RejectReason::InvalidOrderId => "INVALID_ORDER_ID",
        // The engine's enum is non-exhaustive: a reason added later is still a stable code.
        _ => "REJECTED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_has_its_own_code() {
        let mut seen = std::collections::HashSet::new();
        for reason in engine::ALL_REJECT_REASONS {
            let name = reject_code_name(reason);
            assert_ne!(name, "REJECTED", "{reason:?}");
            assert!(seen.insert(name), "{name} twice");
        }
    }
}
