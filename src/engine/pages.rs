//! Giving btm's own memory back to the system after a large release.
//!
//! A stop of a million queued tasks frees tens of megabytes of task-table
//! chunks and host-pointer blocks. The allocator would keep that memory for
//! reuse; btm returns it (`madvise(MADV_DONTNEED)` on the whole pages inside
//! each buffer, before the buffer is freed), so only the memory btm releases
//! is touched. A process-wide `malloc_trim` would also consolidate every
//! small block the host's free functions just freed, which costs more than
//! the stop itself and is the host allocator's business, not btm's.
//!
//! The pages are returned on the releasing thread, buffer by buffer. A
//! helper thread returning them while the releasing thread runs the free
//! functions was tried: the stop of a million tasks took twice as long
//! (median 50 vs 29 ms; likely because each `madvise` makes the kernel flush
//! the TLB of the CPU running the free functions).

use std::mem::{self, MaybeUninit};
use std::ptr;

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
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as usize } else { 4096 };
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
