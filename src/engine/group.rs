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

/// Ids of a group's members, stored as 32-bit offsets from the first id
/// while they fit (they almost always do), 64-bit otherwise.
#[derive(Default)]
pub(crate) struct IdList {
    base: u64,
    narrow: Vec<u32>,
    wide: Vec<u64>,
}

impl IdList {
    pub(crate) fn len(&self) -> usize {
        self.narrow.len() + self.wide.len()
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, id: u64) {
        if self.narrow.is_empty() && self.wide.is_empty() {
            self.base = id;
        }
        match id.checked_sub(self.base) {
            Some(off) if off <= u64::from(u32::MAX) => self.narrow.push(off as u32),
            _ => self.wide.push(id),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let base = self.base;
        self.narrow.iter().map(move |&o| base + u64::from(o)).chain(self.wide.iter().copied())
    }

    /// Bytes of heap the list holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.narrow.capacity() * 4 + self.wide.capacity() * 8
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let base = self.base;
        self.narrow.retain(|&o| keep(base + u64::from(o)));
        self.wide.retain(|&id| keep(id));
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
        let value = self.names.len() as u64;
        self.names.push(name.to_owned());
        self.name_index.insert(name.to_owned(), value);
        GroupKey { kind: GroupKind::Named, value }
    }

    /// True if `key` can be used (named keys must have been interned).
    pub(crate) fn is_valid(&self, key: GroupKey) -> bool {
        key.kind != GroupKind::Named || key.value < self.names.len() as u64
    }

    /// The interned name of a named group (stable for the table's lifetime).
    pub(crate) fn name(&self, key: GroupKey) -> Option<&CStr> {
        match key.kind {
            GroupKind::Named => self.names.get(key.value as usize).map(|s| s.as_c_str()),
            _ => None,
        }
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
        let slot = self.slots[index as usize].as_mut().expect("live group slot");
        slot.live += 1;
        slot.members.push(id);
        Some((index, slot.members.len() as u64 > 2 * slot.live + 64))
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
        if members.heap_bytes() >= RETIRE_BYTES {
            self.retired.push(members);
        }
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

    #[test]
    fn a_large_group_member_list_is_handed_over_when_the_group_ends() {
        let mut t = GroupTable::new();
        let big = GroupKey::numbered(5);
        let n = RETIRE_BYTES / 4 + 1;
        for id in 0..n as u64 {
            t.join(big, id).expect("a slot");
        }
        let (small, _) = t.join(GroupKey::numbered(6), n as u64).expect("a slot");
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
