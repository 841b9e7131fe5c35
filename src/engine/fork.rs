//! Tells a manager inherited by a child process made by `fork()` from the
//! manager of the process that created it.
//!
//! A child of `fork()` has a copy of the parent's memory and only the
//! thread that called `fork()`: the manager's workers are gone, and its
//! lock may be held forever by one of them (copied while they held it).
//! Using such a copy would lose every task added in the child (nothing
//! runs it) or hang. So each manager keeps a word in a page of its own
//! that the kernel zeroes in a child (`MADV_WIPEONFORK`, Linux 4.14 and
//! later): the C boundary checks it before anything else (a load and a
//! test, no system call, no lock) and refuses the call with
//! `BTM_STATUS_FORKED`.
//!
//! Where the system cannot wipe a page on fork (another OS, an older
//! kernel, a sandbox refusing the advice), the word lives in a static that
//! is never zeroed and a copy is not detected (the header says so).

use std::sync::atomic::{AtomicU32, Ordering};

/// The word of a manager whose system cannot wipe pages on fork: always 1.
static NEVER_WIPED: AtomicU32 = AtomicU32::new(1);

/// A manager's fork word: 1 in the process that made it, 0 in a child
/// made by `fork()` after that (where the system supports it).
pub(crate) struct ForkGuard {
    word: *const AtomicU32,
}

// SAFETY: the pointer is to an atomic that lives as long as the guard (a
// mapping the guard owns, or a static), so sharing it is sharing an
// `&AtomicU32`.
unsafe impl Send for ForkGuard {}
// SAFETY: as above.
unsafe impl Sync for ForkGuard {}

impl ForkGuard {
    pub(crate) fn new() -> ForkGuard {
        ForkGuard { word: wiped_on_fork().unwrap_or(&NEVER_WIPED) }
    }

    /// True in a child process made by `fork()` after this manager was
    /// made (never where the system cannot tell: see the module docs).
    #[inline(always)]
    pub(crate) fn inherited(&self) -> bool {
        // SAFETY: the word lives as long as `self` (see the type).
        unsafe { &*self.word }.load(Ordering::Relaxed) == 0
    }

    /// Whether the system wipes this guard's word on fork.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn detects_fork(&self) -> bool {
        !std::ptr::eq(self.word, &NEVER_WIPED)
    }
}

impl Drop for ForkGuard {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if self.detects_fork() {
            // SAFETY: the page was mapped by `wiped_on_fork` for this guard
            // alone, and nothing reads it after the guard is dropped.
            unsafe { libc::munmap(self.word as *mut libc::c_void, super::pages::page_size()) };
        }
    }
}

/// A word set to 1 in a page of its own that a child of `fork()` sees
/// zeroed, or None if the system refuses.
#[cfg(target_os = "linux")]
fn wiped_on_fork() -> Option<*const AtomicU32> {
    let len = super::pages::page_size();
    // SAFETY: an anonymous private mapping has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p.is_null() {
        return None;
    }
    // SAFETY: `p` is the page just mapped.
    if unsafe { libc::madvise(p, len, libc::MADV_WIPEONFORK) } != 0 {
        // SAFETY: as above; nothing else refers to it.
        unsafe { libc::munmap(p, len) };
        return None;
    }
    let word = p as *const AtomicU32;
    // SAFETY: the page is mapped, writable, page-aligned and ours.
    unsafe { &*word }.store(1, Ordering::Relaxed);
    Some(word)
}

#[cfg(not(target_os = "linux"))]
fn wiped_on_fork() -> Option<*const AtomicU32> {
    None
}
