//! The process table: what the agent knows of each live process (for `ppid`, `exe`, `args` of
//! events the kernel sends without them), seeded from procfs at start and kept by
//! exec/fork/exit events. Bounded; entries go at exit.

use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub args: Vec<String>,
}

#[derive(Debug)]
pub struct ProcessTable {
    procs: HashMap<u32, ProcessInfo>,
    max: usize,
}

impl ProcessTable {
    pub fn new(max: usize) -> Self {
        Self {
            procs: HashMap::new(),
            max,
        }
    }

    pub fn insert(&mut self, pid: u32, info: ProcessInfo) {
        if self.procs.len() >= self.max && !self.procs.contains_key(&pid) {
            // Full: forget an arbitrary entry rather than grow without bound. The event that
            // needed it still carries what the kernel sent.
            if let Some(&victim) = self.procs.keys().next() {
                self.procs.remove(&victim);
            }
        }
        self.procs.insert(pid, info);
    }

    /// A fork: the child starts as a copy of its parent.
    pub fn fork(&mut self, parent: u32, child: u32) {
        let mut info = self.procs.get(&parent).cloned().unwrap_or_default();
        info.ppid = parent;
        self.insert(child, info);
    }

    pub fn exit(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.procs.get(&pid)
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}

/// One process from procfs, or None when it is gone.
pub fn read_proc(pid: u32) -> Option<ProcessInfo> {
    let process = procfs::process::Process::new(pid as i32).ok()?;
    let status = process.status().ok()?;
    Some(ProcessInfo {
        ppid: status.ppid.max(0) as u32,
        uid: status.ruid,
        comm: status.name,
        exe: process
            .exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        args: process.cmdline().unwrap_or_default(),
    })
}

/// The pids of every process now in `/proc`.
pub fn list_pids() -> Vec<u32> {
    procfs::process::all_processes()
        .map(|all| all.flatten().map(|p| p.pid() as u32).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_copies_the_parent_and_exit_forgets() {
        let mut t = ProcessTable::new(10);
        t.insert(
            10,
            ProcessInfo {
                ppid: 1,
                comm: "sh".into(),
                exe: "/bin/busybox".into(),
                ..Default::default()
            },
        );
        t.fork(10, 11);
        assert_eq!(t.get(11).unwrap().ppid, 10);
        assert_eq!(t.get(11).unwrap().exe, "/bin/busybox");
        t.exit(11);
        assert!(t.get(11).is_none());
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let mut t = ProcessTable::new(3);
        for pid in 0..10 {
            t.insert(pid, ProcessInfo::default());
        }
        assert_eq!(t.len(), 3);
        assert!(t.get(9).is_some(), "the newest entry is kept");
    }

    #[test]
    fn reads_our_own_process_from_procfs() {
        let me = read_proc(std::process::id()).expect("our own /proc entry");
        assert!(!me.comm.is_empty());
        assert!(!me.args.is_empty());
        assert!(list_pids().contains(&std::process::id()));
    }
}
