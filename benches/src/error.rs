//! Operating errors of the benchmarks: bad settings and failures to write results. Broken
//! invariants inside a run (the engine rejecting its own setup, a run diverging from another)
//! panic instead, because a benchmark that carries on after them would report a lie.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("invalid benchmark setting: {0}")]
    InvalidSetting(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
    #[error("cannot draw the plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("cannot encode the JSON summary: {0}")]
    Json(#[from] serde_json::Error),
    #[error("sequencer or journal: {0}")]
    Sequencer(String),
    #[error("the benchmark thread panicked")]
    ThreadPanicked,
}
