//! The queue of events waiting to be polled.
//!
//! Final events of consecutive task ids, queued one after the other, share
//! one entry (a first id and a count). Outcomes applied under the lock come
//! mostly in runs of consecutive ids: a worker runs a chain's tasks one
//! after the other, and runs of an independent burst's tasks in add order.
//! A host that adds W2a's 1,000 chains of 100 before it polls used to queue
//! 100,000 entries (grown by doubling, most of them fresh pages for the
//! adding thread); it now queues at most 4 (128 when it adds ten chains per
//! `btm_add_tasks` call), and W2b's fan-in over 100,000 tasks at most 8
//! (measured in the poll, session 20). An entry is 16 bytes.
//! The order of the events is the order they were pushed in, entry by
//! entry and id by id; nothing else changes (events still carry only ids,
//! validated against the task table when polled).

use std::collections::VecDeque;

use super::group::{GroupKey, GroupKind};

/// One event, as pushed and popped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Ev {
    /// The task finished (completed or failed: the task table says which).
    Final(u64),
    /// The task reported progress (kept in `State::progress`).
    Progress(u64),
    /// The group's last live task finished.
    GroupFinished(GroupKey),
}

/// One entry of the queue: a run of final events or one other event.
enum Entry {
    /// Final events of ids `first`, `first + 1`, ..., `first + count - 1`,
    /// in that order (`count` >= 1).
    Finals {
        first: u64,
        count: u32,
    },
    Progress(u64),
    /// A `GroupKey`'s fields, apart: the entry is 16 bytes, not 24.
    GroupFinished {
        kind: GroupKind,
        value: u64,
    },
}

impl From<Ev> for Entry {
    /// The event as an entry of its own (a run of one, for a final event).
    #[inline(always)]
    fn from(ev: Ev) -> Entry {
        match ev {
            Ev::Final(id) => Entry::Finals { first: id, count: 1 },
            Ev::Progress(id) => Entry::Progress(id),
            Ev::GroupFinished(key) => Entry::GroupFinished { kind: key.kind, value: key.value },
        }
    }
}

/// The event queue (see the module doc).
#[derive(Default)]
pub(super) struct Events {
    entries: VecDeque<Entry>,
}

impl Events {
    /// Queues `ev` last.
    #[inline(always)]
    pub(super) fn push_back(&mut self, ev: Ev) {
        let entry = match ev {
            Ev::Final(id) => {
                if let Some(Entry::Finals { first, count }) = self.entries.back_mut() {
                    if *first + u64::from(*count) == id && *count < u32::MAX {
                        *count += 1;
                        return;
                    }
                }
                Entry::Finals { first: id, count: 1 }
            }
            ev => Entry::from(ev),
        };
        self.entries.push_back(entry);
    }

    /// Queues `ev` first.
    pub(super) fn push_front(&mut self, ev: Ev) {
        let entry = match ev {
            Ev::Final(id) => {
                if let Some(Entry::Finals { first, count }) = self.entries.front_mut() {
                    if id.checked_add(1) == Some(*first) && *count < u32::MAX {
                        *first = id;
                        *count += 1;
                        return;
                    }
                }
                Entry::Finals { first: id, count: 1 }
            }
            ev => Entry::from(ev),
        };
        self.entries.push_front(entry);
    }

    /// Takes the first event.
    #[inline(always)]
    pub(super) fn pop_front(&mut self) -> Option<Ev> {
        match self.entries.front_mut()? {
            Entry::Finals { first, count } if *count > 1 => {
                let id = *first;
                *first += 1;
                *count -= 1;
                Some(Ev::Final(id))
            }
            _ => self.entries.pop_front().map(|e| match e {
                Entry::Finals { first, .. } => Ev::Final(first),
                Entry::Progress(id) => Ev::Progress(id),
                Entry::GroupFinished { kind, value } => Ev::GroupFinished(GroupKey { kind, value }),
            }),
        }
    }

    #[inline(always)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every event (the memory is kept).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Entries the queue's memory holds.
    pub(super) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The ids of the queued final events, in queue order.
    pub(super) fn finals(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().flat_map(|e| match *e {
            Entry::Finals { first, count } => first..first + u64::from(count),
            Entry::Progress(_) | Entry::GroupFinished { .. } => 0..0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut Events) -> Vec<Ev> {
        std::iter::from_fn(|| q.pop_front()).collect()
    }

    #[test]
    fn consecutive_finals_share_an_entry_and_keep_their_order() {
        let key = GroupKey::numbered(7);
        let mut q = Events::default();
        let pushed = [
            Ev::Final(5),
            Ev::Final(6),
            Ev::Final(7),
            Ev::Final(3),
            Ev::Final(4),
            Ev::Progress(4),
            Ev::Final(5),
            Ev::GroupFinished(key),
            Ev::Final(8),
            Ev::Final(8),
            Ev::Final(9),
        ];
        for ev in pushed {
            q.push_back(ev);
        }
        // 5-7, 3-4, progress, 5, group, 8, 8-9.
        assert_eq!(q.entries.len(), 7);
        assert_eq!(q.finals().collect::<Vec<_>>(), vec![5, 6, 7, 3, 4, 5, 8, 8, 9]);
        assert_eq!(drain(&mut q), pushed.to_vec());
        assert!(q.is_empty());
    }

    #[test]
    fn pops_and_pushes_mix_at_both_ends() {
        let key = GroupKey::numbered(1);
        let mut q = Events::default();
        for id in 10..20 {
            q.push_back(Ev::Final(id));
        }
        assert_eq!(q.pop_front(), Some(Ev::Final(10)));
        assert_eq!(q.pop_front(), Some(Ev::Final(11)));
        // A final event put back in front of its run joins it.
        q.push_front(Ev::Final(11));
        assert_eq!(q.entries.len(), 1);
        q.push_front(Ev::GroupFinished(key));
        q.push_back(Ev::Final(20));
        assert_eq!(q.entries.len(), 2);
        let mut want = vec![Ev::GroupFinished(key)];
        want.extend((11..=20).map(Ev::Final));
        assert_eq!(drain(&mut q), want);
        q.push_back(Ev::Final(1));
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
    }

    /// Random pushes at both ends, pops and clears, against a plain
    /// queue of events (from the session-20 review).
    #[test]
    fn matches_a_plain_queue_of_events() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2000 {
            let (mut q, mut m, mut next) = (Events::default(), VecDeque::<Ev>::new(), 1u64);
            for _ in 0..200 {
                match rnd(10) {
                    0..=4 => {
                        let id = if rnd(4) == 0 { rnd(next + 2) } else { next };
                        next += 1;
                        q.push_back(Ev::Final(id));
                        m.push_back(Ev::Final(id));
                    }
                    5 => {
                        let ev = if rnd(2) == 0 {
                            Ev::Progress(rnd(50))
                        } else {
                            Ev::GroupFinished(GroupKey::numbered(rnd(5)))
                        };
                        q.push_back(ev);
                        m.push_back(ev);
                    }
                    6 => {
                        let ev = match rnd(3) {
                            0 => Ev::GroupFinished(GroupKey::numbered(1)),
                            1 => Ev::Final(rnd(next + 2)),
                            _ => Ev::Progress(3),
                        };
                        q.push_front(ev);
                        m.push_front(ev);
                    }
                    7 if rnd(20) == 0 => {
                        q.clear();
                        m.clear();
                    }
                    _ => assert_eq!(q.pop_front(), m.pop_front()),
                }
                let finals: Vec<u64> =
                    m.iter().filter_map(|e| if let Ev::Final(i) = e { Some(*i) } else { None }).collect();
                assert_eq!(q.finals().collect::<Vec<_>>(), finals);
            }
            while let Some(e) = m.pop_front() {
                assert_eq!(q.pop_front(), Some(e));
            }
            assert_eq!(q.pop_front(), None);
        }
    }

    #[test]
    fn an_entry_is_two_words() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn a_run_stops_at_its_count_limit() {
        let mut q = Events::default();
        q.entries.push_back(Entry::Finals { first: 1, count: u32::MAX });
        let next = 1 + u64::from(u32::MAX);
        q.push_back(Ev::Final(next));
        assert_eq!(q.entries.len(), 2);
        q.push_front(Ev::Final(0));
        assert_eq!(q.entries.len(), 3);
        assert_eq!(q.pop_front(), Some(Ev::Final(0)));
        assert_eq!(q.pop_front(), Some(Ev::Final(1)));
        assert_eq!(q.finals().last(), Some(next));
    }
}
