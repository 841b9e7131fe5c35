//! Groups: named, numbered or default, each with a count of live tasks and
//! the ids of its members (for stopping a group in time proportional to its
//! size, whatever else is queued).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::mem;

/// What kind of group a [`GroupKey`] names (the numbers are the C API's
/// `btm_group_kind`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GroupKind {
    /// The group of tasks added without one.
    Default = 0,
    /// A number the host picked or got from `next_group_id`.
    Numbered = 1,
    /// A name interned with `Manager::group_named`; `value` is its index.
    Named = 2,
}

/// A group's identity. Named groups never equal numbered ones.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// Kind of the group.
    pub kind: GroupKind,
    /// The number (numbered), the interned name's index (named), 0 (default).
    pub value: u64,
}

impl GroupKey {
    /// The default group.
    pub const DEFAULT: GroupKey = GroupKey { kind: GroupKind::Default, value: 0 };

    /// A numbered group.
    pub fn numbered(value: u64) -> Self {
        GroupKey { kind: GroupKind::Numbered, value }
    }
}

/// Set in an entry of [`IdList::narrow`] that starts a run.
const RUN: u32 = 1 << 31;

/// Ids of a group's members, in the order they joined (those too far from
/// the first to be an offset last). Stored as 32-bit offsets from the
/// first id while they fit (they almost always do), 64-bit otherwise; ids
/// that join one after the other with consecutive values (a burst of adds
/// to one group: W1's million tasks, W2a's chains) are one run of two
/// words, so that a burst costs its group no memory per task (4 bytes per
/// task before session 20, and a `mremap` of the whole list at each
/// doubling past 128 KiB, which on this VM cost the adding thread a TLB
/// shootdown each).
#[derive(Default)]
pub(crate) struct IdList {
    base: u64,
    /// An offset from `base` below 2^31 alone, or, with `RUN` set, the
    /// first offset of a run followed by the run's length (2 or more).
    narrow: Vec<u32>,
    wide: Vec<u64>,
    /// Ids held.
    len: usize,
    /// The id that extends the run ending `narrow` (0: `narrow` does not
    /// end with a run; ids start at 1).
    run_next: u64,
    /// The id that makes a run of the offset alone ending `narrow` (0 if
    /// it does not end with one).
    single_next: u64,
}

impl IdList {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `id` (task ids start at 1: 0 is `run_next`'s and
    /// `single_next`'s "none").
    #[inline(always)]
    pub(crate) fn push(&mut self, id: u64) {
        debug_assert_ne!(id, 0);
        if id == self.run_next {
            if let Some(count) = self.narrow.last_mut() {
                if *count < u32::MAX {
                    *count += 1;
                    self.len += 1;
                    self.run_next = id + 1;
                    return;
                }
            }
        }
        self.push_slow(id);
    }

    /// Adds the `n` ids `first .. first + n`, in order: as `n` calls of
    /// [`IdList::push`], the run's length raised once rather than once per
    /// id (in the common case, a list that ends with a run of the ids just
    /// before `first`, or gets one after its first two ids).
    pub(crate) fn push_run(&mut self, first: u64, n: u64) {
        let end = first + n;
        let mut id = first;
        while id < end {
            if id == self.run_next {
                if let Some(count) = self.narrow.last_mut() {
                    let k = u64::from(u32::MAX - *count).min(end - id);
                    if k > 0 {
                        // `k` fits: it is at most `u32::MAX - count`.
                        *count += k as u32;
                        self.len += k as usize;
                        id += k;
                        self.run_next = id;
                        continue;
                    }
                }
            }
            self.push_slow(id);
            id += 1;
        }
    }

    #[inline(never)]
    fn push_slow(&mut self, id: u64) {
        if self.len == 0 {
            self.base = id;
        }
        self.len += 1;
        self.run_next = 0;
        if id == self.single_next {
            *self.narrow.last_mut().expect("an offset alone ends the list") |= RUN;
            self.narrow.push(2);
            self.single_next = 0;
            self.run_next = id + 1;
            return;
        }
        self.single_next = 0;
        match id.checked_sub(self.base) {
            Some(off) if off < u64::from(RUN) => {
                self.narrow.push(off as u32);
                self.single_next = id + 1;
            }
            _ => self.wide.push(id),
        }
    }

    pub(crate) fn iter(&self) -> IdIter<'_> {
        IdIter { base: self.base, narrow: &self.narrow, next: 0, left: 0, wide: self.wide.iter() }
    }

    /// Bytes of heap the list holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.narrow.capacity() * 4 + self.wide.capacity() * 8
    }

    /// Keeps the ids for which `keep` is true, in order, in a new list, and
    /// returns the old one (for the caller to hand over if large: see
    /// [`GroupTable::retire`]). The new list is sized for half the old
    /// one's entries (a compaction keeps fewer than half the ids), so that
    /// it does not grow by doubling while it is filled.
    #[must_use]
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) -> IdList {
        let old = std::mem::take(self);
        self.narrow.reserve(old.narrow.len() / 2 + 2);
        for id in old.iter() {
            if keep(id) {
                self.push(id);
            }
        }
        old
    }
}

/// The ids of an [`IdList`], in order.
pub(crate) struct IdIter<'a> {
    base: u64,
    narrow: &'a [u32],
    /// The current run's next id, and how many are left in it.
    next: u64,
    left: u64,
    wide: std::slice::Iter<'a, u64>,
}

impl Iterator for IdIter<'_> {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        if self.left > 0 {
            self.left -= 1;
            let id = self.next;
            self.next += 1;
            return Some(id);
        }
        if let Some((&w, rest)) = self.narrow.split_first() {
            let first = self.base + u64::from(w & !RUN);
            if w & RUN == 0 {
                self.narrow = rest;
                return Some(first);
            }
            let (&count, rest) = rest.split_first().expect("a run's length follows its start");
            self.narrow = rest;
            self.next = first + 1;
            self.left = u64::from(count) - 1;
            return Some(first);
        }
        self.wide.next().copied()
    }
}

/// Tasks of one group that left it without its slot knowing yet (see
/// `State::deliver_lane`): `taken` have left, and `credit` more may leave
/// before one of them could be the group's last live task. Applied to the
/// slot by [`GroupRun::end`], before anything else reads the group.
pub(crate) struct GroupRun {
    pub(crate) index: u32,
    pub(crate) key: GroupKey,
    /// The group's name as events carry it (NULL unless named).
    pub(crate) name: *const std::ffi::c_char,
    pub(crate) taken: u64,
    pub(crate) credit: u64,
}

impl GroupRun {
    /// No run: matches no group.
    pub(crate) const NONE: GroupRun =
        GroupRun { index: u32::MAX, key: GroupKey::DEFAULT, name: std::ptr::null(), taken: 0, credit: 0 };

    /// Applies the run's leaves to its group's slot (they cannot end the
    /// group) and ends the run.
    #[inline(always)]
    pub(crate) fn end(&mut self, groups: &mut GroupTable) {
        if self.taken > 0 {
            let slot = groups.slot_mut(self.index);
            debug_assert!(slot.live > self.taken, "a run never takes a group's last task");
            slot.live -= self.taken;
        }
        *self = GroupRun::NONE;
    }
}

pub(crate) struct GroupSlot {
    pub(crate) key: GroupKey,
    pub(crate) live: u64,
    pub(crate) members: IdList,
}

/// Group slots at most: a task's record keeps its group's slot index in
/// three bytes (see `Body` in the engine). A slot is taken while its group
/// has live tasks, so this bounds the groups with live tasks at once, not
/// the groups a manager ever sees.
pub(crate) const MAX_GROUP_SLOTS: u32 = 1 << 24;

/// Live groups, addressed by a small index stored in each task.
pub(crate) struct GroupTable {
    index: HashMap<GroupKey, u32>,
    slots: Vec<Option<GroupSlot>>,
    free: Vec<u32>,
    /// Slots at most: `MAX_GROUP_SLOTS`, lowered by tests.
    limit: u32,
    /// Last key looked up, to skip hashing for runs of adds to one group.
    cache: Option<(GroupKey, u32)>,
    names: Vec<CString>,
    /// This table's tag, the high 32 bits of each of its name values, so
    /// that a name interned by another manager (whose index may be one of
    /// this table's) is told apart (`INVALID_GROUP`).
    name_tag: u64,
    name_index: HashMap<CString, u64>,
    /// Member lists of groups that ended, large enough that freeing them
    /// is a system call (see [`GroupTable::take_retired`]).
    retired: Vec<IdList>,
}

/// A member list of at least this many bytes is not freed where its group
/// ends (under the state lock) but handed to the caller (glibc gives blocks
/// of 128 KiB and more back to the system at once: 0.5-0.8 ms for the 4 MB
/// list of a million tasks).
pub(crate) const RETIRE_BYTES: usize = 128 * 1024;

/// Index of the default group, which always exists.
pub(crate) const DEFAULT_GROUP: u32 = 0;

impl GroupTable {
    pub(crate) fn new() -> Self {
        let mut t = GroupTable {
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            limit: MAX_GROUP_SLOTS,
            cache: None,
            names: Vec::new(),
            name_tag: {
                static NEXT_TAG: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
                u64::from(NEXT_TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) << 32
            },
            name_index: HashMap::new(),
            retired: Vec::new(),
        };
        t.slots.push(Some(GroupSlot { key: GroupKey::DEFAULT, live: 0, members: IdList::default() }));
        t.index.insert(GroupKey::DEFAULT, DEFAULT_GROUP);
        t
    }

    /// Interns a group name and returns its key.
    pub(crate) fn named(&mut self, name: &CStr) -> GroupKey {
        if let Some(&value) = self.name_index.get(name) {
            return GroupKey { kind: GroupKind::Named, value };
        }
        let value = self.name_tag | self.names.len() as u64;
        self.names.push(name.to_owned());
        self.name_index.insert(name.to_owned(), value);
        GroupKey { kind: GroupKind::Named, value }
    }

    /// True if `key` can be used (named keys must have been interned).
    pub(crate) fn is_valid(&self, key: GroupKey) -> bool {
        key.kind != GroupKind::Named || self.name_index_of(key.value).is_some()
    }

    /// The index in `names` of a name value of this table.
    fn name_index_of(&self, value: u64) -> Option<usize> {
        let index = value & 0xFFFF_FFFF;
        (value & !0xFFFF_FFFF == self.name_tag && index < self.names.len() as u64).then_some(index as usize)
    }

    /// The interned name of a named group (stable for the table's lifetime).
    pub(crate) fn name(&self, key: GroupKey) -> Option<&CStr> {
        match key.kind {
            GroupKind::Named => self.name_index_of(key.value).map(|i| self.names[i].as_c_str()),
            _ => None,
        }
    }

    /// [`GroupTable::name`] as events and `group_name` carry it: the
    /// interned name's pointer (valid until the manager is destroyed), or
    /// NULL for a group without a name.
    #[inline(always)]
    pub(crate) fn name_ptr(&self, key: GroupKey) -> *const std::ffi::c_char {
        self.name(key).map_or(std::ptr::null(), |n| n.as_ptr())
    }

    pub(crate) fn find(&self, key: GroupKey) -> Option<u32> {
        self.index.get(&key).copied()
    }

    /// True if `n` tasks of groups without a slot (new groups, or groups
    /// whose tasks have all ended) can join: enough slots are free.
    pub(crate) fn has_room(&self, n: usize) -> bool {
        self.free.len() + (self.limit as usize - self.slots.len()) >= n
    }

    /// Lowers the number of group slots (at least the default group's);
    /// slots already taken stay. For tests of the limit.
    pub(crate) fn set_limit(&mut self, limit: u32) {
        self.limit = limit.clamp(self.slots.len() as u32, MAX_GROUP_SLOTS);
    }

    /// Adds a live member to the group, creating the group if needed;
    /// `None` (nothing done) if the group has no slot and none is free.
    /// Returns the group's index, and whether its member list holds more
    /// stale entries than it should (more than twice the live members, plus
    /// 64): the caller then compacts it.
    #[inline(always)]
    pub(crate) fn join(&mut self, key: GroupKey, id: u64) -> Option<(u32, bool)> {
        let index = match self.cache {
            Some((k, i)) if k == key => i,
            _ => self.join_slow(key)?,
        };
        Some(self.join_at(index, id))
    }

    /// [`GroupTable::join`] for the group of slot `index`, which has a slot
    /// (the one [`GroupTable::cached_index`] returned).
    #[inline(always)]
    pub(crate) fn join_at(&mut self, index: u32, id: u64) -> (u32, bool) {
        let slot = self.slots[index as usize].as_mut().expect("live group slot");
        slot.live += 1;
        slot.members.push(id);
        (index, slot.members.len() as u64 > 2 * slot.live + 64)
    }

    /// Adds the `n` new tasks `first .. first + n` to the group of slot
    /// `index`, which task `first - 1` joined last through
    /// [`GroupTable::join`]: as `n` more joins, which would find its member
    /// list no staler than that join did (each adds a live member as it
    /// adds an entry), so no compaction is due.
    #[inline(always)]
    pub(crate) fn join_more(&mut self, index: u32, first: u64, n: u64) {
        let slot = self.slots[index as usize].as_mut().expect("live group slot");
        slot.live += n;
        slot.members.push_run(first, n);
    }

    /// The slot index of `key` if it is the group joined last (it has a
    /// slot and is valid: [`GroupTable::join`] would take no slow path and
    /// could not fail), for [`GroupTable::join_at`].
    #[inline(always)]
    pub(crate) fn cached_index(&self, key: GroupKey) -> Option<u32> {
        match self.cache {
            Some((k, i)) if k == key => Some(i),
            _ => None,
        }
    }

    /// The slot of `key` when it is not the cached one, created if needed
    /// (`None` if none is free).
    #[inline(never)]
    fn join_slow(&mut self, key: GroupKey) -> Option<u32> {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let slot = GroupSlot { key, live: 0, members: IdList::default() };
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i as usize] = Some(slot);
                        i
                    }
                    None if self.slots.len() < self.limit as usize => {
                        self.slots.push(Some(slot));
                        (self.slots.len() - 1) as u32
                    }
                    None => return None,
                };
                self.index.insert(key, i);
                i
            }
        };
        self.cache = Some((key, i));
        Some(i)
    }

    pub(crate) fn slot(&self, index: u32) -> &GroupSlot {
        self.slots[index as usize].as_ref().expect("live group slot")
    }

    pub(crate) fn slot_mut(&mut self, index: u32) -> &mut GroupSlot {
        self.slots[index as usize].as_mut().expect("live group slot")
    }

    /// Removes a live member. Returns the group's key if it has no live
    /// member left (the group slot is then released).
    #[inline]
    pub(crate) fn leave(&mut self, index: u32) -> Option<GroupKey> {
        let slot = self.slots[index as usize].as_mut().expect("live group slot");
        if slot.live > 1 {
            // Common case: other members remain.
            slot.live -= 1;
            return None;
        }
        self.leave_n(index, 1)
    }

    /// [`GroupTable::leave`], returning the group's key and whether it has
    /// no live member left.
    #[inline(always)]
    pub(crate) fn leave_keyed(&mut self, index: u32) -> (GroupKey, bool) {
        let slot = self.slots[index as usize].as_mut().expect("live group slot");
        let key = slot.key;
        if slot.live > 1 {
            slot.live -= 1;
            return (key, false);
        }
        (key, self.leave_n(index, 1).is_some())
    }

    /// Every live member of every group leaves (everything was stopped).
    pub(crate) fn leave_all(&mut self) {
        for index in 0..self.slots.len() as u32 {
            let live = self.slots[index as usize].as_ref().map_or(0, |s| s.live);
            if live > 0 {
                self.leave_n(index, live);
            }
        }
    }

    /// `leave` for `n` members at once.
    pub(crate) fn leave_n(&mut self, index: u32, n: u64) -> Option<GroupKey> {
        let slot = self.slots[index as usize].as_mut().expect("live group slot");
        slot.live -= n;
        if slot.live > 0 {
            return None;
        }
        let key = slot.key;
        let members = mem::take(&mut slot.members);
        self.retire(members);
        if index != DEFAULT_GROUP {
            self.slots[index as usize] = None;
            self.index.remove(&key);
            self.free.push(index);
            if matches!(self.cache, Some((_, i)) if i == index) {
                self.cache = None;
            }
        }
        Some(key)
    }

    /// Frees a member list that left its group (an ended group's, a
    /// compaction's old one) here if it is small, or keeps it for [`GroupTable::take_retired`]
    /// (freed after the lock) if freeing it is a system call.
    pub(crate) fn retire(&mut self, list: IdList) {
        if list.heap_bytes() >= RETIRE_BYTES {
            self.retired.push(list);
        }
    }

    /// The large member lists of groups that ended since the last call,
    /// for the caller to free after its lock (or have an idle worker free).
    pub(crate) fn take_retired(&mut self) -> Vec<IdList> {
        mem::take(&mut self.retired)
    }

    /// True if [`GroupTable::take_retired`] has lists to give.
    pub(crate) fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(l: &IdList) -> Vec<u64> {
        l.iter().collect()
    }

    #[test]
    fn consecutive_members_are_runs_and_come_back_in_order() {
        let mut l = IdList::default();
        // Runs, single ids, an id too far for an offset, a run after it.
        let pushed: Vec<u64> = [100, 101, 102, 105, 107, 108, 100 + (1 << 31), 109, 110, 111, 3].into_iter().collect();
        for &id in &pushed {
            l.push(id);
        }
        assert_eq!(l.len(), pushed.len());
        // [100+3] [105] [107+2] [109+3] in `narrow`; the far id and 3 (below
        // the first) in `wide`, after them.
        assert_eq!(l.narrow.len(), 7);
        assert_eq!(ids(&l), vec![100, 101, 102, 105, 107, 108, 109, 110, 111, 100 + (1 << 31), 3]);
        // A million consecutive ids: two words.
        let mut big = IdList::default();
        for id in 1..=1_000_000u64 {
            big.push(id);
        }
        assert_eq!(big.narrow.len(), 2);
        assert_eq!(big.len(), 1_000_000);
        assert!(big.iter().eq(1..=1_000_000u64));
    }

    #[test]
    fn retain_keeps_the_order_and_makes_runs_again() {
        let mut l = IdList::default();
        for id in (10..30).chain([40, 42, 43]) {
            l.push(id);
        }
        let _ = l.retain(|id| id % 5 != 0);
        let want: Vec<u64> = (10..30).chain([42, 43]).filter(|id| id % 5 != 0).collect();
        assert_eq!(ids(&l), want);
        assert_eq!(l.len(), want.len());
        // Runs 11-14, 16-19, 21-24, 26-29, 42-43.
        assert_eq!(l.narrow.len(), 10);
        let _ = l.retain(|_| false);
        assert_eq!(l.len(), 0);
        assert!(ids(&l).is_empty());
        l.push(7);
        assert_eq!(ids(&l), vec![7]);
    }

    #[test]
    fn a_compaction_hands_a_large_old_list_over() {
        let mut t = GroupTable::new();
        let key = GroupKey::numbered(3);
        let n = RETIRE_BYTES / 4 + 1;
        for id in 1..=n as u64 {
            t.join(key, 2 * id).expect("a slot");
        }
        let index = t.find(key).expect("live group");
        let old = t.slot_mut(index).members.retain(|id| id % 1000 == 0);
        assert_eq!(t.slot(index).members.len(), n / 500);
        assert!(t.slot(index).members.heap_bytes() < RETIRE_BYTES);
        t.retire(old);
        let lists = t.take_retired();
        assert_eq!(lists.len(), 1, "the old list is freed after the lock");
        assert_eq!(lists[0].len(), n);
        // A small one is freed where it is.
        let old = t.slot_mut(index).members.retain(|_| true);
        t.retire(old);
        assert!(!t.has_retired());
    }

    #[test]
    fn a_run_at_its_length_limit_starts_another() {
        let mut l = IdList::default();
        l.push(1);
        l.push(2);
        *l.narrow.last_mut().unwrap() = u32::MAX;
        l.run_next = u64::from(u32::MAX) + 1;
        l.len = u32::MAX as usize;
        l.push(u64::from(u32::MAX) + 1);
        // Its offset does not fit: it goes to `wide`, after the run.
        assert_eq!(l.wide, vec![u64::from(u32::MAX) + 1]);
        assert_eq!(l.iter().last(), Some(u64::from(u32::MAX) + 1));
        assert_eq!(l.iter().take(3).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn a_large_group_member_list_is_handed_over_when_the_group_ends() {
        let mut t = GroupTable::new();
        let big = GroupKey::numbered(5);
        // Every other id: no two members consecutive, an entry each.
        let n = RETIRE_BYTES / 4 + 1;
        for id in 1..=n as u64 {
            t.join(big, 2 * id).expect("a slot");
        }
        let (small, _) = t.join(GroupKey::numbered(6), 2 * n as u64 + 2).expect("a slot");
        assert_eq!(t.leave_n(small, 1), Some(GroupKey::numbered(6)));
        assert!(!t.has_retired(), "a small list is freed where its group ends");
        let index = t.find(big).expect("live group");
        assert_eq!(t.leave_n(index, n as u64 - 1), None, "one member left");
        assert!(!t.has_retired());
        assert_eq!(t.leave_n(index, 1), Some(big));
        let lists = t.take_retired();
        assert_eq!(lists.len(), 1, "the large list is handed over");
        assert_eq!(lists[0].len(), n);
        assert!(lists[0].heap_bytes() >= RETIRE_BYTES);
        assert!(!t.has_retired() && t.take_retired().is_empty());
    }
}

/// Property tests of `IdList` against plain vectors (from the session-20
/// review).
#[cfg(test)]
mod review_prop {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Reference: the ids pushed, in push order; iteration = the ids that are
    /// "narrow" (offset from the first id below 2^31, or extending by +1 a
    /// narrow id pushed just before, in a run shorter than u32::MAX) in push
    /// order, then the others in push order.
    fn model_iter(pushed: &[u64]) -> Vec<u64> {
        let (mut narrow, mut wide) = (Vec::new(), Vec::new());
        let base = pushed.first().copied().unwrap_or(0);
        let mut prev: Option<(u64, bool, u64)> = None; // (id, narrow, run length)
        for &id in pushed {
            let (is_narrow, run) = match prev {
                Some((p, true, r)) if id == p + 1 && r < u64::from(u32::MAX) => (true, r + 1),
                _ => (id >= base && id - base < (1 << 31), 1),
            };
            prev = Some((id, is_narrow, run));
            if is_narrow {
                narrow.push(id)
            } else {
                wide.push(id)
            }
        }
        narrow.extend(wide);
        narrow
    }

    fn check_structure(l: &IdList) {
        let mut i = 0;
        let mut n = l.wide.len();
        while i < l.narrow.len() {
            if l.narrow[i] & RUN != 0 {
                assert!(l.narrow[i + 1] >= 2, "run of length < 2");
                n += l.narrow[i + 1] as usize;
                i += 2;
            } else {
                n += 1;
                i += 1;
            }
        }
        assert_eq!(n, l.len());
    }

    fn gen_id(r: &mut Rng, last: u64, base: u64) -> u64 {
        let d = match r.below(10) {
            0 => 0,
            1..=4 => 1,
            5 => 2 + r.below(5),
            6 => (1 << 31) - 3 + r.below(6),
            7 => (1u64 << 32) - 3 + r.below(6),
            8 => return base.saturating_sub(r.below(4)).max(1) + r.below(3),
            _ => return 1 + r.below(1 << 34),
        };
        let id = last + d;
        if id == 0 {
            1
        } else {
            id
        }
    }

    #[test]
    fn idlist_matches_vec_model() {
        for seed in 1..4000u64 {
            let mut r = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
            let mut l = IdList::default();
            let mut pushed: Vec<u64> = Vec::new();
            let mut last = 1 + r.below(1 << 33);
            let steps = r.below(300);
            for _ in 0..steps {
                if r.below(20) == 0 {
                    // retain with a random predicate
                    let m = 1 + r.below(5);
                    let k = r.below(m);
                    let keep = |id: u64| (id.wrapping_mul(0x2545F4914F6CDD1D) >> 7) % m != k;
                    let expect: Vec<u64> = model_iter(&pushed).into_iter().filter(|&i| keep(i)).collect();
                    let _ = l.retain(keep);
                    pushed = expect;
                } else {
                    let base = pushed.first().copied().unwrap_or(last);
                    last = gen_id(&mut r, last, base);
                    l.push(last);
                    pushed.push(last);
                }
                let want = model_iter(&pushed);
                let got: Vec<u64> = l.iter().collect();
                assert_eq!(got, want, "seed {seed}");
                assert_eq!(l.len(), pushed.len());
                check_structure(&l);
            }
        }
    }

    /// Strictly increasing ids (the only ones `State::issue_id` pushes) with
    /// span < 2^31 come back in push order, as in the old code; and through
    /// compaction-like retains.
    #[test]
    fn increasing_ids_come_back_sorted() {
        for seed in 1..2000u64 {
            let mut r = Rng(seed.wrapping_mul(0xD1B54A32D192ED03) | 1);
            let mut l = IdList::default();
            let mut v: Vec<u64> = Vec::new();
            let mut id = 1 + r.below(1000);
            for _ in 0..r.below(2000) {
                id += if r.below(3) == 0 { 1 + r.below(1 << 20) } else { 1 };
                l.push(id);
                v.push(id);
                if r.below(50) == 0 {
                    let j = id;
                    let keep = |x: u64| x == j || x % 3 != 0;
                    let _ = l.retain(keep);
                    v.retain(|&x| keep(x));
                }
                assert!(l.iter().eq(v.iter().copied()));
                assert_eq!(l.len(), v.len());
            }
        }
    }
}
