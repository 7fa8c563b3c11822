//! RocksDB settings shared by the gateway's stores.

use rocksdb::{MemtableFactory, Options};

/// Tunes `options` for a store that the order path writes on every message and that is read
/// only at start-up and on rare requests (a resend, an order-entry snapshot).
///
/// RocksDB's default memtable is a skip list: each insert walks it comparing keys, and profiles
/// of the FIX path showed that walk, cold in cache, as a third of the I/O thread's time. A vector
/// memtable appends instead and sorts once, when it is flushed on RocksDB's own thread; the
/// price is that a read of the live memtable sorts a copy of it, which the small write buffer
/// keeps to milliseconds, and reads are rare here.
pub(crate) fn append_mostly(options: &mut Options) {
    options.set_memtable_factory(MemtableFactory::Vector);
    // A vector memtable takes no concurrent inserts; all writes come from one thread anyway.
    options.set_allow_concurrent_memtable_write(false);
    options.set_write_buffer_size(16 << 20);
}
