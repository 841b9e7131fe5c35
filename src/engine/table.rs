//! The task table: every live task, indexed by its id.
//!
//! Ids are issued sequentially and never reused, so the table is a deque of
//! fixed-size chunks addressed by `id >> CHUNK_BITS`: lookups are two index
//! operations, with no hashing and no per-task allocation. A chunk leaves the
//! table as soon as all of its ids have been issued and none of its tasks is
//! live, so a long-lived task pins at most one chunk, never the tasks issued
//! after it. Its storage ([`Slots`], pages of its own) is then kept as a spare
//! or given back to the system in batches.

use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};

use super::pages;

/// 4,096 slots per chunk (128 KiB of 32-byte records). Chunks of 1,024
/// (until session 16) made W1 1M map and unmap four times as many, and
/// polls gave a 2 MiB batch back in 15-25 `munmap` calls (the chunks are
/// seldom neighbours): see docs/PERFORMANCE.md.
const CHUNK_BITS: u32 = 12;
const CHUNK_LEN: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: u64 = (CHUNK_LEN as u64) - 1;

/// Emptied chunks kept for reuse (beyond these, an emptied chunk's storage
/// is given back): two, so that a table that grows by one chunk while it
/// empties another (a steady flow of tasks) never maps or unmaps memory.
const MAX_SPARES: usize = 2;

/// Emptied chunks beyond the spares are given back in batches of this many
/// (2 MiB; one `munmap` for neighbouring ones, after the caller's lock; see
/// [`Table::take_released`]).
const RELEASE_BATCH: usize = 16;

/// A stop that empties at least this many chunks gives them back (2 MiB);
/// fewer are kept for reuse (see `Manager::run_after`).
pub(crate) const GIVE_BACK_CHUNKS: usize = RELEASE_BATCH;

struct Chunk<T> {
    slots: Slots<T>,
    live: u32,
    /// The first slot that received an entry (those below it never held
    /// one in this chunk's current use).
    lo: u32,
}

/// A chunk taken out of the table by [`Table::take_all`], with the range
/// of its slots that may hold entries (a whole-table stop of a thousand
/// tasks need not walk the 4,096 slots of their chunk).
pub(crate) struct TakenChunk<T> {
    pub(crate) slots: Slots<T>,
    used: std::ops::Range<usize>,
}

/// The storage of one chunk: `CHUNK_LEN` slots in pages of their own (on
/// Linux an anonymous mapping, elsewhere the global allocator). Dropping it
/// drops the slots in order and gives the pages back to the system;
/// [`release_all`] does that for many chunks with few system calls.
pub(crate) struct Slots<T> {
    ptr: NonNull<Option<T>>,
}

// SAFETY: `Slots` owns its slots like a `Box<[Option<T>]>` would.
unsafe impl<T: Send> Send for Slots<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for Slots<T> {}

impl<T> Slots<T> {
    const BYTES: usize = CHUNK_LEN * std::mem::size_of::<Option<T>>();

    /// A chunk's worth of `None` slots, written (so its pages are faulted
    /// in by the caller, not by whoever inserts the first entry).
    pub(crate) fn new() -> Self {
        let ptr = pages::map(Self::BYTES, std::mem::align_of::<Option<T>>()).cast::<Option<T>>();
        for i in 0..CHUNK_LEN {
            // SAFETY: `i` is inside the fresh mapping, which is aligned for
            // `Option<T>` and not yet read.
            unsafe { ptr.as_ptr().add(i).write(None) };
        }
        Slots { ptr }
    }

    /// Bytes of memory a chunk's storage takes.
    pub(crate) fn bytes() -> usize {
        Self::BYTES
    }

    /// The slots' storage, for giving it back: `(address, bytes)`.
    fn range(&self) -> (usize, usize) {
        (self.ptr.as_ptr() as usize, Self::BYTES)
    }
}

impl<T> Deref for Slots<T> {
    type Target = [Option<T>];
    fn deref(&self) -> &[Option<T>] {
        // SAFETY: `ptr` holds `CHUNK_LEN` initialised slots owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), CHUNK_LEN) }
    }
}

impl<T> DerefMut for Slots<T> {
    fn deref_mut(&mut self) -> &mut [Option<T>] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), CHUNK_LEN) }
    }
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        // SAFETY: the slots are initialised and dropped once, here; then
        // the storage, which nothing uses any more, is unmapped.
        unsafe {
            ptr::drop_in_place(&mut **self as *mut [Option<T>]);
            pages::unmap(self.range(), std::mem::align_of::<Option<T>>());
        }
    }
}

/// Empties chunks for reuse: drops every chunk's entries in order (in id
/// order when `chunks` is), writing only the slots that may hold one, and
/// returns the chunks, all `None`, for [`Table::keep_emptied`].
pub(crate) fn empty_all<T>(chunks: Vec<TakenChunk<T>>) -> Vec<Slots<T>> {
    chunks
        .into_iter()
        .map(|TakenChunk { mut slots, used }| {
            debug_assert!(
                slots.iter().enumerate().all(|(i, s)| s.is_none() || used.contains(&i)),
                "an entry outside the chunk's used slots"
            );
            for slot in &mut slots[used] {
                *slot = None;
            }
            slots
        })
        .collect()
}

/// Drops many chunks: every chunk's slots in order (so entries are dropped
/// in id order when `chunks` is), then gives all their storage back,
/// neighbouring mappings in one system call.
///
/// No heap block of btm's is freed once the first entry is dropped (see
/// `pages`): the chunks' addresses move to a [`pages::MappedVec`] and
/// `chunks`' buffer is freed before the entries' drops run host free
/// functions.
pub(crate) fn release_all<T>(chunks: Vec<Slots<T>>) {
    let mut addrs = pages::MappedVec::with_capacity(chunks.len());
    for chunk in chunks {
        // `ManuallyDrop`: the slots are dropped and the storage unmapped
        // below, through the address.
        let pushed = addrs.push(std::mem::ManuallyDrop::new(chunk).range().0);
        debug_assert!(pushed.is_ok(), "room for every chunk");
    }
    for &addr in addrs.as_slice() {
        // SAFETY: `addr` is a chunk's storage of `CHUNK_LEN` initialised
        // slots, taken out of its `Slots` above; they are dropped once, here.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(addr as *mut Option<T>, CHUNK_LEN)) };
    }
    // SAFETY: every address is a chunk's storage, `Slots::<T>::BYTES` long,
    // whose slots were dropped above and that nothing references any more.
    unsafe { pages::unmap_all(addrs.as_mut_slice(), Slots::<T>::BYTES, std::mem::align_of::<Option<T>>()) };
}

/// Gives back the storage of chunks whose slots are all `None` (emptied:
/// nothing to drop), neighbouring mappings in one system call, without
/// reading their slots.
pub(crate) fn release_empty<T>(chunks: Vec<Slots<T>>) {
    debug_assert!(chunks.iter().all(|c| c.iter().all(Option::is_none)));
    let mut addrs: Vec<usize> = chunks.into_iter().map(|c| std::mem::ManuallyDrop::new(c).range().0).collect();
    // SAFETY: every address is a chunk's storage, `Slots::<T>::BYTES` long,
    // taken out of its `Slots` above; its slots are all `None` (no drop to
    // run) and nothing references it any more.
    unsafe { pages::unmap_all(&mut addrs, Slots::<T>::BYTES, std::mem::align_of::<Option<T>>()) };
}

/// A map from task id to `T` for sequentially issued ids.
pub(crate) struct Table<T> {
    /// Chunk index of `chunks[0]`.
    first: u64,
    /// Chunk `first + i` at index `i`. A vector rather than a deque: the
    /// front is removed once per chunk (moving the few entries behind it),
    /// and every lookup is then one subtraction and one bounds check, with
    /// no wrap-around of a ring's index.
    chunks: Vec<Option<Chunk<T>>>,
    /// One past the highest id inserted so far (ids below it are "issued").
    issued_end: u64,
    live: usize,
    /// Empty slots for the next chunks (at most [`MAX_SPARES`]): chunks
    /// emptied, or one made by an idle worker (see [`Table::needs_spare`]),
    /// so that the thread adding tasks does not map and fault in a chunk
    /// under the lock.
    spares: Vec<Slots<T>>,
    /// A thread is making the spare (see [`Table::making_spare`]).
    spare_coming: bool,
    /// While a stop runs, the storage of the chunks it empties (beyond the
    /// spares) is kept here for the stop to release after its lock (see
    /// [`Table::collect_freed`]).
    freed: Option<Vec<Slots<T>>>,
    /// Emptied chunks beyond the spares, waiting to be given back.
    released: Vec<Slots<T>>,
}

impl<T> Table<T> {
    pub(crate) fn new() -> Self {
        Table {
            first: 0,
            chunks: Vec::new(),
            issued_end: 0,
            live: 0,
            spares: Vec::new(),
            spare_coming: false,
            freed: None,
            released: Vec::new(),
        }
    }

    /// A chunk's worth of empty slots (mapped and written: faulted in).
    pub(crate) fn new_slots() -> Slots<T> {
        Slots::new()
    }

    /// True when the next chunk would have to be allocated by the inserting
    /// thread: a thread with nothing better to do may make one with
    /// [`Table::new_slots`] (outside the lock) and hand it over with
    /// [`Table::give_spare`].
    pub(crate) fn needs_spare(&self) -> bool {
        self.spares.is_empty() && !self.spare_coming
    }

    /// Records that the caller will make the spare and hand it over with
    /// [`Table::give_spare`], so that other threads do not make one too.
    pub(crate) fn making_spare(&mut self) {
        self.spare_coming = true;
    }

    /// Keeps `slots` (all `None`) as storage for a next chunk, or gives
    /// them back if [`MAX_SPARES`] are already kept (emptied chunks came in
    /// meanwhile), for the caller to drop after its lock (dropping unmaps).
    #[must_use]
    pub(crate) fn give_spare(&mut self, slots: Slots<T>) -> Option<Slots<T>> {
        debug_assert!(slots.iter().all(Option::is_none));
        self.spare_coming = false;
        if self.spares.len() < MAX_SPARES {
            self.spares.push(slots);
            None
        } else {
            Some(slots)
        }
    }

    fn locate(&self, id: u64) -> Option<(usize, usize)> {
        let chunk = id >> CHUNK_BITS;
        // Below `first` wraps to an index past the end, which the caller's
        // bounds check turns away with the others (as does an index past
        // `usize`, on a 32-bit target; on 64 bits the conversion is free).
        let index = usize::try_from(chunk.wrapping_sub(self.first)).unwrap_or(usize::MAX);
        Some((index, (id & CHUNK_MASK) as usize))
    }

    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        let (c, s) = self.locate(id)?;
        self.chunks.get(c)?.as_ref()?.slots[s].as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let (c, s) = self.locate(id)?;
        self.chunks.get_mut(c)?.as_mut()?.slots[s].as_mut()
    }

    /// Inserts the entry for a new id. Ids must be inserted in increasing
    /// order (gaps are allowed).
    #[inline(always)]
    pub(crate) fn insert(&mut self, id: u64, value: T) {
        debug_assert!(id >= self.issued_end, "ids must be inserted in increasing order");
        // Common case: the id falls in the last chunk, which exists.
        let last_chunk = (self.first + self.chunks.len() as u64).wrapping_sub(1);
        if id >> CHUNK_BITS == last_chunk {
            if let Some(Some(last)) = self.chunks.last_mut() {
                // The slot of an id not issued before is `None`: no drop
                // glue for the value replaced.
                let old = last.slots[(id & CHUNK_MASK) as usize].replace(value);
                debug_assert!(old.is_none());
                std::mem::forget(old);
                last.live += 1;
                self.live += 1;
                self.issued_end = id + 1;
                return;
            }
        }
        self.insert_slow(id, value);
    }

    /// Inserts the entries for the `n` new ids `first .. first + n`, the
    /// entry of id `first + i` being `value(i)`: as `n` calls of
    /// [`Table::insert`], each chunk looked up once.
    #[inline(always)]
    pub(crate) fn insert_run(&mut self, first: u64, n: u64, mut value: impl FnMut(u64) -> T) {
        debug_assert!(first >= self.issued_end, "ids must be inserted in increasing order");
        let end = first + n;
        let mut id = first;
        while id < end {
            let last_chunk = (self.first + self.chunks.len() as u64).wrapping_sub(1);
            if id >> CHUNK_BITS == last_chunk {
                if let Some(Some(last)) = self.chunks.last_mut() {
                    // The ids of this chunk: up to its end or the run's.
                    let stop = end.min((last_chunk + 1) << CHUNK_BITS);
                    for j in id..stop {
                        // As in `insert`: the slot of an id not issued
                        // before is `None`.
                        let old = last.slots[(j & CHUNK_MASK) as usize].replace(value(j - first));
                        debug_assert!(old.is_none());
                        std::mem::forget(old);
                    }
                    // At most a chunk's length: fits.
                    last.live += (stop - id) as u32;
                    self.live += (stop - id) as usize;
                    self.issued_end = stop;
                    id = stop;
                    continue;
                }
            }
            self.insert_slow(id, value(id - first));
            id += 1;
        }
    }

    #[inline(never)]
    fn insert_slow(&mut self, id: u64, value: T) {
        if self.chunks.is_empty() {
            self.first = id >> CHUNK_BITS;
        }
        let chunk = id >> CHUNK_BITS;
        while self.first + (self.chunks.len() as u64) <= chunk {
            self.chunks.push(None);
        }
        let c = (chunk - self.first) as usize;
        let spares = &mut self.spares;
        let entry = self.chunks[c].get_or_insert_with(|| Chunk {
            slots: spares.pop().unwrap_or_else(Slots::new),
            live: 0,
            lo: (id & CHUNK_MASK) as u32,
        });
        entry.slots[(id & CHUNK_MASK) as usize] = Some(value);
        entry.live += 1;
        self.live += 1;
        self.issued_end = id + 1;
    }

    /// Removes and returns the entry for `id`, freeing its chunk when the
    /// chunk has no live entry left and can receive no new one.
    #[inline(always)]
    pub(crate) fn remove(&mut self, id: u64) -> Option<T> {
        self.remove_if(id, |_| true)
    }

    /// Removes and returns the entry for `id` if `pred` accepts it (one
    /// lookup instead of a `get` followed by a `remove`).
    #[inline(always)]
    pub(crate) fn remove_if(&mut self, id: u64, pred: impl FnOnce(&T) -> bool) -> Option<T> {
        let (c, s) = self.locate(id)?;
        let chunk = self.chunks.get_mut(c)?.as_mut()?;
        let slot = &mut chunk.slots[s];
        if !pred(slot.as_ref()?) {
            return None;
        }
        let value = slot.take()?;
        chunk.live -= 1;
        self.live -= 1;
        if chunk.live == 0 {
            self.chunk_emptied(c);
        }
        Some(value)
    }

    /// Removes the entry for `id` if `take` accepts it, returning what
    /// `take` read from it. The entry is forgotten, not dropped: `take`
    /// accepts only entries that own nothing, or whose owned parts the
    /// caller takes over through what `take` returns (no drop glue runs,
    /// and the entry is not moved out). (Written out beside `remove_if`
    /// rather than sharing a helper with it: the shared form, tried in
    /// session 13, cost the chain polls 11-13 instructions per event in
    /// `bench/paths.sh`.)
    #[inline(always)]
    pub(crate) fn remove_forgetting<R>(&mut self, id: u64, take: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        let (c, s) = self.locate(id)?;
        let chunk = self.chunks.get_mut(c)?.as_mut()?;
        let slot = &mut chunk.slots[s];
        let r = take(slot.as_ref()?)?;
        std::mem::forget(slot.take());
        chunk.live -= 1;
        self.live -= 1;
        if chunk.live == 0 {
            self.chunk_emptied(c);
        }
        Some(r)
    }

    /// Chunk `c` has no live entry left: frees it if it can receive no new
    /// one (out of line: once per chunk).
    #[inline(never)]
    fn chunk_emptied(&mut self, c: usize) {
        let chunk_end = (self.first + c as u64 + 1) << CHUNK_BITS;
        if chunk_end <= self.issued_end {
            if let Some(done) = self.chunks[c].take() {
                // Every slot is `None` again: keep it for a next chunk,
                // or for the stop that emptied it, or to be given back.
                debug_assert!(done.slots.iter().all(Option::is_none));
                if self.spares.len() < MAX_SPARES {
                    self.spares.push(done.slots);
                } else if let Some(freed) = &mut self.freed {
                    freed.push(done.slots);
                } else {
                    self.released.push(done.slots);
                }
            }
            let gone = self.chunks.iter().take_while(|c| c.is_none()).count();
            if gone > 0 {
                self.chunks.drain(..gone);
                self.first += gone as u64;
            }
        }
    }

    /// From now until [`Table::take_freed`], the storage of emptied chunks
    /// (beyond the spares) is kept for the caller instead of joining the
    /// release batch.
    pub(crate) fn collect_freed(&mut self) {
        self.freed.get_or_insert_with(Vec::new);
    }

    /// The storage kept since [`Table::collect_freed`] (every slot `None`);
    /// emptied chunks join the release batch again from now on.
    pub(crate) fn take_freed(&mut self) -> Vec<Slots<T>> {
        self.freed.take().unwrap_or_default()
    }

    /// Keeps emptied chunks (from [`empty_all`]) as spares, and the rest to
    /// be given back with the next batch (see [`Table::take_released`]).
    pub(crate) fn keep_emptied(&mut self, chunks: Vec<Slots<T>>) {
        for chunk in chunks {
            debug_assert!(chunk.iter().all(Option::is_none));
            if self.spares.len() < MAX_SPARES {
                self.spares.push(chunk);
            } else {
                self.released.push(chunk);
            }
        }
    }

    /// Emptied chunks to give back (with [`release_all`], after the lock):
    /// a full batch, or whatever is left once the table is empty.
    #[inline]
    pub(crate) fn take_released(&mut self) -> Option<Vec<Slots<T>>> {
        if self.released.len() >= RELEASE_BATCH || (self.live == 0 && !self.released.is_empty()) {
            Some(std::mem::take(&mut self.released))
        } else {
            None
        }
    }

    /// Chunks whose storage the table holds: in use, spare, emptied by a
    /// running stop, or waiting to be given back.
    pub(crate) fn chunks_held(&self) -> usize {
        self.chunks.iter().flatten().count()
            + self.spares.len()
            + self.freed.as_ref().map_or(0, Vec::len)
            + self.released.len()
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// True if `pred` accepts every live entry.
    pub(crate) fn all(&self, mut pred: impl FnMut(&T) -> bool) -> bool {
        self.chunks.iter().flatten().all(|c| c.slots.iter().flatten().all(&mut pred))
    }

    /// Removes every live entry at once and returns their storage: dropping
    /// it drops the entries in ascending id order. Ids stay issued.
    pub(crate) fn take_all(&mut self) -> Vec<TakenChunk<T>> {
        let (first, issued_end) = (self.first, self.issued_end);
        let taken = self
            .chunks
            .drain(..)
            .enumerate()
            .filter_map(|(c, chunk)| {
                let chunk = chunk?;
                let base = (first + c as u64) << CHUNK_BITS;
                let hi = issued_end.saturating_sub(base).min(CHUNK_LEN as u64) as usize;
                Some(TakenChunk { slots: chunk.slots, used: (chunk.lo as usize).min(hi)..hi })
            })
            .collect();
        self.live = 0;
        // The next insert (a higher id) starts a fresh chunk deque.
        taken
    }

    /// Ids of every live entry, in ascending order.
    pub(crate) fn ids(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.live);
        for (c, chunk) in self.chunks.iter().enumerate() {
            if let Some(chunk) = chunk {
                let base = (self.first + c as u64) << CHUNK_BITS;
                for (s, slot) in chunk.slots.iter().enumerate() {
                    if slot.is_some() {
                        out.push(base + s as u64);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// An entry that logs its id when it is dropped.
    struct Logged(u64, Rc<RefCell<Vec<u64>>>);

    impl Drop for Logged {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }

    #[test]
    fn insert_get_remove_and_chunk_release() {
        let mut t = Table::new();
        for id in 1..=5000u64 {
            t.insert(id, id * 2);
        }
        assert_eq!(t.live, 5000);
        assert_eq!(t.get(1234), Some(&2468));
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(5001), None);
        // Keep one old entry alive; everything else goes.
        for id in 2..=5000u64 {
            assert_eq!(t.remove(id), Some(id * 2));
        }
        assert_eq!(t.remove(2), None);
        assert_eq!(t.live, 1);
        assert_eq!(t.ids(), vec![1]);
        // Only the chunk holding id 1 and the still-open last chunk remain.
        assert_eq!(t.chunks.iter().filter(|c| c.is_some()).count(), 2);
        t.insert(9000, 1);
        assert_eq!(t.get(9000), Some(&1));
        assert_eq!(t.remove(1), Some(2));
        assert_eq!(t.ids(), vec![9000]);
    }

    #[test]
    fn a_freed_chunk_or_a_given_one_becomes_the_next_chunk() {
        let mut t = Table::new();
        assert!(t.needs_spare());
        let given = Table::<u64>::new_slots();
        let given_ptr = given.as_ptr();
        assert!(t.give_spare(given).is_none(), "kept");
        assert!(!t.needs_spare());
        t.insert(1, 10u64); // first chunk: takes the spare
        assert!(t.needs_spare());
        assert_eq!(t.chunks.last().unwrap().as_ref().unwrap().slots.as_ptr(), given_ptr);
        // Fill and empty the first chunk: its storage becomes the spare.
        for id in 2..CHUNK_LEN as u64 {
            t.insert(id, id);
        }
        t.insert(CHUNK_LEN as u64, 0); // second chunk (allocated: no spare)
        for id in 1..CHUNK_LEN as u64 {
            t.remove(id);
        }
        assert!(!t.needs_spare(), "the emptied chunk is kept as a spare");
        // A second spare is kept, a third is not.
        let second = Table::<u64>::new_slots();
        let second_ptr = second.as_ptr();
        assert!(t.give_spare(second).is_none(), "kept");
        let third = Table::<u64>::new_slots();
        let third_ptr = third.as_ptr();
        let back = t.give_spare(third).expect("a third spare is given back");
        assert_eq!(back.as_ptr(), third_ptr);
        drop(back);
        assert_eq!(t.spares.len(), MAX_SPARES);
        t.insert(2 * CHUNK_LEN as u64, 5); // third chunk: the last spare kept
        assert_eq!(t.chunks.last().unwrap().as_ref().unwrap().slots.as_ptr(), second_ptr);
        t.insert(3 * CHUNK_LEN as u64, 6); // fourth chunk: the recycled storage
        assert_eq!(t.chunks.last().unwrap().as_ref().unwrap().slots.as_ptr(), given_ptr);
        assert_eq!(t.get(3 * CHUNK_LEN as u64), Some(&6));
        assert_eq!(t.get(3 * CHUNK_LEN as u64 + 2), None, "recycled slots start empty");
        assert_eq!(t.get(2 * CHUNK_LEN as u64 + 1), None, "given slots start empty");
    }

    #[test]
    fn emptied_chunks_beyond_the_spares_are_released_in_batches_and_at_empty() {
        let mut t = Table::new();
        let n = (MAX_SPARES + RELEASE_BATCH + 10) as u64 * CHUNK_LEN as u64;
        for id in 0..n {
            t.insert(id, id);
        }
        t.insert(n, n); // keeps the table non-empty until the end
        let mut batches = Vec::new();
        for id in 0..n {
            assert_eq!(t.remove(id), Some(id));
            if let Some(b) = t.take_released() {
                batches.push(b.len());
                release_all(b);
            }
        }
        assert_eq!(batches, vec![RELEASE_BATCH], "one full batch while the table is in use");
        assert_eq!(t.spares.len(), MAX_SPARES);
        assert_eq!(t.released.len(), 10);
        assert_eq!(t.remove(n), Some(n));
        let rest = t.take_released().expect("the rest goes once the table is empty");
        assert_eq!(rest.len(), 10);
        release_all(rest);
        assert!(t.take_released().is_none());
    }

    #[test]
    fn release_all_drops_every_entry_once_in_chunk_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut t = Table::new();
        let n = 5 * CHUNK_LEN as u64 + 7;
        for id in 0..n {
            t.insert(id, Logged(id, log.clone()));
        }
        release_all(t.take_all().into_iter().map(|t| t.slots).collect());
        assert_eq!(*log.borrow(), (0..n).collect::<Vec<_>>());
        assert_eq!(Rc::strong_count(&log), 1);
    }

    #[test]
    fn a_small_whole_table_release_drops_every_entry_and_walks_only_the_used_slots() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut t = Table::new();
        // Ids in the middle of two chunks: the first from slot 904 on, the
        // second up to slot 999.
        let (lo, hi) = (CHUNK_LEN as u64 + 904, 2 * CHUNK_LEN as u64 + 1000);
        for id in lo..hi {
            t.insert(id, Logged(id, log.clone()));
        }
        assert!(t.remove(lo + 1).is_some());
        let taken = t.take_all();
        let used: Vec<_> = taken.iter().map(|c| c.used.clone()).collect();
        assert_eq!(used, vec![904..CHUNK_LEN, 0..1000]);
        let emptied = empty_all(taken);
        let mut want: Vec<u64> = (lo..hi).collect();
        want.swap(0, 1); // `lo + 1` was removed (dropped) first
        assert_eq!(*log.borrow(), want, "every entry dropped once, in id order");
        assert!(emptied.iter().all(|c| c.iter().all(Option::is_none)));
        release_all(emptied);
        assert_eq!(Rc::strong_count(&log), 1);
    }

    #[test]
    fn random_inserts_removals_and_whole_table_releases_leave_no_entry_behind() {
        // (A reviewer's probe.) Ids with gaps of up to two chunks, random
        // removals, first chunks past index 0, and the taken chunks reused.
        use std::collections::BTreeSet;
        fn rng(s: &mut u64) -> u64 {
            *s ^= *s << 13;
            *s ^= *s >> 7;
            *s ^= *s << 17;
            *s
        }
        for seed in 1..40u64 {
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let log = Rc::new(RefCell::new(Vec::new()));
            let mut t: Table<Logged> = Table::new();
            let mut next = rng(&mut s) % (3 * CHUNK_LEN as u64);
            let mut live = BTreeSet::new();
            for _ in 0..12 {
                for _ in 0..rng(&mut s) % 3000 {
                    next += match rng(&mut s) % 10 {
                        0 => rng(&mut s) % (2 * CHUNK_LEN as u64),
                        1..=3 => rng(&mut s) % 8,
                        _ => 0,
                    };
                    t.insert(next, Logged(next, log.clone()));
                    live.insert(next);
                    next += 1;
                }
                for id in live.clone() {
                    if rng(&mut s) % 3 == 0 {
                        assert!(t.remove(id).is_some());
                        live.remove(&id);
                    }
                }
                assert_eq!(t.ids(), live.iter().copied().collect::<Vec<_>>());
                if rng(&mut s) % 2 == 0 {
                    log.borrow_mut().clear();
                    let taken = t.take_all();
                    for c in &taken {
                        for (i, slot) in c.slots.iter().enumerate() {
                            assert!(
                                slot.is_none() || c.used.contains(&i),
                                "seed {seed}: slot {i} outside {:?}",
                                c.used
                            );
                        }
                    }
                    let emptied = empty_all(taken);
                    assert!(emptied.iter().all(|c| c.iter().all(Option::is_none)), "seed {seed}");
                    assert_eq!(
                        *log.borrow(),
                        live.iter().copied().collect::<Vec<_>>(),
                        "seed {seed}: dropped in id order"
                    );
                    live.clear();
                    t.keep_emptied(emptied);
                    if let Some(b) = t.take_released() {
                        release_all(b);
                    }
                }
            }
            assert!(t.spares.iter().all(|c| c.iter().all(Option::is_none)));
            drop(t);
            assert_eq!(Rc::strong_count(&log), 1, "seed {seed}: every entry dropped");
        }
    }

    #[test]
    fn chunks_emptied_after_a_small_release_are_reused_empty() {
        let mut t = Table::new();
        for id in 0..3 * CHUNK_LEN as u64 {
            t.insert(id, id);
        }
        let taken = t.take_all();
        let ptrs: Vec<_> = taken.iter().map(|c| c.slots.as_ptr()).collect();
        t.keep_emptied(empty_all(taken));
        assert_eq!(t.spares.len(), MAX_SPARES);
        assert_eq!(t.released.len(), 3 - MAX_SPARES);
        let next = 4 * CHUNK_LEN as u64;
        t.insert(next, 1);
        let reused = t.chunks.last().unwrap().as_ref().unwrap().slots.as_ptr();
        assert!(ptrs.contains(&reused), "a kept chunk is reused");
        assert!((next + 1..next + CHUNK_LEN as u64).all(|id| t.get(id).is_none()), "and starts empty");
        assert_eq!(t.remove(next), Some(1));
        let rest = t.take_released().expect("given back once the table is empty");
        assert_eq!(rest.len(), 1);
        release_all(rest);
    }
}
