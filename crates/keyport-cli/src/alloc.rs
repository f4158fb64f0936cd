//! The agent's allocator, mimalloc, told when the helper is under load.
//!
//! An idle agent should give freed memory back to the OS at once (`MIMALLOC_PURGE_DELAY=0`,
//! set by `agent_cmd::tune_allocators`: with mimalloc's default 10 ms delay an agent that
//! goes idle after start-up keeps 20 MB instead of 15, because a delayed purge only runs
//! when the thread allocates again). Under proxied load that purges pages as they empty, a
//! page fault every few requests (about 1.1 µs per request). So while the helper has a
//! connection open the delay is mimalloc's default, and when its last one closes it is 0
//! again and that thread collects.
//!
//! Left out: the other serving threads' pending purges run when they next allocate.

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (libmimalloc-sys has no constant).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The helper got its first open connection (`true`) or lost its last (`false`).
#[allow(unsafe_code)]
pub fn helper_load(busy: bool) {
    // SAFETY: both have no preconditions. mimalloc reads its options on every use and
    // documents setting them at run time; `mi_collect` only releases memory mimalloc owns
    // that no live allocation refers to, on any thread at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, if busy { 10 } else { 0 });
        if !busy {
            libmimalloc_sys::mi_collect(true);
        }
    }
}
