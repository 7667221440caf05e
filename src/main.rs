//! The `sluice` binary.

fn main() {
    tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(runtime.block_on(sluice_server::cli::main(cluster_support())));
}

/// Ballista behind the cluster flags and commands, in the `cluster` build.
#[cfg(feature = "cluster")]
fn cluster_support() -> Option<&'static dyn sluice_engine::jobs::cluster::ClusterSupport> {
    Some(&sluice_cluster::Support)
}

/// Without the `cluster` feature the cluster flags and commands say so.
#[cfg(not(feature = "cluster"))]
fn cluster_support() -> Option<&'static dyn sluice_engine::jobs::cluster::ClusterSupport> {
    None
}

/// Keeps glibc's heap from growing with the tables loaded. glibc raises its
/// mmap threshold each time an mmapped block is freed (up to 32 MiB); after
/// that the multi-megabyte Arrow and Parquet buffers of a run come from the
/// heap arenas, which keep the memory once it is freed. A fixed threshold
/// keeps such buffers in their own mappings, returned to the system when
/// freed (docs/performance.md has the measurements). Must run before any
/// thread starts; `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        const THRESHOLD: libc::c_int = 256 * 1024;
        // SAFETY: mallopt only changes an allocator setting; called before
        // any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        }
    }
}
