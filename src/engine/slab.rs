//! A slab of dependency-link records, addressed by a 32-bit index stored in
//! the task record. Links come and go with every dependent task; taking them
//! from a vector (and a free list) instead of the heap saves a `malloc` and a
//! `free` per dependent task, which were a fifth of a dependency chain's cost.

use std::num::NonZeroU32;

/// Index of a slab entry (stored +1, so that `Option<LinkId>` is 4 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct LinkId(NonZeroU32);

/// Dropping a `T::default()` must do nothing (freed slots hold one, and are
/// overwritten or released without being dropped).
pub(crate) struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T: Default> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab { items: Vec::new(), free: Vec::new() }
    }

    pub(crate) fn insert(&mut self, value: T) -> LinkId {
        let index = match self.free.pop() {
            Some(i) => {
                // The slot holds the `T::default()` left by `remove`, which
                // owns nothing (see the type's contract): skip its drop.
                std::mem::forget(std::mem::replace(&mut self.items[i as usize], value));
                i
            }
            None => {
                self.items.push(value);
                u32::try_from(self.items.len() - 1).expect("fewer than 2^32 linked tasks")
            }
        };
        LinkId(NonZeroU32::new(index + 1).expect("index + 1 is not zero"))
    }

    /// Makes room for `additional` more entries than the free list holds.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if additional > self.free.len() {
            self.items.reserve(additional - self.free.len());
        }
    }

    /// Takes the entry out, leaving a default value, and frees its index.
    /// The memory goes back once every entry is free.
    pub(crate) fn remove(&mut self, id: LinkId) -> T {
        let i = id.0.get() - 1;
        let value = std::mem::take(&mut self.items[i as usize]);
        self.free.push(i);
        if self.free.len() == self.items.len() {
            // Every slot holds a `T::default()`, which owns nothing (the
            // type's contract): give the memory back without dropping them
            // one by one.
            // SAFETY: shrinking the length only leaks those values, which
            // own no resources.
            unsafe { self.items.set_len(0) };
            self.items = Vec::new();
            self.free = Vec::new();
        }
        value
    }

    /// True when no entry is in use.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.len() == self.free.len()
    }

    pub(crate) fn get(&self, id: LinkId) -> &T {
        &self.items[id.0.get() as usize - 1]
    }

    pub(crate) fn get_mut(&mut self, id: LinkId) -> &mut T {
        &mut self.items[id.0.get() as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_indexes_and_gives_memory_back_when_empty() {
        let mut s: Slab<Vec<u8>> = Slab::new();
        let a = s.insert(vec![1]);
        let b = s.insert(vec![2]);
        assert_eq!(s.remove(a), vec![1]);
        let c = s.insert(vec![3]);
        assert_eq!(c, a, "the freed index is reused");
        assert_eq!(s.get(b), &vec![2]);
        s.get_mut(c).push(4);
        assert_eq!(s.remove(c), vec![3, 4]);
        assert!(!s.is_empty());
        assert_eq!(s.remove(b), vec![2]);
        assert!(s.is_empty());
        assert_eq!(s.items.capacity(), 0, "all free: memory given back");
    }

    #[test]
    fn reserve_counts_free_slots() {
        let mut s: Slab<Vec<u8>> = Slab::new();
        let ids: Vec<_> = (0..4).map(|i| s.insert(vec![i])).collect();
        s.remove(ids[1]);
        s.remove(ids[2]);
        let cap = s.items.capacity();
        s.reserve(2);
        assert_eq!(s.items.capacity(), cap, "two free slots: no growth");
        s.reserve(10);
        assert!(s.items.capacity() >= s.items.len() + 8);
    }
}
