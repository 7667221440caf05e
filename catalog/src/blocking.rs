//! Waits that block a thread (a synced write waiting for the disk, a lock
//! held by another session) must not stall a Tokio worker: every other
//! task on that worker (logins, queries, runs) would wait as long, and on a
//! two-core machine two such waits stall the whole server.

/// Runs `wait` so that, on a worker of a multi-threaded Tokio runtime, the
/// runtime first moves the worker's other tasks to another thread; anywhere
/// else (a current-thread runtime, a plain thread) it just runs it.
pub fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}
