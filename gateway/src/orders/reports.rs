//! Builders for the outbound application messages: ExecutionReport (8), OrderCancelReject (9),
//! OrderMassCancelReport (r) and BusinessMessageReject (j). They compute and return; the order
//! entry decides when to send what.

use engine::{Price, Quantity};

use super::instrument::Instrument;
use super::Order;
use crate::fix::codec::UtcTimestamp;
use crate::message::{push_decimal, FieldValue, Message};

/// FIX tags this module writes, by name, so that builders read like the specification.
pub(crate) mod tag {
    pub const ACCOUNT: u32 = 1;
    pub const AVG_PX: u32 = 6;
    pub const CL_ORD_ID: u32 = 11;
    pub const CUM_QTY: u32 = 14;
    pub const EXEC_ID: u32 = 17;
    pub const EXEC_INST: u32 = 18;
    pub const LAST_PX: u32 = 31;
    pub const LAST_QTY: u32 = 32;
    pub const ORDER_ID: u32 = 37;
    pub const ORDER_QTY: u32 = 38;
    pub const ORD_STATUS: u32 = 39;
    pub const ORD_TYPE: u32 = 40;
    pub const ORIG_CL_ORD_ID: u32 = 41;
    pub const PRICE: u32 = 44;
    pub const SIDE: u32 = 54;
    pub const SYMBOL: u32 = 55;
    pub const TEXT: u32 = 58;
    pub const TIME_IN_FORCE: u32 = 59;
    pub const TRANSACT_TIME: u32 = 60;
    pub const CXL_REJ_REASON: u32 = 102;
    pub const ORD_REJ_REASON: u32 = 103;
    pub const EXEC_TYPE: u32 = 150;
    pub const LEAVES_QTY: u32 = 151;
    pub const CASH_ORDER_QTY: u32 = 152;
    pub const REF_MSG_TYPE: u32 = 372;
    pub const BUSINESS_REJECT_REF_ID: u32 = 379;
    pub const BUSINESS_REJECT_REASON: u32 = 380;
    pub const CXL_REJ_RESPONSE_TO: u32 = 434;
    pub const MASS_CANCEL_REQUEST_TYPE: u32 = 530;
    pub const MASS_CANCEL_RESPONSE: u32 = 531;
    pub const MASS_CANCEL_REJECT_REASON: u32 = 532;
    pub const TOTAL_AFFECTED_ORDERS: u32 = 533;
    /// Custom tag (user-defined range): SelfTradePreventionMode, see the module documentation.
    pub const SELF_TRADE_PREVENTION: u32 = 8000;
}

/// Nanoseconds since the Unix epoch as a FIX UTCTimestamp with milliseconds,
/// `YYYYMMDD-HH:MM:SS.sss`, the precision FIX 4.4 defines: the session layer's formatter, as a
/// field value.
pub fn utc_timestamp(timestamp_ns: u64) -> UtcTimestamp {
    UtcTimestamp(timestamp_ns)
}

/// ExecID (17), written as text only into the report: `seq-index` of the event that caused
/// the report, with `-M` or `-T` for the maker's and the taker's side of a trade, or
/// `X<now_ns>-<counter>` for a report that no event causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExecId {
    Event { seq: u64, index: u32, side: Option<char> },
    Reply { time_ns: u64, counter: u64 },
}

impl FieldValue for ExecId {
    fn write_value(&self, out: &mut String) {
        match *self {
            ExecId::Event { seq, index, side } => {
                push_decimal(out, seq);
                out.push('-');
                push_decimal(out, u64::from(index));
                if let Some(side) = side {
                    out.push('-');
                    out.push(side);
                }
            }
            ExecId::Reply { time_ns, counter } => {
                out.push('X');
                push_decimal(out, time_ns);
                out.push('-');
                push_decimal(out, counter);
            }
        }
    }
}

/// What one ExecutionReport says beyond the order's own state.
#[derive(Debug)]
pub(crate) struct Execution<'a> {
    pub exec_id: ExecId,
    pub exec_type: char,
    /// The report answers a request that gave the order a new ClOrdID (11): the one before it
    /// is reported as OrigClOrdID (41).
    pub renamed: bool,
    /// LastPx and LastQty of a fill.
    pub last: Option<(Price, Quantity)>,
    pub ord_rej_reason: Option<u32>,
    pub text: Option<&'a str>,
    pub transact_time_ns: u64,
}

/// An ExecutionReport for one order of the table, figures included.
pub(crate) fn execution_report(
    order: &Order,
    instrument: &Instrument,
    execution: &Execution<'_>,
) -> Message {
    let mut message = Message::new("8")
        .with(tag::ORDER_ID, order.order_id)
        .with(tag::CL_ORD_ID, &order.cl_ord_id);
    if execution.renamed {
        // The chain ends with the current ClOrdID; the one before it is the original.
        if let Some(orig) = order.chain.len().checked_sub(2).map(|index| &order.chain[index]) {
            message.push(tag::ORIG_CL_ORD_ID, orig);
        }
    }
    message.push(tag::EXEC_ID, execution.exec_id);
    message.push(tag::EXEC_TYPE, execution.exec_type);
    message.push(tag::ORD_STATUS, order.status.code());
    message.push(tag::ACCOUNT, order.account);
    message.push(tag::SYMBOL, &instrument.symbol);
    message.push(tag::SIDE, order.side);
    message.push(tag::ORD_TYPE, order.ord_type);
    if order.ord_type == '2' {
        message.push(tag::PRICE, instrument.format_price(Price(order.price)));
    }
    message.push(tag::ORDER_QTY, instrument.format_quantity(Quantity(order.quantity)));
    if order.quote_budget > 0 {
        let budget = engine::Amount(order.quote_budget);
        message.push(tag::CASH_ORDER_QTY, instrument.format_quote_amount(budget));
    }
    message.push(tag::TIME_IN_FORCE, order.tif);
    if let Some((price, quantity)) = execution.last {
        message.push(tag::LAST_QTY, instrument.format_quantity(quantity));
        message.push(tag::LAST_PX, instrument.format_price(price));
    }
    message.push(tag::LEAVES_QTY, instrument.format_quantity(Quantity(order.leaves)));
    message.push(tag::CUM_QTY, instrument.format_quantity(Quantity(order.cum)));
    message.push(tag::AVG_PX, instrument.format_average_price(order.ticks_lots, order.cum));
    if let Some(reason) = execution.ord_rej_reason {
        message.push(tag::ORD_REJ_REASON, reason);
    }
    if let Some(text) = execution.text {
        message.push(tag::TEXT, text);
    }
    message.push(tag::TRANSACT_TIME, utc_timestamp(execution.transact_time_ns));
    message
}

/// A rejecting ExecutionReport for a request that never became an order (or an order the
/// session cannot see): identifying fields are quoted back from the request as they came.
pub(crate) fn request_rejected(
    request: &Message,
    exec_id: ExecId,
    exec_type: char,
    ord_rej_reason: u32,
    text: &str,
    transact_time_ns: u64,
) -> Message {
    let mut message = Message::new("8")
        .with(tag::ORDER_ID, request.get(tag::ORDER_ID).unwrap_or("NONE"))
        .with(tag::CL_ORD_ID, request.get(tag::CL_ORD_ID).unwrap_or("NONE"))
        .with(tag::EXEC_ID, exec_id)
        .with(tag::EXEC_TYPE, exec_type)
        .with(tag::ORD_STATUS, '8');
    for field in [tag::ACCOUNT, tag::SYMBOL, tag::SIDE, tag::ORD_TYPE, tag::PRICE] {
        if let Some(value) = request.get(field) {
            message.push(field, value);
        }
    }
    if let Some(quantity) = request.get(tag::ORDER_QTY) {
        message.push(tag::ORDER_QTY, quantity);
    }
    message.push(tag::LEAVES_QTY, 0);
    message.push(tag::CUM_QTY, 0);
    message.push(tag::AVG_PX, 0);
    message.push(tag::ORD_REJ_REASON, ord_rej_reason);
    message.push(tag::TEXT, text);
    message.push(tag::TRANSACT_TIME, utc_timestamp(transact_time_ns));
    message
}

/// What one OrderCancelReject says.
#[derive(Debug)]
pub(crate) struct CancelReject<'a> {
    /// OrderID (37); `NONE` when the order is unknown, as the standard suggests.
    pub order_id: Option<u64>,
    pub cl_ord_id: &'a str,
    pub orig_cl_ord_id: &'a str,
    /// OrdStatus (39) of the order; `8` when it is unknown.
    pub ord_status: char,
    /// CxlRejResponseTo (434): `1` for a cancel request, `2` for a cancel-replace request.
    pub response_to: char,
    pub reason: u32,
    pub text: &'a str,
    pub transact_time_ns: u64,
}

pub(crate) fn cancel_reject(reject: &CancelReject<'_>) -> Message {
    let order_id = reject.order_id.map_or_else(|| "NONE".to_owned(), |id| id.to_string());
    Message::new("9")
        .with(tag::ORDER_ID, order_id)
        .with(tag::CL_ORD_ID, reject.cl_ord_id)
        .with(tag::ORIG_CL_ORD_ID, reject.orig_cl_ord_id)
        .with(tag::ORD_STATUS, reject.ord_status)
        .with(tag::CXL_REJ_RESPONSE_TO, reject.response_to)
        .with(tag::CXL_REJ_REASON, reject.reason)
        .with(tag::TEXT, reject.text)
        .with(tag::TRANSACT_TIME, utc_timestamp(reject.transact_time_ns))
}

/// A BusinessMessageReject. RefSeqNum (45) is the session layer's to add: only it knows the
/// inbound sequence number.
pub(crate) fn business_reject(
    ref_msg_type: &str,
    ref_id: Option<&str>,
    reason: u32,
    text: &str,
) -> Message {
    let mut message = Message::new("j").with(tag::REF_MSG_TYPE, ref_msg_type);
    if let Some(id) = ref_id {
        message.push(tag::BUSINESS_REJECT_REF_ID, id);
    }
    message.with(tag::BUSINESS_REJECT_REASON, reason).with(tag::TEXT, text)
}

/// OrderID (37) of a mass cancel: the gateway's identifier of the request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MassCancelId {
    /// `MC<request number>` for a request that went to the engine.
    Request(u64),
    /// The ExecID of the report, for a request refused before it.
    Refused(ExecId),
}

impl FieldValue for MassCancelId {
    fn write_value(&self, out: &mut String) {
        match self {
            MassCancelId::Request(number) => {
                out.push_str("MC");
                push_decimal(out, *number);
            }
            MassCancelId::Refused(exec_id) => exec_id.write_value(out),
        }
    }
}

/// What one OrderMassCancelReport says.
#[derive(Debug)]
pub(crate) struct MassCancelReport<'a> {
    /// OrderID (37): the gateway's identifier of the mass cancel request.
    pub order_id: MassCancelId,
    pub cl_ord_id: &'a str,
    pub request_type: char,
    /// MassCancelResponse (531): `0` rejected, otherwise the request type carried out.
    pub response: char,
    pub reject_reason: Option<u32>,
    pub affected: u64,
    pub symbol: Option<&'a str>,
    pub text: Option<&'a str>,
    pub transact_time_ns: u64,
}

pub(crate) fn mass_cancel_report(report: &MassCancelReport<'_>) -> Message {
    let mut message = Message::new("r")
        .with(tag::CL_ORD_ID, report.cl_ord_id)
        .with(tag::ORDER_ID, report.order_id)
        .with(tag::MASS_CANCEL_REQUEST_TYPE, report.request_type)
        .with(tag::MASS_CANCEL_RESPONSE, report.response);
    if let Some(reason) = report.reject_reason {
        message.push(tag::MASS_CANCEL_REJECT_REASON, reason);
    }
    message.push(tag::TOTAL_AFFECTED_ORDERS, report.affected);
    if let Some(symbol) = report.symbol {
        message.push(tag::SYMBOL, symbol);
    }
    if let Some(text) = report.text {
        message.push(tag::TEXT, text);
    }
    message.with(tag::TRANSACT_TIME, utc_timestamp(report.transact_time_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_fix_utc() {
        assert_eq!(utc_timestamp(0).to_string(), "19700101-00:00:00.000");
        // 2024-02-29 12:34:56.789, a leap day.
        assert_eq!(utc_timestamp(1_709_210_096_789_000_000).to_string(), "20240229-12:34:56.789");
        assert_eq!(utc_timestamp(951_782_400_000_000_000).to_string(), "20000229-00:00:00.000");
        assert_eq!(utc_timestamp(4_102_444_799_999_999_999).to_string(), "20991231-23:59:59.999");
    }
}
