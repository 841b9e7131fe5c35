//! The ready queue: tasks whose upstream tasks are all done, ordered by
//! priority (higher first) and then by id (the order they were added).
//!
//! Each priority level keeps a FIFO of 32-bit offsets from a per-level base
//! id, the common case (tasks become ready in the order they were added), and
//! a min-heap for tasks that become ready out of order (a downstream task
//! unblocked after later tasks were queued, a priority change). Entries are
//! removed lazily: the caller validates a popped id against the task table and
//! reports removals with [`ReadyQueue::forget`], which drops a level (and its
//! stale entries) as soon as it holds no valid entry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

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

/// Largest FIFO or heap (in entries, 256 KiB of FIFO) a dropped level may
/// keep as the spare.
const SPARE_MAX: usize = 1 << 16;

/// Priority-ordered queue of ready task ids. Levels are kept in a vector
/// sorted by descending priority: hosts use a handful of priorities, so a
/// short binary search beats a tree, and the best level is always first.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    levels: Vec<(i32, Level)>,
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
        self.levels.iter().map(|(_, l)| l.fifo.len() + l.late.len()).sum()
    }

    fn find(&self, priority: i32) -> Result<usize, usize> {
        // Descending order: compare reversed.
        self.levels.binary_search_by(|(p, _)| priority.cmp(p))
    }

    pub(crate) fn push(&mut self, priority: i32, id: u64) {
        let i = match self.levels.first() {
            Some((p, _)) if *p == priority => 0,
            _ => match self.find(priority) {
                Ok(i) => i,
                Err(i) => {
                    let level = self.spare.take().unwrap_or_default();
                    self.levels.insert(i, (priority, level));
                    i
                }
            },
        };
        self.levels[i].1.push(id);
        self.valid += 1;
    }

    /// True if a task of `priority` is queued.
    #[inline]
    pub(crate) fn has_priority(&self, priority: i32) -> bool {
        self.valid > 0 && self.find(priority).is_ok()
    }

    /// The priority of the best level (which holds a valid entry).
    pub(crate) fn top_priority(&self) -> Option<i32> {
        self.levels.first().map(|(p, _)| *p)
    }

    /// The entry [`ReadyQueue::pop`] would return, without popping it.
    pub(crate) fn peek(&mut self) -> Option<(i32, u64)> {
        loop {
            let (priority, level) = self.levels.first()?;
            if let Some(id) = level.peek() {
                return Some((*priority, id));
            }
            self.drop_level(0);
        }
    }

    /// Pops the best candidate: `(priority, id)`. The caller must check that
    /// the task is still ready at that priority; if it is, it must call
    /// [`ReadyQueue::taken`]; if not, the entry was stale and is simply gone.
    pub(crate) fn pop(&mut self) -> Option<(i32, u64)> {
        loop {
            let (priority, level) = self.levels.first_mut()?;
            if let Some(id) = level.pop() {
                return Some((*priority, id));
            }
            self.drop_level(0);
        }
    }

    /// Removes level `i`, keeping its buffers as the spare unless they are
    /// big (a burst's buffers are given back, not kept for good).
    fn drop_level(&mut self, i: usize) {
        let (_, mut level) = self.levels.remove(i);
        if level.fifo.capacity() <= SPARE_MAX && level.late.capacity() <= SPARE_MAX {
            level.fifo.clear();
            level.late.clear();
            level.valid = 0;
            self.spare = Some(level);
        }
    }

    /// True if the level of `priority` holds more stale entries (of tasks
    /// that left it without being popped: stopped, re-prioritised) than
    /// twice its valid ones plus 64: the caller then compacts it with
    /// [`ReadyQueue::compact`]. A level is dropped, stale entries and all,
    /// once it holds no valid entry; one that always keeps one (a paused
    /// manager, or busy workers, with a task queued) would otherwise keep
    /// an entry for every task that ever left it.
    pub(crate) fn is_stale(&self, priority: i32) -> bool {
        match self.find(priority) {
            Ok(i) => {
                let level = &self.levels[i].1;
                level.fifo.len() + level.late.len() > 2 * level.valid + 64
            }
            Err(_) => false,
        }
    }

    /// Keeps, in the level of `priority`, the entries for which `valid` is
    /// true (each id once), in id order, in buffers sized for them.
    /// `valid` is the check a pop's caller makes: true for every task the
    /// level counts that is still queued at `priority`. The level's count
    /// is unchanged (a stop's walk may have removed tasks it forgets only
    /// later: their entries go now, their count with the forget).
    pub(crate) fn compact(&mut self, priority: i32, mut valid: impl FnMut(u64) -> bool) {
        let Ok(i) = self.find(priority) else {
            return;
        };
        let level = &mut self.levels[i].1;
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
        let i = match self.levels.first() {
            Some((p, _)) if *p == priority => 0,
            _ => match self.find(priority) {
                Ok(i) => i,
                Err(_) => return,
            },
        };
        let level = &mut self.levels[i].1;
        level.valid -= n;
        if level.valid == 0 {
            self.drop_level(i);
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
        assert!(q.levels.is_empty());
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
        assert!(q.levels.is_empty());
        assert_eq!(q.pop(), None);
    }
}
