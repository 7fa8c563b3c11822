//! Load generators and benchmarks for the exchange: `exchange bench engine`,
//! `exchange bench wallet [--journal]`, `exchange bench ring`, `exchange bench journal`,
//! `exchange bench loop` and `exchange bench fix`.
//!
//! In: settings from the CLI. Out: a percentile report for people (on a writer the caller
//! gives), `.hgrm` percentile distributions and PNG percentile plots in an output directory, and
//! a report struct the CLI prints as one JSON line. Command streams are generated up front from
//! a seed ([`market`], [`wallet`]), replayed through a fresh [`engine::Engine`] on a thread
//! pinned to the last core, and timed closed-loop (throughput) and open-loop at fixed offered
//! rates with coordinated omission corrected ([`runner`]). The engine bench also drives the same
//! stream through the `orderbook-rs` crate as a peer ([`peer`]). The ring bench ([`ring`]) times
//! one hop through a sequencer ring between two threads pinned to different cores. The durable
//! benchmarks ([`journal_bench`], [`loop_bench`], [`wallet_journal`]) write real journal files
//! under each durability policy ([`durable`]) and name the policy in every result. The FIX
//! benchmark ([`fix_bench`]) drives a running node over loopback TCP as FIX sessions.
//!
//! This crate never changes the engine's behaviour and never skips work: every command of every
//! stream, setup and warm-up included, goes through the engine's public `handle`, and each run
//! must end in the exact state (by state hash) the stream's generator predicted.

pub mod durable;
pub mod engine_bench;
mod error;
pub mod fix_bench;
pub mod journal_bench;
pub mod loop_bench;
pub mod market;
pub mod peer;
pub mod plot;
pub mod report;
pub mod ring;
pub mod rng;
pub mod runner;
pub mod wallet;
pub mod wallet_journal;

pub use engine_bench::{EngineBenchConfig, EngineBenchReport};
pub use error::BenchError;
pub use fix_bench::{FixBenchConfig, FixBenchReport, FixLogin};
pub use journal_bench::{JournalBenchConfig, JournalBenchReport};
pub use loop_bench::{LoopBenchConfig, LoopBenchReport};
pub use market::Mix;
pub use ring::{RingBenchConfig, RingBenchReport};
pub use wallet::{WalletBenchConfig, WalletBenchReport};
