//! Handing a retired session's memory back to the system.
//!
//! ONNX Runtime allocates through the C allocator (glibc's malloc), not through the Rust global
//! allocator. glibc keeps the pages a freed session leaves in its per-thread arenas, so without a
//! trim every version swap left the server a step larger (the soak measured +1.6 MiB, about 3%,
//! at the first swap, then a new plateau).

/// Trims the C allocator's free memory when dropped; a session holds one as its last field.
pub(super) struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release_free_memory();
    }
}

/// Returns the C allocator's free pages (all its arenas) to the system.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}
