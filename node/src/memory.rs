//! How the node's heap behaves under transcoding. A transcode allocates frame-sized buffers
//! (megabytes each) from a dozen encoder and decoder threads; with glibc's defaults the
//! heap then grows with the length of the input and stays up after the job.

/// Largest allocation served from the heap arenas; larger ones get their own mapping.
const MMAP_THRESHOLD: i32 = 1024 * 1024;
/// Heap arenas shared by all threads.
const ARENA_MAX: i32 = 2;

/// Sets the allocator up for transcoding; call before any thread starts. glibc raises its
/// mmap threshold (up to 32 MiB) each time a mapped block is freed, after which frame
/// buffers come from the arenas, and it makes up to eight arenas per core: freed frames
/// then fragment many arenas and the peak creeps up the longer a job runs. A fixed
/// threshold maps every frame buffer and unmaps it when freed; two arenas keep what small
/// allocations fragment in two places.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists, and touches no allocation.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Returns freed heap memory to the system, so the node does not stay at a job's peak.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator; it touches no live
    // allocation.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
