//! Giving memory the process freed back to the system.

use std::time::Duration;

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

/// How often [`release_freed_periodically`] looks at the heap.
pub const RELEASE_EVERY: Duration = Duration::from_secs(10);

/// Free heap bytes below which a look does not trim.
const WORTH_RELEASING: u64 = 4 << 20;

/// What the allocator holds: bytes in use and bytes freed but kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heap {
    used: u64,
    free: u64,
}

impl Heap {
    /// The allocator's figures now (`None` where the allocator does not
    /// keep freed memory: nothing to release there).
    fn now() -> Option<Heap> {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallinfo2 only reads the allocator's statistics.
            let info = unsafe { libc::mallinfo2() };
            Some(Heap {
                used: info.uordblks as u64,
                free: info.fordblks as u64,
            })
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        None
    }
}

/// Whether the heap, as it is `now` and as it was at the last look, is
/// worth trimming: it holds several MB freed, and something allocated or
/// freed since (an idle heap that was trimmed stays as it is, and is not
/// trimmed again).
fn worth_releasing(last: Option<Heap>, now: Heap) -> bool {
    now.free >= WORTH_RELEASING && last != Some(now)
}

/// Every `every`, gives back what the heap freed since the last look, if it
/// is worth it. Work that ends without a run's end (a system table listing
/// 10,000 jobs, a scheduler pass that read them all, a burst of statements)
/// would otherwise leave its freed memory resident for ever: after five
/// `SELECT * FROM sluice.jobs` of 10,000 jobs the idle server held 99 MB of
/// heap, 37 MB once trimmed.
pub async fn release_freed_periodically(every: Duration) {
    let mut last = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(now) = Heap::now() else { return };
        tracing::debug!(used_mb = now.used >> 20, free_mb = now.free >> 20, "heap");
        if worth_releasing(last, now) {
            // Off the runtime's threads: trimming a large heap takes a moment.
            let _ = tokio::task::spawn_blocking(release_freed).await;
            last = Heap::now();
        } else {
            last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn a_heap_is_trimmed_when_it_changed_and_holds_enough_freed_memory() {
        let heap = |used, free| Heap { used, free };
        assert!(worth_releasing(None, heap(10 * MB, 40 * MB)), "the first look");
        assert!(worth_releasing(Some(heap(10 * MB, 8 * MB)), heap(11 * MB, 40 * MB)));
        assert!(
            !worth_releasing(Some(heap(10 * MB, 40 * MB)), heap(10 * MB, 40 * MB)),
            "nothing happened since the last trim"
        );
        assert!(
            !worth_releasing(None, heap(100 * MB, 3 * MB)),
            "too little to give back"
        );
    }

    /// Resident anonymous memory of this process, in bytes.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn resident_heap() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn memory_freed_below_a_live_block_goes_back_to_the_system() {
        // 64 MB in small blocks, then one block on top that stays: glibc
        // cannot shrink its heap past it, so the freed 64 MB stay resident
        // until trimmed.
        let blocks: Vec<Vec<u8>> = (0..16 * 1024).map(|i| vec![i as u8; 4096]).collect();
        let pin = vec![1u8; 4096];
        let before_free = resident_heap();
        drop(blocks);
        let freed = resident_heap();
        release_freed();
        let trimmed = resident_heap();
        assert_eq!(pin[0], 1);
        assert!(
            freed > trimmed + 32 * MB,
            "resident heap: {before_free} with the blocks, {freed} freed, {trimmed} trimmed"
        );
    }
}
