//! The sequencer: everything between the inputs and the engine, and everything that makes the
//! engine's work durable and replayable.
//!
//! Commands arrive from producers (gateway, wallet API, simulators) over single-producer,
//! single-consumer rings in shared memory ([`ring`]); the sequencer stamps each with a gap-free
//! sequence number and a timestamp, encodes it as a fixed-size [`record`], appends it to the
//! command [`journal`] and hands it to the engine; the engine's events are journaled the same way,
//! for audit and for downstream readers. The durable sequence number is published as a watermark
//! that output paths wait on. Periodic snapshots of the engine's full state go to RocksDB
//! ([`snapshot_store`]); recovery and replay restore the newest valid one and read back only the
//! journal after it.
//!
//! This crate does file, memory-mapping and RocksDB I/O; it never opens sockets and never decides
//! anything about orders or money: that is the engine's job.

pub mod app_loop;
mod background;
pub mod journal;
pub mod priority;
pub mod record;
pub mod ring;
pub mod sequencer;
pub mod snapshot_store;
mod snapshot_writer;
pub mod staging;
