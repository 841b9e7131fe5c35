//! Giving btm's own memory back to the system.
//!
//! A stop of a million queued tasks frees tens of megabytes of task-table
//! chunks and host-pointer blocks. btm returns that memory itself, and only
//! its own: a process-wide `malloc_trim` would also consolidate every small
//! block the host's free functions just freed, which costs more than the
//! stop itself and is the host allocator's business, not btm's.
//!
//! - Task-table chunks live in mappings of their own ([`map`]); giving many
//!   back ([`unmap_all`]) merges neighbouring ones into one `munmap`.
//! - Heap buffers (the blocks of host pointers a large stop collects) give
//!   their whole pages back with `madvise(MADV_DONTNEED)` just before they
//!   are freed ([`drop_all_returning_pages`]).
//!
//! Pages are returned on the releasing thread. A helper thread returning
//! them while the releasing thread runs the free functions was tried: the
//! stop of a million tasks took twice as long (median 50 vs 29 ms; likely
//! because each `madvise` makes the kernel flush the TLB of the CPU running
//! the free functions).

use std::mem::{self, MaybeUninit};
use std::ptr::{self, NonNull};

/// Releases with at least this many buffers give their pages back.
pub(crate) const GIVE_BACK_MIN_BUFFERS: usize = 64;

/// Drops the elements of every buffer in order (so host free functions
/// run in id order), giving each buffer's whole pages back to the system
/// before freeing it.
pub(crate) fn drop_all_returning_pages<T>(buffers: Vec<Box<[T]>>) {
    for buffer in buffers {
        let len = mem::size_of_val(&*buffer);
        let raw = Box::into_raw(buffer);
        // SAFETY: `raw` comes from `Box::into_raw` and its elements are
        // dropped once, here; the storage is then freed as uninitialised
        // elements of the same layout, so they are not dropped again.
        unsafe {
            ptr::drop_in_place(raw);
            give_back(raw as *mut u8, len);
            drop(Box::from_raw(raw as *mut [MaybeUninit<T>]));
        }
    }
}

/// Tells the system that the whole pages inside `[start, start + len)` are
/// no longer needed: they stop counting in the resident set, and read as
/// zeros if touched again. The caller owns the range and stores nothing in
/// it that it will read back.
#[cfg(target_os = "linux")]
unsafe fn give_back(start: *mut u8, len: usize) {
    let page = page_size();
    let first = (start as usize).div_ceil(page) * page;
    let end = (start as usize + len) / page * page;
    if end > first {
        // SAFETY: the pages lie inside memory the caller owns; the result is
        // ignored because failing to return memory is not an error.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
    }
}

#[cfg(not(target_os = "linux"))]
unsafe fn give_back(_start: *mut u8, _len: usize) {}

/// Maps `bytes` (rounded up to whole pages) of zeroed, writable memory of
/// its own, aligned to `align` (at most a page). Aborts like a failed
/// allocation if the system refuses.
#[cfg(target_os = "linux")]
pub(crate) fn map(bytes: usize, align: usize) -> NonNull<u8> {
    let len = page_round(bytes);
    // SAFETY: an anonymous private mapping has no preconditions.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    match NonNull::new(p as *mut u8) {
        Some(p) if p.as_ptr() as *mut libc::c_void != libc::MAP_FAILED && align <= page_size() => p,
        _ => std::alloc::handle_alloc_error(layout(bytes, align)),
    }
}

/// Unmaps storage made by [`map`]: `(address, bytes)` as given to it.
///
/// # Safety
/// The range came from `map(bytes, align)` and nothing uses it any more.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn unmap((start, bytes): (usize, usize), _align: usize) {
    // SAFETY: the caller's contract; failure would only leave it mapped.
    unsafe { libc::munmap(start as *mut libc::c_void, page_round(bytes)) };
}

/// [`unmap`] for many ranges (all made with the same `align`): sorted by
/// address, and neighbouring mappings merged into one `munmap` (the kernel
/// places successive mappings next to each other; one call per range costs
/// some 3 us more than the pages themselves).
///
/// # Safety
/// As for [`unmap`], for every range.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn unmap_all(mut ranges: Vec<(usize, usize)>, _align: usize) {
    ranges.sort_unstable();
    let mut run: Option<(usize, usize)> = None;
    for (start, bytes) in ranges {
        let len = page_round(bytes);
        run = match run {
            Some((s, l)) if s + l == start => Some((s, l + len)),
            Some(done) => {
                // SAFETY: the caller's contract, for each merged range.
                unsafe { libc::munmap(done.0 as *mut libc::c_void, done.1) };
                Some((start, len))
            }
            None => Some((start, len)),
        };
    }
    if let Some((s, l)) = run {
        // SAFETY: as above.
        unsafe { libc::munmap(s as *mut libc::c_void, l) };
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize
    } else {
        4096
    }
}

#[cfg(target_os = "linux")]
fn page_round(bytes: usize) -> usize {
    bytes.div_ceil(page_size()) * page_size()
}

fn layout(bytes: usize, align: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(bytes, align).expect("chunk layout")
}

/// Elsewhere: the global allocator.
#[cfg(not(target_os = "linux"))]
pub(crate) fn map(bytes: usize, align: usize) -> NonNull<u8> {
    let l = layout(bytes, align);
    // SAFETY: `bytes` is not zero (a chunk holds at least one slot).
    NonNull::new(unsafe { std::alloc::alloc_zeroed(l) }).unwrap_or_else(|| std::alloc::handle_alloc_error(l))
}

/// # Safety
/// The range came from `map(bytes, align)` and nothing uses it any more.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn unmap((start, bytes): (usize, usize), align: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::alloc::dealloc(start as *mut u8, layout(bytes, align)) };
}

/// # Safety
/// As for [`unmap`], for every range.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn unmap_all(ranges: Vec<(usize, usize)>, align: usize) {
    for r in ranges {
        // SAFETY: the caller's contract.
        unsafe { unmap(r, align) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn elements_are_dropped_once_in_order_and_the_storage_is_freed() {
        let log = Rc::new(std::cell::RefCell::new(Vec::new()));
        struct Noisy(u32, Rc<std::cell::RefCell<Vec<u32>>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.1.borrow_mut().push(self.0);
            }
        }
        let buffers: Vec<Box<[Option<Noisy>]>> =
            (0..100).map(|b| (0..1000).map(|i| Some(Noisy(b * 1000 + i, log.clone()))).collect()).collect();
        drop_all_returning_pages(buffers);
        assert_eq!(*log.borrow(), (0..100_000).collect::<Vec<_>>());
        assert_eq!(Rc::strong_count(&log), 1);
    }
}
