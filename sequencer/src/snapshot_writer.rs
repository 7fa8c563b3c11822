//! Periodic snapshots without a pause in the application loop.
//!
//! The loop's part is the capture: encoding the engine's state, between two commands, into a
//! buffer it reuses (no allocation once the buffer has grown to the state's size). A writer thread
//! does the rest, which is where the time goes: it makes both journals durable up to the
//! snapshot's seq (a snapshot must never be ahead of the journal it will be replayed against),
//! stores the value in RocksDB with a synced write, prunes old snapshots, and hands the buffer
//! back. One snapshot is in flight at a time; while one is, the loop does not capture another.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use engine::Engine;

use crate::journal::JournalSync;
use crate::sequencer::SequencerError;
use crate::snapshot_store::{encode_value, SnapshotStore};

struct Job {
    seq: u64,
    value: Vec<u8>,
}

/// The loop's handle on the snapshot writer thread.
#[derive(Debug)]
pub(crate) struct SnapshotWriter {
    jobs: Option<SyncSender<Job>>,
    buffers: Receiver<Vec<u8>>,
    /// The buffer to capture into next, when no snapshot is in flight.
    buffer: Option<Vec<u8>>,
    /// The seq of the newest snapshot stored by the thread.
    stored: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<SequencerError>>>,
    thread: Option<JoinHandle<()>>,
}

impl SnapshotWriter {
    pub fn start(
        store: Arc<SnapshotStore>,
        journals: [JournalSync; 2],
        keep: usize,
    ) -> std::io::Result<SnapshotWriter> {
        let (jobs, job_receiver) = mpsc::sync_channel::<Job>(1);
        let (buffer_sender, buffers) = mpsc::sync_channel::<Vec<u8>>(1);
        let stored = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let (thread_stored, thread_failed) = (Arc::clone(&stored), Arc::clone(&failed));
        let thread_failure = Arc::clone(&failure);
        let thread =
            thread::Builder::new().name("snapshot-writer".to_owned()).spawn(move || {
                crate::priority::set_current_thread_nice(crate::priority::BACKGROUND_NICE);
                for job in job_receiver {
                    match store_snapshot(&store, &journals, keep, &job) {
                        Ok(()) => thread_stored.store(job.seq, Ordering::Release),
                        Err(error) => {
                            *thread_failure.lock().unwrap_or_else(PoisonError::into_inner) =
                                Some(error);
                            thread_failed.store(true, Ordering::Release);
                        }
                    }
                    // The loop may have gone; then the buffer simply drops.
                    let _ = buffer_sender.send(job.value);
                }
            })?;
        Ok(SnapshotWriter {
            jobs: Some(jobs),
            buffers,
            buffer: Some(Vec::new()),
            stored,
            failed,
            failure,
            thread: Some(thread),
        })
    }

    /// Captures the engine's state and hands it to the writer thread. Returns the snapshot's seq,
    /// or `None` while the previous snapshot is still being written (try again later). An error
    /// the thread met on an earlier snapshot is returned here.
    pub fn capture(&mut self, engine: &Engine) -> Result<Option<u64>, SequencerError> {
        self.check()?;
        if self.buffer.is_none() {
            match self.buffers.try_recv() {
                Ok(buffer) => self.buffer = Some(buffer),
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => return Err(thread_gone()),
            }
        }
        let mut value = self.buffer.take().expect("a buffer is on hand");
        let seq = encode_value(engine, &mut value);
        let jobs = self.jobs.as_ref().expect("the channel lives until drop");
        jobs.try_send(Job { seq, value }).map_err(|_| thread_gone())?;
        Ok(Some(seq))
    }

    /// The seq of the newest snapshot the thread has stored (zero: none yet).
    pub fn stored_seq(&self) -> u64 {
        self.stored.load(Ordering::Acquire)
    }

    fn check(&self) -> Result<(), SequencerError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.failure.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_else(
            || SequencerError::Background("the snapshot writer failed earlier".to_owned()),
        ))
    }

    /// Waits for the snapshot in flight, if any, and returns what went wrong with it.
    pub fn finish(&mut self) -> Result<(), SequencerError> {
        if self.buffer.is_none() {
            match self.buffers.recv() {
                Ok(buffer) => self.buffer = Some(buffer),
                Err(_) => return Err(thread_gone()),
            }
        }
        self.check()
    }
}

fn thread_gone() -> SequencerError {
    SequencerError::Background("the snapshot writer thread is gone".to_owned())
}

fn store_snapshot(
    store: &SnapshotStore,
    journals: &[JournalSync; 2],
    keep: usize,
    job: &Job,
) -> Result<(), SequencerError> {
    let [commands, events] = journals;
    // The capture commits first, so syncing what is committed covers every command up to the
    // snapshot and all of their events. The command journal has one record per seq, so its
    // watermark proves it; the event journal's may be lower when the last commands had no
    // events.
    let durable = commands.sync()?;
    events.sync()?;
    if durable < job.seq {
        return Err(SequencerError::Background(format!(
            "snapshot {} is ahead of the command journal, durable to {durable}; not stored",
            job.seq
        )));
    }
    store.put(job.seq, &job.value)?;
    store.prune(keep)?;
    Ok(())
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the snapshot in flight is stored.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
