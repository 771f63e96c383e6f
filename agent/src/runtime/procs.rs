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

    /// Reads every process in `/proc` whose pid `keep` accepts.
    pub fn seed_from_procfs(&mut self, keep: impl Fn(u32) -> bool) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if keep(pid) {
                if let Some(info) = read_proc(pid) {
                    self.insert(pid, info);
                }
            }
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    Some(ProcessInfo {
        ppid: field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0),
        uid: field("Uid:")
            .and_then(|v| v.split_whitespace().next().and_then(|u| u.parse().ok()))
            .unwrap_or(0),
        comm: field("Name:").unwrap_or_default(),
        exe: std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        args: crate::kernel::decode::split_args(&cmdline),
    })
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
    }
}
