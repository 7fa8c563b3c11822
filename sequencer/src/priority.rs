//! Scheduling priorities of the node's helper threads.
//!
//! On a two-core machine the application loop has a core of its own, and the FIX I/O thread
//! shares the other with every helper: journal flushers and segment preparers, snapshot
//! writers, the HTTP read model's pump. At equal priority the scheduler gives a helper with a
//! burst of work (preparing a 16 MiB segment, encoding a snapshot) its full time slice while the
//! FIX thread waits with messages in hand: an off-CPU profile showed the FIX thread runnable but
//! held back for up to 27 ms behind a preparer. Helpers therefore run at a lower priority (a
//! higher nice value, which Linux applies per thread), so that the latency-bound thread goes
//! first whenever both want the core and helpers use what it leaves.
//!
//! Lowering a thread's own priority needs no privilege. If it fails all the same, only latency
//! suffers, so the failure is reported to the caller and otherwise ignored.

/// Helpers whose delay shows up somewhere, though not in an order's answer under the default
/// release policy: the group-commit flushers (the durable watermark), the HTTP pump (the wallet
/// API's read model) and the segment preparers. They keep a real share of the core under load.
/// A preparer at nice 19 got so little of a busy core that its spare (a few milliseconds of
/// work) was not ready a second later, and the FIX thread prepared its next segment itself at
/// roll-over, a 12 ms stall.
pub const HOUSEKEEPING_NICE: i32 = 10;

/// Helpers that work ahead of need and can wait: snapshot writers.
pub const BACKGROUND_NICE: i32 = 19;

/// Sets the nice value of the calling thread; false if the system refused.
pub fn set_current_thread_nice(nice: i32) -> bool {
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_and_no_other() {
        let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = own();
        let lowered = std::thread::spawn(move || {
            assert!(set_current_thread_nice(BACKGROUND_NICE), "lowering needs no privilege");
            own()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, BACKGROUND_NICE);
        assert_eq!(own(), before, "the spawning thread keeps its priority");
    }
}
