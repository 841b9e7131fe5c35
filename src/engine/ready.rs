//! The ready queue: tasks whose upstream tasks are all done, ordered by
//! priority (higher first) and then by id (the order they were added).
//!
//! Each priority level keeps a FIFO of 32-bit offsets from a per-level base
//! id, the common case (tasks become ready in the order they were added), and
//! a min-heap for tasks that become ready out of order (a downstream task
//! unblocked after later tasks were queued, a priority change). Entries are
//! removed lazily: the caller validates a popped id against the task table and
//! reports removals with [`ReadyQueue::forget`], which drops a level (and its
//! stale entries) as soon as it holds no valid entry. The best level stands
//! apart and the others wait in a B-tree by priority, where a level of a
//! single entry is usually that entry alone, with no FIFO (see `Parked`).

use std::cmp::Reverse;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

#[derive(Default)]
struct Level {
    base: u64,
    fifo: VecDeque<u32>,
    /// Highest id pushed to `fifo`; the FIFO only accepts larger ids.
    fifo_last: u64,
    late: BinaryHeap<Reverse<u64>>,
    /// Valid (not yet popped or forgotten) entries.
    valid: usize,
}

impl Level {
    // (Inlined: with `ReadyQueue::compact` as its second caller, LLVM
    // called it out of line from `ReadyQueue::push`, 10 instructions more
    // per locked add, `bash bench/paths.sh`.)
    #[inline(always)]
    fn push(&mut self, id: u64) {
        if self.fifo.is_empty() {
            self.base = id;
            self.fifo_last = 0;
        }
        let offset = id.wrapping_sub(self.base);
        if id > self.fifo_last && offset <= u64::from(u32::MAX) {
            self.fifo.push_back(offset as u32);
            self.fifo_last = id;
        } else {
            self.late.push(Reverse(id));
        }
        self.valid += 1;
    }

    fn peek(&self) -> Option<u64> {
        let front = self.fifo.front().map(|&o| self.base + u64::from(o));
        let late = self.late.peek().map(|r| r.0);
        match (front, late) {
            (Some(f), Some(l)) => Some(f.min(l)),
            (f, l) => f.or(l),
        }
    }

    fn pop(&mut self) -> Option<u64> {
        let front = self.fifo.front().map(|&o| self.base + u64::from(o));
        let late = self.late.peek().map(|r| r.0);
        match (front, late) {
            (Some(f), Some(l)) if l < f => self.late.pop().map(|r| r.0),
            (Some(_), _) => self.fifo.pop_front().map(|o| self.base + u64::from(o)),
            (None, Some(_)) => self.late.pop().map(|r| r.0),
            (None, None) => None,
        }
    }
}

/// Keeps an emptied level's buffers as the `spare` unless they are big (a
/// burst's buffers are given back, not kept for good).
fn keep_spare(spare: &mut Option<Level>, mut level: Level) {
    if level.fifo.capacity() <= SPARE_MAX && level.late.capacity() <= SPARE_MAX {
        level.fifo.clear();
        level.late.clear();
        level.valid = 0;
        *spare = Some(level);
    }
}

/// A level below the best one. Made there by a push, or parked there
/// holding one valid entry and no stale one (as when every task has a
/// priority of its own), it is that entry alone: no buffer of its own, and
/// 16 bytes in the tree instead of 80. A second push boxes it, and a boxed
/// level stays boxed until it empties or becomes the best one.
enum Parked {
    One(u64),
    Many(Box<Level>),
}

impl Parked {
    /// `level` parked (its buffers kept as the `spare` if it becomes one
    /// entry).
    fn of(level: Level, spare: &mut Option<Level>) -> Parked {
        if level.valid == 1 && level.fifo.len() + level.late.len() == 1 {
            let id = level.peek().expect("one entry");
            keep_spare(spare, level);
            Parked::One(id)
        } else {
            Parked::Many(Box::new(level))
        }
    }

    /// The level back (one entry: in the `spare`'s buffers, if any).
    fn unpark(self, spare: &mut Option<Level>) -> Level {
        match self {
            Parked::One(id) => {
                let mut level = spare.take().unwrap_or_default();
                level.push(id);
                level
            }
            Parked::Many(level) => *level,
        }
    }

    fn entries(&self) -> usize {
        match self {
            Parked::One(_) => 1,
            Parked::Many(level) => level.fifo.len() + level.late.len(),
        }
    }
}

/// Largest FIFO or heap (in entries, 256 KiB of FIFO) a dropped level may
/// keep as the spare.
const SPARE_MAX: usize = 1 << 16;

/// Priority-ordered queue of ready task ids: a level per priority, the
/// best one apart (where a host with one priority, or the workers taking
/// the best tasks, find it in one test) and the others in a B-tree by
/// priority. Hosts use a handful of priorities, but nothing bounds how
/// many: a sorted vector moved every level after the one it made or
/// dropped, and a backlog of 100,000 tasks of distinct priorities cost up
/// to 54 us per add (ascending priorities, each a new best level; 28 us
/// scrambled; quadratic), 0.2-0.3 us with the tree.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    /// The best level (`None` only when `rest` is empty too).
    top: Option<(i32, Level)>,
    rest: BTreeMap<i32, Parked>,
    valid: usize,
    /// The last level dropped, emptied but with its buffers: a queue that
    /// keeps running dry and refilling (workers faster than the host) reuses
    /// it instead of allocating a FIFO each time.
    spare: Option<Level>,
}

impl ReadyQueue {
    /// Number of valid entries.
    pub(crate) fn len(&self) -> usize {
        self.valid
    }

    /// Number of entries, stale ones included (a diagnostic for tests).
    pub(crate) fn entries(&self) -> usize {
        self.top.iter().map(|(_, l)| l.fifo.len() + l.late.len()).sum::<usize>()
            + self.rest.values().map(Parked::entries).sum::<usize>()
    }

    /// True if `priority` has a level.
    fn has_level(&self, priority: i32) -> bool {
        matches!(&self.top, Some((p, _)) if *p == priority) || self.rest.contains_key(&priority)
    }

    pub(crate) fn push(&mut self, priority: i32, id: u64) {
        self.valid += 1;
        if let Some((p, level)) = &mut self.top {
            if *p == priority {
                level.push(id);
                return;
            }
        }
        self.push_other(priority, id);
    }

    /// [`ReadyQueue::push`] to a level other than the best one.
    #[inline(never)]
    fn push_other(&mut self, priority: i32, id: u64) {
        // (The best level stays in place: taken out and put back, its 80
        // bytes cost each such push 10 ns.)
        if self.top.as_ref().is_some_and(|(p, _)| *p > priority) {
            match self.rest.get_mut(&priority) {
                Some(Parked::Many(level)) => level.push(id),
                Some(parked) => {
                    let Parked::One(first) = *parked else { unreachable!("matched above") };
                    let mut level = Box::new(self.spare.take().unwrap_or_default());
                    level.push(first);
                    level.push(id);
                    *parked = Parked::Many(level);
                }
                None => {
                    self.rest.insert(priority, Parked::One(id));
                }
            }
            return;
        }
        // A new best level (`priority` had none: it is not in `rest`).
        if let Some((p, top)) = self.top.take() {
            let parked = Parked::of(top, &mut self.spare);
            self.rest.insert(p, parked);
        }
        // (Made in place: a level built aside and then moved in cost a
        // host whose queue runs dry 14 ns per task.)
        self.top.insert((priority, self.spare.take().unwrap_or_default())).1.push(id);
    }

    /// True if a task of `priority` is queued.
    #[inline]
    pub(crate) fn has_priority(&self, priority: i32) -> bool {
        self.valid > 0 && self.has_level(priority)
    }

    /// The priority of the best level (which holds a valid entry).
    pub(crate) fn top_priority(&self) -> Option<i32> {
        self.top.as_ref().map(|(p, _)| *p)
    }

    /// The entry [`ReadyQueue::pop`] would return, without popping it.
    pub(crate) fn peek(&mut self) -> Option<(i32, u64)> {
        loop {
            let (priority, level) = self.top.as_ref()?;
            if let Some(id) = level.peek() {
                return Some((*priority, id));
            }
            self.drop_top();
        }
    }

    /// Pops the best candidate: `(priority, id)`. The caller must check that
    /// the task is still ready at that priority; if it is, it must call
    /// [`ReadyQueue::taken`]; if not, the entry was stale and is simply gone.
    pub(crate) fn pop(&mut self) -> Option<(i32, u64)> {
        loop {
            let (priority, level) = self.top.as_mut()?;
            if let Some(id) = level.pop() {
                return Some((*priority, id));
            }
            self.drop_top();
        }
    }

    /// Removes the best level; the next one takes its place.
    #[inline(never)]
    fn drop_top(&mut self) {
        if let Some((_, level)) = self.top.take() {
            keep_spare(&mut self.spare, level);
        }
        self.top = self.rest.pop_last().map(|(p, parked)| (p, parked.unpark(&mut self.spare)));
    }

    /// True if the level of `priority` holds more stale entries (of tasks
    /// that left it without being popped: stopped, re-prioritised) than
    /// twice its valid ones plus 64: the caller then compacts it with
    /// [`ReadyQueue::compact`]. A level is dropped, stale entries and all,
    /// once it holds no valid entry; one that always keeps one (a paused
    /// manager, or busy workers, with a task queued) would otherwise keep
    /// an entry for every task that ever left it.
    pub(crate) fn is_stale(&self, priority: i32) -> bool {
        let stale = |level: &Level| level.fifo.len() + level.late.len() > 2 * level.valid + 64;
        match &self.top {
            Some((p, level)) if *p == priority => stale(level),
            // (A single entry is never stale.)
            _ => matches!(self.rest.get(&priority), Some(Parked::Many(level)) if stale(level)),
        }
    }

    /// Keeps, in the level of `priority`, the entries for which `valid` is
    /// true (each id once), in id order, in buffers sized for them.
    /// `valid` is the check a pop's caller makes: true for every task the
    /// level counts that is still queued at `priority`. The level's count
    /// is unchanged (a stop's walk may have removed tasks it forgets only
    /// later: their entries go now, their count with the forget).
    pub(crate) fn compact(&mut self, priority: i32, mut valid: impl FnMut(u64) -> bool) {
        let level = match &mut self.top {
            Some((p, level)) if *p == priority => level,
            _ => match self.rest.get_mut(&priority) {
                Some(Parked::Many(level)) => &mut **level,
                _ => return,
            },
        };
        let mut ids: Vec<u64> = level.fifo.iter().map(|&o| level.base + u64::from(o)).filter(|&id| valid(id)).collect();
        ids.extend(level.late.iter().map(|r| r.0).filter(|&id| valid(id)));
        ids.sort_unstable();
        ids.dedup();
        let mut fresh = Level::default();
        fresh.fifo.reserve(ids.len());
        for id in ids {
            fresh.push(id);
        }
        fresh.valid = level.valid;
        *level = fresh;
    }

    /// Drops every entry (every queued task left at once), and the memory.
    pub(crate) fn clear(&mut self) {
        *self = ReadyQueue::default();
    }

    /// Records that a popped entry was valid and its task has left the queue.
    pub(crate) fn taken(&mut self, priority: i32) {
        self.forget(priority);
    }

    /// Records that a queued task at `priority` left the queue without being
    /// popped (stopped, failed, re-prioritised). Its entry becomes stale.
    pub(crate) fn forget(&mut self, priority: i32) {
        self.forget_n(priority, 1);
    }

    /// `forget` for `n` entries of one level at once.
    pub(crate) fn forget_n(&mut self, priority: i32, n: usize) {
        if n == 0 {
            return;
        }
        self.valid -= n;
        if let Some((p, level)) = &mut self.top {
            if *p == priority {
                level.valid -= n;
                if level.valid == 0 {
                    self.drop_top();
                }
                return;
            }
        }
        self.forget_other(priority, n);
    }

    /// [`ReadyQueue::forget_n`] in a level other than the best one.
    #[inline(never)]
    fn forget_other(&mut self, priority: i32, n: usize) {
        let Entry::Occupied(mut parked) = self.rest.entry(priority) else {
            return;
        };
        match parked.get_mut() {
            Parked::One(_) => {
                debug_assert_eq!(n, 1, "a level of one entry counts one");
                parked.remove();
            }
            Parked::Many(level) => {
                level.valid -= n;
                if level.valid == 0 {
                    if let Parked::Many(level) = parked.remove() {
                        keep_spare(&mut self.spare, *level);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut ReadyQueue) -> Vec<(i32, u64)> {
        let mut out = vec![];
        while let Some((p, id)) = q.pop() {
            q.taken(p);
            out.push((p, id));
        }
        out
    }

    #[test]
    fn priority_then_id_order_including_late_arrivals() {
        let mut q = ReadyQueue::default();
        q.push(0, 10);
        q.push(5, 11);
        q.push(0, 12);
        q.push(0, 3); // became ready late: still runs before 10
        q.push(-1, 1);
        assert_eq!(q.len(), 5);
        assert_eq!(drain(&mut q), vec![(5, 11), (0, 3), (0, 10), (0, 12), (-1, 1)]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn compacting_a_level_keeps_its_valid_entries_in_order() {
        let mut q = ReadyQueue::default();
        q.push(3, 1);
        for id in 2..=1000 {
            q.push(0, id);
        }
        // Task 5 moved to another level and back: its first entry is left
        // (the move forgot it), a second one pushed.
        q.forget(0);
        q.push(0, 5);
        let stale = |id: u64| id % 10 != 0 && id != 5;
        q.forget_n(0, (2..=1000).filter(|&id| stale(id)).count());
        assert!(q.is_stale(0));
        assert!(!q.is_stale(3));
        q.compact(0, |id| !stale(id));
        assert!(!q.is_stale(0));
        let want: Vec<(i32, u64)> =
            std::iter::once((3, 1)).chain((2..=1000).filter(|&id| !stale(id)).map(|id| (0, id))).collect();
        assert_eq!(drain(&mut q), want);
        assert_eq!(q.len(), 0);
        assert!(q.top.is_none() && q.rest.is_empty());
    }

    #[test]
    fn forgetting_every_entry_drops_the_level() {
        let mut q = ReadyQueue::default();
        for id in 1..=1000 {
            q.push(2, id);
        }
        for _ in 1..=1000 {
            q.forget(2);
        }
        assert!(q.top.is_none() && q.rest.is_empty());
        assert_eq!(q.pop(), None);
    }

    /// A best level compacted while a stop's `forget_n` waits (its count
    /// two, its entries one: the task that stays) is parked by a new best
    /// level: it must keep its count, or the late forget would drop the
    /// task that stays (a single-entry level counts one).
    #[test]
    fn a_level_parked_while_a_forget_waits_keeps_its_count() {
        let mut q = ReadyQueue::default();
        for id in 1..=100 {
            q.push(0, id);
        }
        // Tasks 3 to 100 stopped one by one; task 2 by a stop's walk that
        // forgets it at its end; task 1 stays.
        q.forget_n(0, 98);
        assert!(q.is_stale(0));
        q.compact(0, |id| id == 1);
        assert_eq!(q.entries(), 1);
        // The walk releases a task of a better priority, then forgets.
        q.push(1, 200);
        q.forget_n(0, 1);
        check_levels(&q, true, "after the late forget");
        assert_eq!(q.len(), 2);
        assert!(q.has_priority(0));
        assert_eq!(drain(&mut q), vec![(1, 200), (0, 1)]);
        assert!(q.len() == 0 && q.top.is_none() && q.rest.is_empty());
    }

    /// A level parked as its single entry, then given more (older and
    /// newer ids) and forgotten several at once, counts them all; its
    /// entries come back in id order when it is the best level again.
    #[test]
    fn a_single_entry_level_grows_and_shrinks() {
        let mut q = ReadyQueue::default();
        q.push(0, 50);
        q.push(5, 60); // level 0 parked: one entry
        assert!(matches!(q.rest.get(&0), Some(Parked::One(50))));
        q.push(0, 40); // older: a late arrival
        q.push(0, 70);
        q.push(0, 45);
        assert!(matches!(q.rest.get(&0), Some(Parked::Many(level)) if level.valid == 4));
        // 45 and 70 leave in a stop's walk, forgotten at once.
        q.forget_n(0, 2);
        check_levels(&q, true, "after forget_n");
        assert_eq!(q.len(), 3);
        let live = [40, 50, 60];
        let mut got = vec![];
        while let Some((p, id)) = q.pop() {
            if live.contains(&id) {
                q.taken(p);
                got.push((p, id));
            }
        }
        assert_eq!(got, vec![(5, 60), (0, 40), (0, 50)]);
        assert!(q.len() == 0 && q.top.is_none() && q.rest.is_empty());
        // A one-entry level parked twice and its entry forgotten: gone.
        q.push(0, 80);
        q.push(1, 81);
        q.push(2, 82);
        q.forget(1);
        q.forget(0);
        assert!(q.rest.is_empty());
        check_levels(&q, true, "after the forgets");
        assert_eq!(drain(&mut q), vec![(2, 82)]);
    }

    /// A seeded generator: each call returns a number below its bound.
    fn below(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |bound| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % bound
        }
    }

    /// Pushes, pops and forgets over many priorities (a new best level, a
    /// new worst, levels between, levels emptied by forgets), checked
    /// against a sorted set of the queued (priority, id) pairs.
    #[test]
    fn many_priorities_against_a_sorted_set() {
        use std::collections::BTreeSet;
        let mut next = below(0x9e37_79b9_7f4a_7c15_u64);
        for round in 0..20 {
            let mut q = ReadyQueue::default();
            // (Reverse(priority), id): the set's first is the queue's best.
            let mut want: BTreeSet<(Reverse<i32>, u64)> = BTreeSet::new();
            let mut id = 0;
            let spread = [3, 40, 1000, 100_000][round % 4];
            for _ in 0..3000 {
                match next(10) {
                    0..=5 => {
                        id += 1;
                        let p = next(spread) as i32 - (spread / 2) as i32;
                        q.push(p, id);
                        want.insert((Reverse(p), id));
                    }
                    6..=7 => {
                        let got = loop {
                            match q.pop() {
                                // Forgotten entries are stale: the caller skips them.
                                Some((p, i)) if !want.contains(&(Reverse(p), i)) => continue,
                                other => break other,
                            }
                        };
                        let best = want.pop_first().map(|(Reverse(p), i)| (p, i));
                        assert_eq!(got, best, "round {round}");
                        if let Some((p, _)) = got {
                            q.taken(p);
                        }
                    }
                    _ => {
                        // A queued task leaves without a pop (stopped).
                        let k = next(want.len() as u64 + 1) as usize;
                        if let Some(&(Reverse(p), i)) = want.iter().nth(k) {
                            want.remove(&(Reverse(p), i));
                            q.forget(p);
                        }
                    }
                }
                assert_eq!(q.len(), want.len());
                assert_eq!(q.top_priority().is_some(), !want.is_empty(), "round {round}");
                if let Some(&(Reverse(p), _)) = want.first() {
                    assert!(q.has_priority(p));
                    // Every forget here is made at once, so the best level
                    // counts a valid entry and its priority is the best
                    // valid one (asserted here as at least it;
                    // `state_like_use_against_a_model` asserts equality).
                    assert!(q.top_priority().unwrap() >= p);
                }
            }
        }
    }

    /// The structure's invariants: every level in `rest` below the best
    /// one, the best one missing only if `rest` is empty, no level without
    /// a valid entry, and (`exact`: no forget pending) the queue's count
    /// the sum of its levels'.
    fn check_levels(q: &ReadyQueue, exact: bool, at: &str) {
        match &q.top {
            Some((top, level)) => {
                assert!(q.rest.keys().all(|p| p < top), "{at}: a level above the best one");
                assert!(level.valid > 0, "{at}: the best level holds no valid entry");
            }
            None => assert!(q.rest.is_empty(), "{at}: levels but no best one"),
        }
        let valid = |parked: &Parked| match parked {
            Parked::One(_) => 1,
            Parked::Many(level) => level.valid,
        };
        assert!(q.rest.values().all(|l| valid(l) > 0), "{at}: a level holds no valid entry");
        if exact {
            let sum: usize = q.top.iter().map(|(_, l)| l.valid).chain(q.rest.values().map(valid)).sum();
            assert_eq!(sum, q.len(), "{at}: the count is not the levels' sum");
        }
    }

    /// Drives the queue as `State` does, against a model of the tasks
    /// (`at[id]`: the priority a task is queued at): pops validated by the
    /// caller (`take_next`), peeks then pops (`ready_front`, `refill_lane`),
    /// priority changes (a forget, then a push of the same id), stops (one
    /// task, or a run of one priority forgotten with one `forget_n` at the
    /// end of the walk, the walk compacting levels and pushing released
    /// tasks meanwhile), compaction of stale levels (`forget_ready`), and
    /// `clear`, over one to 1,000 priorities; older ids become ready late.
    #[test]
    fn state_like_use_against_a_model() {
        use std::collections::BTreeSet;
        let mut next = below(0x2545_f491_4f6c_dd1d_u64);
        // `State::forget_ready`; counts the compactions of the best level
        // and of the others.
        let mut compactions = [0; 2];
        let mut forget_ready = |q: &mut ReadyQueue, at: &[Option<i32>], p: i32, n: usize| {
            q.forget_n(p, n);
            if n > 0 && q.is_stale(p) {
                compactions[usize::from(q.top_priority() != Some(p))] += 1;
                q.compact(p, |id| at[id as usize] == Some(p));
                assert!(!q.is_stale(p));
            }
        };
        for round in 0..60 {
            let mut q = ReadyQueue::default();
            let ids = [1000u64, 20_000][round % 2];
            let spread = [1u64, 2, 3, 7, 40, 1000][round / 2 % 6];
            // Rounds with few pops let stale entries pile up.
            let backlog = round % 3 == 0;
            let mut at: Vec<Option<i32>> = vec![None; ids as usize + 1];
            let mut used = vec![false; ids as usize + 1];
            let mut fresh = 1;
            // (Reverse(priority), id) of the queued tasks: the first is the best.
            let mut want: BTreeSet<(Reverse<i32>, u64)> = BTreeSet::new();
            // A stop's forgets not yet made: (priority, count).
            let mut pending: Option<(i32, usize)> = None;
            for step in 0..5000 {
                let here = format!("round {round} step {step}");
                let mut op = next(100);
                if backlog && (45..65).contains(&op) && next(10) != 0 {
                    op = next(45);
                }
                if pending.is_some() && (45..77).contains(&op) {
                    // Only pushes and stops happen inside a stop's walk.
                    let (p, n) = pending.take().unwrap();
                    forget_ready(&mut q, &at, p, n);
                }
                let queued = |want: &BTreeSet<(Reverse<i32>, u64)>, k: u64| {
                    want.iter().nth(k as usize % want.len().max(1)).map(|&(Reverse(p), id)| (p, id))
                };
                match op {
                    0..=44 => {
                        // A task becomes ready: usually the newest, sometimes an older one.
                        let id = if next(5) == 0 { 1 + next(ids) } else { fresh };
                        if id > ids || used[id as usize] {
                            continue;
                        }
                        used[id as usize] = true;
                        while fresh <= ids && used[fresh as usize] {
                            fresh += 1;
                        }
                        let p = next(spread) as i32 - (spread / 2) as i32;
                        at[id as usize] = Some(p);
                        want.insert((Reverse(p), id));
                        q.push(p, id);
                    }
                    45..=59 => {
                        // A worker takes the best task.
                        let got = loop {
                            match q.pop() {
                                Some((p, id)) if at[id as usize] != Some(p) => continue,
                                other => break other,
                            }
                        };
                        assert_eq!(got, want.pop_first().map(|(Reverse(p), id)| (p, id)), "{here}");
                        if let Some((p, id)) = got {
                            at[id as usize] = None;
                            q.taken(p);
                        }
                    }
                    60..=64 => {
                        // The best valid entry, stale ones before it popped; then
                        // sometimes taken as a refill of the lane takes it.
                        let front = loop {
                            match q.peek() {
                                Some((p, id)) if at[id as usize] != Some(p) => {
                                    q.pop();
                                }
                                other => break other,
                            }
                        };
                        assert_eq!(front, want.first().map(|&(Reverse(p), id)| (p, id)), "{here}");
                        if let (Some((p, id)), 0) = (front, next(2)) {
                            assert_eq!(q.pop(), Some((p, id)), "{here}");
                            q.taken(p);
                            at[id as usize] = None;
                            want.remove(&(Reverse(p), id));
                        }
                    }
                    65..=72 => {
                        // A priority change.
                        let Some((old, id)) = queued(&want, next(1 << 20)) else {
                            continue;
                        };
                        let p = next(spread + 1) as i32 - (spread / 2) as i32;
                        if p == old {
                            continue;
                        }
                        want.remove(&(Reverse(old), id));
                        at[id as usize] = None;
                        forget_ready(&mut q, &at, old, 1);
                        at[id as usize] = Some(p);
                        want.insert((Reverse(p), id));
                        q.push(p, id);
                    }
                    73..=76 => {
                        if let Some((p, n)) = pending.take() {
                            forget_ready(&mut q, &at, p, n);
                        }
                        // A stop's walk over a group: a run of queued tasks of one
                        // priority leaves, forgotten at once at the end of the run.
                        let Some((p, _)) = queued(&want, next(1 << 20)) else {
                            continue;
                        };
                        let leaving: Vec<u64> = want
                            .range((Reverse(p), 0)..=(Reverse(p), u64::MAX))
                            .map(|&(_, id)| id)
                            .filter(|_| next(2) == 0)
                            .collect();
                        for &id in &leaving {
                            want.remove(&(Reverse(p), id));
                            at[id as usize] = None;
                        }
                        pending = Some((p, leaving.len()));
                    }
                    77..=98 => {
                        // A task stopped alone (inside a stop's walk or not).
                        let Some((p, id)) = queued(&want, next(1 << 20)) else {
                            continue;
                        };
                        want.remove(&(Reverse(p), id));
                        at[id as usize] = None;
                        forget_ready(&mut q, &at, p, 1);
                    }
                    _ => {
                        if pending.is_none() && next(8) == 0 {
                            // `stop_all_queued`.
                            q.clear();
                            want.clear();
                            at.iter_mut().for_each(|a| *a = None);
                        }
                    }
                }
                check_levels(&q, pending.is_none(), &here);
                if pending.is_none() {
                    assert_eq!(q.len(), want.len(), "{here}");
                    let best = want.first().map(|&(Reverse(p), _)| p);
                    assert_eq!(q.top_priority(), best, "{here}");
                    for p in -(spread as i32) / 2 - 1..=(spread as i32).min(50) / 2 + 1 {
                        let has = want.range((Reverse(p), 0)..=(Reverse(p), u64::MAX)).next().is_some();
                        assert_eq!(q.has_priority(p), has, "{here}: priority {p}");
                    }
                }
            }
            if let Some((p, n)) = pending.take() {
                forget_ready(&mut q, &at, p, n);
            }
            let rest: Vec<(i32, u64)> = std::iter::from_fn(|| loop {
                let (p, id) = q.pop()?;
                if at[id as usize] == Some(p) {
                    at[id as usize] = None;
                    q.taken(p);
                    return Some((p, id));
                }
            })
            .collect();
            let want: Vec<(i32, u64)> = want.into_iter().map(|(Reverse(p), id)| (p, id)).collect();
            assert_eq!(rest, want, "round {round}: the drain");
            assert!(q.len() == 0 && q.top.is_none() && q.rest.is_empty(), "round {round}");
        }
        assert!(compactions[0] >= 10 && compactions[1] >= 10, "compactions: {compactions:?}");
    }
}
