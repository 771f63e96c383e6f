//! Which kernel records the agent has written out, by their kernel sequence numbers, and the
//! gap an earlier agent left: records it read from the ring and never wrote before it died.
//!
//! The kernel numbers every record it writes per CPU, from 1 and without gaps (`agent-ebpf`'s
//! `emit`). The agent keeps, per CPU, the highest number below which it handled every record
//! and records it in the pinned `EVENT_SEQ` map after each batch reached its outputs. The next
//! agent compares the first records it reads (the backlog left in the ring) with that mark:
//! the numbers in between were consumed from the ring and never written out.
//!
//! Bounds, said plainly: a record can overtake another of the same CPU by a few places (it was
//! reserved before the other but numbered after), so small disorder is tolerated; and an agent
//! killed between writing a batch and recording it counts that batch (at most one loop turn of
//! records) as lost although it was written: loss is over-reported there, never hidden.

use std::collections::BTreeSet;

use agent_common::SEQ_CPU_SHIFT;

use crate::kernel::recovery::Sequence;

/// Out-of-order records kept per CPU before a missing number is given up on.
const AHEAD_MAX: usize = 1024;

/// Per-CPU marks of records handled.
#[derive(Debug, Default)]
pub(super) struct Handled {
    /// Per CPU: every record numbered up to this one was handled.
    mark: Vec<u64>,
    /// Per CPU: handled records above `mark + 1`, waiting for the numbers between.
    ahead: Vec<BTreeSet<u64>>,
    /// Numbers given up on (never arrived although later ones did).
    skipped: u64,
    dirty: bool,
    /// Until the earlier agent's backlog is read: where it stopped, and what the kernel had
    /// numbered when this agent started.
    startup: Option<Startup>,
}

#[derive(Debug)]
struct Startup {
    previous: Vec<u64>,
    assigned: Vec<u64>,
    first_seen: Vec<Option<u64>>,
}

/// What an earlier agent lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Gap {
    /// Records it read and never wrote, in total.
    pub lost: u64,
    /// (CPU, first lost number, last lost number) of each CPU that lost some.
    pub ranges: Vec<(usize, u64, u64)>,
}

fn split(seq: u64) -> (usize, u64) {
    (
        (seq >> SEQ_CPU_SHIFT) as usize,
        seq & ((1u64 << SEQ_CPU_SHIFT) - 1),
    )
}

impl Handled {
    /// Starts from what `EVENT_SEQ` holds as this agent starts.
    pub fn new(at_start: &Sequence) -> Handled {
        let cpus = at_start.assigned.len().max(at_start.handled.len());
        let mut previous = at_start.handled.clone();
        previous.resize(cpus, 0);
        let mut assigned = at_start.assigned.clone();
        assigned.resize(cpus, 0);
        Handled {
            mark: previous.clone(),
            ahead: vec![BTreeSet::new(); cpus],
            skipped: 0,
            dirty: false,
            startup: Some(Startup {
                previous,
                assigned,
                first_seen: vec![None; cpus],
            }),
        }
    }

    fn grow(&mut self, cpu: usize) {
        if cpu >= self.mark.len() {
            self.mark.resize(cpu + 1, 0);
            self.ahead.resize(cpu + 1, BTreeSet::new());
        }
    }

    /// A record was handled.
    pub fn record(&mut self, seq: u64) {
        if seq == 0 {
            return; // not numbered (a record of an earlier layout)
        }
        let (cpu, n) = split(seq);
        self.grow(cpu);
        if let Some(s) = &mut self.startup {
            if cpu >= s.first_seen.len() {
                s.first_seen.resize(cpu + 1, None);
            }
            let f = &mut s.first_seen[cpu];
            *f = Some(f.map_or(n, |f| f.min(n)));
            // The mark moves once the backlog tells where the gap ends.
            self.ahead[cpu].insert(n);
            return;
        }
        self.advance(cpu, n);
    }

    fn advance(&mut self, cpu: usize, n: u64) {
        let mark = &mut self.mark[cpu];
        let ahead = &mut self.ahead[cpu];
        if n <= *mark {
            return; // a duplicate (two programs nested on one CPU may share a number)
        }
        ahead.insert(n);
        while ahead.first() == Some(&(*mark + 1)) {
            ahead.pop_first();
            *mark += 1;
            self.dirty = true;
        }
        if ahead.len() > AHEAD_MAX {
            // A number that never came: give up on it (and anything else missing below the
            // oldest record waiting) rather than hold the mark back for ever.
            if let Some(&first) = ahead.first() {
                self.skipped += first - *mark - 1;
                *mark = first - 1;
                while ahead.first() == Some(&(*mark + 1)) {
                    ahead.pop_first();
                    *mark += 1;
                }
                self.dirty = true;
            }
        }
    }

    /// The earlier agent's backlog has been read: the gap it left, if any.
    pub fn backlog_read(&mut self) -> Option<Gap> {
        let s = self.startup.take()?;
        let mut gap = Gap {
            lost: 0,
            ranges: Vec::new(),
        };
        for cpu in 0..self.mark.len() {
            let previous = s.previous.get(cpu).copied().unwrap_or(0);
            let assigned = s.assigned.get(cpu).copied().unwrap_or(0);
            // Everything numbered before this agent started, from the earlier mark on, should
            // have been in the backlog; what is missing below the first record read is lost.
            let first = s.first_seen.get(cpu).copied().flatten();
            let end = first.map_or(assigned + 1, |f| f.min(assigned + 1));
            if end > previous + 1 {
                gap.lost += end - previous - 1;
                gap.ranges.push((cpu, previous + 1, end - 1));
            }
            self.mark[cpu] = self.mark[cpu].max(end.saturating_sub(1));
            self.dirty = true;
            let waiting: Vec<u64> = std::mem::take(&mut self.ahead[cpu]).into_iter().collect();
            for n in waiting {
                self.advance(cpu, n);
            }
        }
        (gap.lost > 0).then_some(gap)
    }

    /// The marks to record in `EVENT_SEQ`, when they moved since the last call.
    pub fn take_dirty(&mut self) -> Option<Vec<u64>> {
        if !self.dirty || self.startup.is_some() {
            return None;
        }
        self.dirty = false;
        Some(self.mark.clone())
    }

    /// Numbers given up on since the start (should stay 0).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(cpu: u64, n: u64) -> u64 {
        (cpu << SEQ_CPU_SHIFT) | n
    }

    fn start(assigned: Vec<u64>, handled: Vec<u64>) -> Handled {
        Handled::new(&Sequence { assigned, handled })
    }

    #[test]
    fn a_clean_restart_loses_nothing_and_the_mark_follows_the_records() {
        // The earlier agent handled 10 on CPU 0; 11 and 12 wait in the ring.
        let mut h = start(vec![12, 0], vec![10, 0]);
        h.record(seq(0, 11));
        h.record(seq(0, 12));
        assert_eq!(
            h.take_dirty(),
            None,
            "nothing recorded before the backlog is read"
        );
        assert_eq!(h.backlog_read(), None);
        assert_eq!(h.take_dirty(), Some(vec![12, 0]));
        h.record(seq(1, 1));
        h.record(seq(0, 14)); // overtook 13
        assert_eq!(h.take_dirty(), Some(vec![12, 1]));
        h.record(seq(0, 13));
        assert_eq!(h.take_dirty(), Some(vec![14, 1]));
        assert_eq!(h.take_dirty(), None);
    }

    #[test]
    fn records_read_and_never_written_by_the_earlier_agent_are_counted() {
        // CPU 0: handled up to 10, numbered up to 20, the ring still holds 16..=20: 11..=15
        // were read and lost. CPU 1: handled 3, numbered 7, nothing left: 4..=7 lost.
        let mut h = start(vec![20, 7], vec![10, 3]);
        for n in 16..=20 {
            h.record(seq(0, n));
        }
        h.record(seq(1, 8)); // written after the start
        let gap = h.backlog_read().expect("a gap");
        assert_eq!(gap.lost, 5 + 4);
        assert_eq!(gap.ranges, vec![(0, 11, 15), (1, 4, 7)]);
        assert_eq!(h.take_dirty(), Some(vec![20, 8]));
    }

    #[test]
    fn duplicates_are_ignored_and_a_number_that_never_comes_is_given_up_on() {
        let mut h = start(vec![0], vec![0]);
        assert_eq!(h.backlog_read(), None);
        h.record(seq(0, 1));
        h.record(seq(0, 1));
        assert_eq!(h.take_dirty(), Some(vec![1]));
        // 2 never arrives.
        for n in 3..(3 + AHEAD_MAX as u64 + 1) {
            h.record(seq(0, n));
        }
        assert_eq!(h.skipped(), 1);
        assert_eq!(h.take_dirty(), Some(vec![3 + AHEAD_MAX as u64]));
    }
}
