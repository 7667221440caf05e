//! Giving the memory a finished run freed back to the system.

/// Returns the heap's free pages to the system. glibc keeps what a run
/// frees in its arenas, so without this the next run starts higher (in
/// `bench/files.sh 256` the server's RSS before its fourth load was 165 MB
/// without, 148 MB with). Other allocators return memory themselves:
/// nothing to do there.
pub(crate) fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free pages back; glibc makes it
    // thread-safe by locking each arena it trims.
    unsafe {
        libc::malloc_trim(0);
    }
}
