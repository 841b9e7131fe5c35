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
//! - A large stop of a group that shares the table with other tasks
//!   collects its host pointers in one [`MappedVec`], unmapped after their
//!   free functions ran; heap buffers of host pointers beyond it give their
//!   whole pages back with `madvise(MADV_DONTNEED)` just before they are
//!   freed ([`drop_all_returning_pages`]).
//! - No heap block of btm's is freed after a large release has run host
//!   free functions: glibc answers the `free()` of a block that merges into
//!   64 KB or more by consolidating every small block freed before it
//!   (`malloc_consolidate`), the host allocator's own work, which made up a
//!   third of a 100,000-task stop when btm's lists were freed last.
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
    map_with(bytes, align, 0)
}

/// [`map`], with every page present at once (one system call rather than
/// a page fault per page on first use).
#[cfg(target_os = "linux")]
pub(crate) fn map_populated(bytes: usize, align: usize) -> NonNull<u8> {
    map_with(bytes, align, libc::MAP_POPULATE)
}

#[cfg(target_os = "linux")]
fn map_with(bytes: usize, align: usize, flags: libc::c_int) -> NonNull<u8> {
    let len = page_round(bytes);
    // SAFETY: an anonymous private mapping has no preconditions.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    match NonNull::new(p as *mut u8) {
        Some(p) if p.as_ptr() as *mut libc::c_void != libc::MAP_FAILED && align <= page_size() => p,
        _ => std::alloc::handle_alloc_error(layout(bytes, align)),
    }
}

/// Asks the CPU for the cache line of `p` in a state it can write (x86-64
/// `PREFETCHW`, on CPUs that report it), ahead of a store to it; elsewhere
/// nothing.
#[inline(always)]
pub(crate) fn prefetch_write<T>(p: *const T) {
    write_prefetcher()(p);
}

/// [`prefetch_write`] with the CPU's answer read once, for a loop (the
/// answer is an atomic load, which the compiler does not hoist).
#[inline(always)]
pub(crate) fn write_prefetcher<T>() -> impl Fn(*const T) {
    #[cfg(target_arch = "x86_64")]
    let has = has_prefetchw();
    move |p| {
        #[cfg(target_arch = "x86_64")]
        if has {
            // SAFETY: the CPU has PREFETCHW (checked above), which only
            // hints the cache: it accesses no memory, cannot fault, and any
            // address is allowed.
            unsafe {
                std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }
}

/// True if the CPU reports PREFETCHW (CPUID 0x8000_0001, ECX bit 8: every
/// AMD64 processor, Intel's since Broadwell). Read once; a race reads CPUID
/// twice with the same answer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_prefetchw() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static HAS: AtomicU8 = AtomicU8::new(0); // 0: not read yet, 1: no, 2: yes
    match HAS.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: CPUID exists on every x86-64 processor, and so does
            // its leaf 0x8000_0001 (long mode is reported there). (`__cpuid`
            // is a safe function in newer Rust than the minimum supported.)
            #[allow(unused_unsafe)]
            let has = unsafe { (std::arch::x86_64::__cpuid(0x8000_0001).ecx >> 8) & 1 == 1 };
            HAS.store(if has { 2 } else { 1 }, Ordering::Relaxed);
            has
        }
        v => v == 2,
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

/// [`unmap`] for many ranges of `bytes` each (all made with the same
/// `align`), given by their addresses, which it sorts: neighbouring
/// mappings are merged into one `munmap` (the kernel places successive
/// mappings next to each other; one call per range costs some 3 us more
/// than the pages themselves).
///
/// # Safety
/// As for [`unmap`], for every `(address, bytes)`.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn unmap_all(addrs: &mut [usize], bytes: usize, _align: usize) {
    addrs.sort_unstable();
    let len = page_round(bytes);
    let mut run: Option<(usize, usize)> = None;
    for &start in addrs.iter() {
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
pub(crate) fn page_size() -> usize {
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

/// Elsewhere: [`map`] (the global allocator's zeroed memory).
#[cfg(not(target_os = "linux"))]
pub(crate) fn map_populated(bytes: usize, align: usize) -> NonNull<u8> {
    map(bytes, align)
}

/// # Safety
/// The range came from `map(bytes, align)` and nothing uses it any more.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn unmap((start, bytes): (usize, usize), align: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::alloc::dealloc(start as *mut u8, layout(bytes, align)) };
}

/// # Safety
/// As for [`unmap`], for every `(address, bytes)`.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn unmap_all(addrs: &mut [usize], bytes: usize, align: usize) {
    for &a in addrs.iter() {
        // SAFETY: the caller's contract.
        unsafe { unmap((a, bytes), align) };
    }
}

/// A vector of fixed capacity stored in a mapping of its own ([`map`])
/// rather than on the heap: dropping it drops the elements in order and
/// unmaps the storage, so no heap block is freed after the elements' drops
/// ran host free functions (see [`super::table::release_all`]), and its
/// memory goes back to the system in one call.
pub(crate) struct MappedVec<T> {
    ptr: NonNull<T>,
    cap: usize,
    len: usize,
}

impl<T> MappedVec<T> {
    /// Room for `cap` elements (at least one), mapped now.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        let cap = cap.max(1);
        let bytes = cap.checked_mul(mem::size_of::<T>().max(1)).expect("MappedVec capacity");
        MappedVec { ptr: map(bytes, mem::align_of::<T>()).cast(), cap, len: 0 }
    }

    /// Appends `value`, or gives it back when the vector is full.
    #[inline]
    pub(crate) fn push(&mut self, value: T) -> Result<(), T> {
        if self.len == self.cap {
            return Err(value);
        }
        // SAFETY: `len < cap`: inside the mapping, which is aligned for `T`.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
        Ok(())
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` elements are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for MappedVec<T> {
    fn drop(&mut self) {
        // SAFETY: the first `len` elements are initialised and dropped once,
        // here; the mapping was made by `map` with these arguments and
        // nothing references it afterwards.
        unsafe {
            ptr::drop_in_place(self.as_mut_slice() as *mut [T]);
            unmap((self.ptr.as_ptr() as usize, self.cap * mem::size_of::<T>().max(1)), mem::align_of::<T>());
        }
    }
}

// SAFETY: the vector owns its elements like a `Vec<T>` would.
unsafe impl<T: Send> Send for MappedVec<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// The order in which `Noisy` values were dropped.
    type Log = Rc<RefCell<Vec<u32>>>;

    struct Noisy(u32, Log);

    impl Drop for Noisy {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }

    #[test]
    fn elements_are_dropped_once_in_order_and_the_storage_is_freed() {
        let log = Log::default();
        let buffers: Vec<Box<[Option<Noisy>]>> =
            (0..100).map(|b| (0..1000).map(|i| Some(Noisy(b * 1000 + i, log.clone()))).collect()).collect();
        drop_all_returning_pages(buffers);
        assert_eq!(*log.borrow(), (0..100_000).collect::<Vec<_>>());
        assert_eq!(Rc::strong_count(&log), 1);
    }

    #[test]
    fn a_mapped_vec_holds_its_capacity_then_drops_its_elements_once_in_order() {
        let log = Log::default();
        let mut v = MappedVec::with_capacity(5000);
        for i in 0..5000 {
            assert!(v.push(Noisy(i, log.clone())).is_ok());
        }
        // Full: the element comes back to the caller, who drops it.
        let back = v.push(Noisy(5000, log.clone())).expect_err("full");
        assert_eq!(back.0, 5000);
        drop(back);
        assert_eq!(v.as_slice().len(), 5000);
        assert_eq!(v.as_mut_slice()[4999].0, 4999);
        drop(v);
        let want: Vec<u32> = std::iter::once(5000).chain(0..5000).collect();
        assert_eq!(*log.borrow(), want);
        assert_eq!(Rc::strong_count(&log), 1);
    }
}
