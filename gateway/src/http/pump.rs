//! The output ring's consumer: one thread that follows the loop's sequenced output, keeps the
//! read model current and answers waiting requests.
//!
//! Each request registers a oneshot sender under its origin before its command is pushed. When
//! the echo of a command with one of our origins arrives, the sender is taken out and the
//! command's first event answers it, after the model has applied that event and released its
//! lock, so a client that reads its balance after the answer sees the change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use engine::{CommandBody, Event};
use sequencer::priority;
use sequencer::record::{decode_output, Output, Record};
use sequencer::ring::{BackoffConfig, BackoffIdle, IdleStrategy, RingConsumer};
use tokio::sync::oneshot;

use super::model::ReadModel;
use super::SOURCE_HTTP;

/// Records taken from the output ring per pass, under one write lock of the model.
const POLL_LIMIT: usize = 256;

/// How the engine answered a request: the first event of its command.
#[derive(Clone, Copy, Debug)]
pub(super) struct Answer {
    pub seq: u64,
    pub event: Event,
}

/// Requests waiting for their answer, by origin.
#[derive(Debug, Default)]
pub(super) struct Pending {
    waiting: Mutex<HashMap<u32, oneshot::Sender<Answer>>>,
    next: AtomicU32,
    closed: AtomicBool,
}

impl Pending {
    /// A fresh origin and the receiver of its answer; `None` once the consumer has stopped.
    pub(super) fn register(&self) -> Option<(u32, oneshot::Receiver<Answer>)> {
        let counter = self.next.fetch_add(1, Ordering::Relaxed) & 0x00FF_FFFF;
        let origin = u32::from(SOURCE_HTTP) << 24 | counter;
        let (sender, receiver) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `close` takes, so no sender is left behind after it.
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        waiting.insert(origin, sender);
        Some((origin, receiver))
    }

    /// Forgets a request that will not be answered (its push failed, or it timed out).
    pub(super) fn cancel(&self, origin: u32) {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&origin);
    }

    fn take(&self, origin: u32) -> Option<oneshot::Sender<Answer>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&origin)
    }

    /// Drops every waiting sender, so their requests fail at once instead of timing out.
    fn close(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::Release);
        waiting.clear();
    }

    /// Whether the consumer has stopped.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Requests waiting now.
    pub(super) fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The command whose events are arriving.
struct Current {
    seq: u64,
    body: CommandBody,
    waiter: Option<oneshot::Sender<Answer>>,
}

/// Starts the consumer thread; it runs until `stop` is set, then fails every waiting request.
pub(super) fn spawn(
    mut output: RingConsumer,
    model: Arc<RwLock<ReadModel>>,
    pending: Arc<Pending>,
    stop: Arc<AtomicBool>,
    output_depth: Arc<AtomicU64>,
    idle: BackoffConfig,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("http-pump".to_owned()).spawn(move || {
        priority::set_current_thread_nice(priority::HOUSEKEEPING_NICE);
        let mut idle = BackoffIdle::new(idle);
        let mut current: Option<Current> = None;
        let mut answers = Vec::with_capacity(POLL_LIMIT);
        while !stop.load(Ordering::Acquire) {
            let work = {
                let mut model = model.write().unwrap_or_else(PoisonError::into_inner);
                output.poll(POLL_LIMIT, |bytes| {
                    let Ok(record) = <&Record>::try_from(bytes) else { return };
                    follow(record, &mut model, &pending, &mut current, &mut answers);
                })
            };
            for (sender, answer) in answers.drain(..) {
                // The request may have timed out and gone; its answer is then nobody's.
                let _ = sender.send(answer);
            }
            output_depth
                .store(u64::try_from(output.depth()).unwrap_or(u64::MAX), Ordering::Release);
            idle.idle(work);
        }
        pending.close();
    })
}

/// Applies one output record to the model and picks out answers to our requests.
fn follow(
    record: &Record,
    model: &mut ReadModel,
    pending: &Pending,
    current: &mut Option<Current>,
    answers: &mut Vec<(oneshot::Sender<Answer>, Answer)>,
) {
    // Records that do not decode cannot come from the loop's own encoder; skipping one loses
    // at most one read-model update, which `/health` shows as a sequence behind the node's.
    let Ok(output) = decode_output(record) else { return };
    match output {
        Output::Echo { command, origin } => {
            model.apply_command(command.seq);
            let ours = origin.to_be_bytes()[0] == SOURCE_HTTP;
            let waiter = if ours { pending.take(origin) } else { None };
            *current = Some(Current { seq: command.seq, body: command.body, waiter });
        }
        Output::Event(event) => {
            let current = current.as_mut().filter(|current| current.seq == event.seq);
            model.apply(event.seq, current.as_ref().map(|current| &current.body), &event.event);
            if let Some(waiter) = current.and_then(|current| current.waiter.take()) {
                answers.push((waiter, Answer { seq: event.seq, event: event.event }));
            }
        }
    }
}
