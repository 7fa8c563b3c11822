//! `/metrics` in the Prometheus text format (version 0.0.4), and the API's own latency
//! histogram: from a command pushed onto the input ring to its durable answer arriving.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine::RejectReason;

use super::model::Counters;
use super::RingDepth;

/// Upper bounds of the latency buckets, in microseconds; the last bucket is `+Inf`.
const BOUNDS_US: [u64; 14] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A fixed-bucket histogram that many threads add to without locks.
#[derive(Debug, Default)]
pub(super) struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the extra one is above every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    pub(super) fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let index = BOUNDS_US.iter().position(|bound| us <= *bound).unwrap_or(BOUNDS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (index, bound) in BOUNDS_US.iter().enumerate() {
            cumulative += self.buckets[index].load(Ordering::Relaxed);
            let seconds = seconds_text(*bound);
            let _ = writeln!(out, "{name}_bucket{{le=\"{seconds}\"}} {cumulative}");
        }
        cumulative += self.buckets[BOUNDS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_us = self.sum_us.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_sum {}", seconds_text(sum_us));
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// Microseconds as decimal seconds, exactly (no floats): 2500 is `0.0025`.
fn seconds_text(us: u64) -> String {
    engine::decimal::format_units(u128::from(us), 6).to_string()
}

/// What one `/metrics` answer reports.
#[derive(Debug)]
pub(super) struct Snapshot<'a> {
    pub counters: &'a Counters,
    pub orders_known: usize,
    pub model_seq: u64,
    pub sequence: u64,
    pub durable_seq: u64,
    pub fix_sessions: u64,
    pub rings: &'a [RingDepth],
    pub pending_requests: usize,
    pub latency: &'a LatencyHistogram,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// Renders everything as Prometheus text.
pub(super) fn render(snapshot: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let counters = snapshot.counters;
    let help = "Commands sequenced (all sources) since the API started";
    counter(&mut out, "exchange_commands_total", help, counters.commands);
    counter(&mut out, "exchange_events_total", "Events released", counters.events);
    let help = "Orders accepted by the engine";
    counter(&mut out, "exchange_orders_accepted_total", help, counters.orders_accepted);
    counter(&mut out, "exchange_fills_total", "Trades (one per maker fill)", counters.trades);
    counter(&mut out, "exchange_order_cancels_total", "Orders cancelled", counters.cancels);
    counter(&mut out, "exchange_deposits_total", "Deposits executed", counters.deposits);
    counter(&mut out, "exchange_withdrawals_total", "Withdrawals executed", counters.withdrawals);
    counter(&mut out, "exchange_transfers_total", "Transfers executed", counters.transfers);
    let help = "Wallet retries answered with the first result";
    counter(
        &mut out,
        "exchange_transaction_duplicates_total",
        help,
        counters.transaction_duplicates,
    );
    let name = "exchange_rejects_total";
    let _ = writeln!(out, "# HELP {name} Commands rejected, by reason");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (code, count) in &counters.rejects {
        let reason =
            RejectReason::from_code(*code).map_or("REJECTED", super::error::reject_code_name);
        let _ = writeln!(out, "{name}{{code=\"{code}\",reason=\"{reason}\"}} {count}");
    }
    gauge(&mut out, "exchange_orders_known", "Orders in the API's read model", {
        u64::try_from(snapshot.orders_known).unwrap_or(u64::MAX)
    });
    gauge(&mut out, "exchange_sequence", "Last sequence number assigned", snapshot.sequence);
    let help = "Sequence number up to which everything is durable";
    gauge(&mut out, "exchange_durable_seq", help, snapshot.durable_seq);
    let help = "Sequenced but not yet durable commands";
    let lag = snapshot.sequence.saturating_sub(snapshot.durable_seq);
    gauge(&mut out, "exchange_journal_lag", help, lag);
    let help = "Last sequence number the HTTP API's read model applied";
    gauge(&mut out, "exchange_http_read_model_seq", help, snapshot.model_seq);
    gauge(&mut out, "exchange_fix_sessions", "Logged-on FIX sessions", snapshot.fix_sessions);
    let help = "HTTP requests waiting for their durable answer";
    let pending = u64::try_from(snapshot.pending_requests).unwrap_or(u64::MAX);
    gauge(&mut out, "exchange_http_pending_requests", help, pending);
    for (name, help) in [
        ("exchange_ring_depth", "Records waiting in a ring"),
        ("exchange_ring_capacity", "Slots of a ring"),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for ring in snapshot.rings {
            let value = if name == "exchange_ring_depth" { ring.depth } else { ring.capacity };
            let _ = writeln!(out, "{name}{{ring=\"{}\"}} {value}", ring.name);
        }
    }
    snapshot.latency.write(
        &mut out,
        "exchange_http_command_latency_seconds",
        "HTTP command pushed onto the input ring to its durable answer",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(30));
        histogram.record(Duration::from_micros(30));
        histogram.record(Duration::from_secs(5));
        let mut out = String::new();
        histogram.write(&mut out, "h", "help");
        assert!(out.contains("h_bucket{le=\"0.000025\"} 0\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.00005\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_sum 5.00006\n"), "{out}");
        assert!(out.contains("h_count 3\n"), "{out}");
    }
}
