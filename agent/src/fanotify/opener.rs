//! Who is waiting for an answer: the blocked opener's cgroup and pending syscall, read from
//! `/proc/<tid>/cgroup` and `/proc/<tid>/syscall` through descriptors kept open per thread.
//!
//! Why cached descriptors are sound: an open `/proc/<tid>/…` file belongs to the very task it
//! was opened for (its inode holds the task's `struct pid`), not to whichever task later gets
//! the number; and reading it again at offset 0 regenerates its content (procfs' `seq_file`).
//! So a cached descriptor always tells where that task is *now* — a cgroup move shows at the
//! next read — and once the task is gone it reads as `ESRCH`: only then is the number opened
//! again, and what it names then is the new task. A reused pid is never answered with the
//! cgroup or the syscall of the task that had it before. Each fact costs one `pread` per event
//! instead of procfs' two opens, two reads and two closes (and std's buffer-size probe).

use std::{collections::HashMap, io::Write, os::fd::OwnedFd};

use nix::{
    fcntl::{open, OFlag},
    sys::{stat::Mode, uio::pread},
};

/// Most threads whose files stay open (at most two descriptors each); past it, one entry is
/// closed per new thread. Entries of exited threads go when they are next read, evicted, or
/// when the group has been idle for a poll interval.
const MAX_TASKS: usize = 128;

/// Which file of `/proc/<tid>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskFile {
    /// `cgroup`: the task's cgroup on each hierarchy.
    Cgroup,
    /// `syscall`: the syscall the task is blocked in, with its arguments.
    Syscall,
}

impl TaskFile {
    fn name(self) -> &'static str {
        match self {
            TaskFile::Cgroup => "cgroup",
            TaskFile::Syscall => "syscall",
        }
    }
}

#[derive(Default)]
struct Files {
    cgroup: Option<OwnedFd>,
    syscall: Option<OwnedFd>,
}

impl Files {
    fn slot(&mut self, file: TaskFile) -> &mut Option<OwnedFd> {
        match file {
            TaskFile::Cgroup => &mut self.cgroup,
            TaskFile::Syscall => &mut self.syscall,
        }
    }
}

/// Open `/proc/<tid>/` files of the threads that opened watched files lately.
#[derive(Default)]
pub(super) struct TaskFiles {
    tasks: HashMap<u32, Files>,
}

impl TaskFiles {
    /// The content of `/proc/<tid>/<file>` as the task is now, read into `buf`; `None` when no
    /// task has that id, the file cannot be read, or the content fills `buf` (it may be cut).
    pub fn read<'b>(&mut self, tid: u32, file: TaskFile, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let n = self.read_len(tid, file, buf)?;
        buf.get(..n)
    }

    fn read_len(&mut self, tid: u32, file: TaskFile, buf: &mut [u8]) -> Option<usize> {
        let cached = self
            .tasks
            .get_mut(&tid)
            .and_then(|f| f.slot(file).as_ref().map(|fd| pread(fd, buf, 0)));
        match cached {
            Some(Ok(n)) if n > 0 && n < buf.len() => return Some(n),
            Some(Ok(n)) if n == buf.len() => return None,
            // ESRCH: the task is gone; whatever has the number now is another task.
            Some(_) => {
                self.tasks.remove(&tid);
            }
            None => {}
        }
        let fd = open_task_file(tid, file)?;
        let n = pread(&fd, buf, 0)
            .ok()
            .filter(|&n| n > 0 && n < buf.len())?;
        if self.tasks.len() >= MAX_TASKS && !self.tasks.contains_key(&tid) {
            if let Some(old) = self.tasks.keys().next().copied() {
                self.tasks.remove(&old);
            }
        }
        *self.tasks.entry(tid).or_default().slot(file) = Some(fd);
        Some(n)
    }

    /// Closes every cached file (the group went idle: the threads may be gone).
    pub fn clear(&mut self) {
        self.tasks.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Caches `fd` as thread `tid`'s file, whatever task it was opened for (tests stand in a
    /// pid that was reused with it).
    #[cfg(test)]
    fn insert(&mut self, tid: u32, file: TaskFile, fd: OwnedFd) {
        *self.tasks.entry(tid).or_default().slot(file) = Some(fd);
    }
}

fn open_task_file(tid: u32, file: TaskFile) -> Option<OwnedFd> {
    let mut path = [0u8; 48];
    let len = {
        let mut w = &mut path[..];
        write!(w, "/proc/{tid}/{}", file.name()).ok()?;
        48 - w.len()
    };
    open(
        &path[..len],
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::Read,
        os::unix::net::UnixStream,
        process::{Command, Stdio},
    };

    fn gettid() -> u32 {
        nix::unistd::gettid().as_raw() as u32
    }

    /// The first argument of the syscall thread `tid` is blocked in, as `/proc` shows it.
    fn first_arg(files: &mut TaskFiles, tid: u32) -> Option<String> {
        let mut buf = [0u8; 512];
        let text = files.read(tid, TaskFile::Syscall, &mut buf)?;
        let text = std::str::from_utf8(text).ok()?;
        text.split_whitespace().nth(1).map(str::to_owned)
    }

    fn wait_for_arg(files: &mut TaskFiles, tid: u32, want: &str) {
        for _ in 0..500 {
            if first_arg(files, tid).as_deref() == Some(want) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "thread {tid} never showed {want}: {:?}",
            first_arg(files, tid)
        );
    }

    #[test]
    fn a_cached_file_reads_what_the_task_does_now() {
        // A thread blocked in read(2) on one socket, then on another: the same cached
        // descriptor must show the second fd, not the first read's content again.
        let (mut a, a_peer) = UnixStream::pair().unwrap();
        let (b, b_peer) = UnixStream::pair().unwrap();
        use std::os::fd::AsRawFd;
        let (fa, fb) = (a_peer.as_raw_fd(), b_peer.as_raw_fd());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let (mut a_peer, mut b_peer) = (a_peer, b_peer);
            let mut byte = [0u8; 1];
            a_peer.read_exact(&mut byte).unwrap();
            b_peer.read_exact(&mut byte).unwrap();
        });
        let tid = rx.recv().unwrap();
        let mut files = TaskFiles::default();
        wait_for_arg(&mut files, tid, &format!("0x{fa:x}"));
        assert_eq!(files.len(), 1, "the file stays open");
        std::io::Write::write_all(&mut a, b"x").unwrap();
        wait_for_arg(&mut files, tid, &format!("0x{fb:x}"));
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        reader.join().unwrap();
        // The thread is gone: its cached file reads ESRCH, and its id names no task.
        assert_eq!(first_arg(&mut files, tid), None);
        assert_eq!(files.len(), 0, "the exited thread's entry is dropped");
    }

    #[test]
    fn a_reused_pid_is_never_answered_with_the_old_tasks_file() {
        // Stand-in for pid reuse: the cache holds, under a live child's pid, the cgroup file
        // of a task that has exited. The answer must be the live child's own, read afresh.
        let mut dead = Command::new("true").spawn().unwrap();
        let dead_file = open_task_file(dead.id(), TaskFile::Cgroup).unwrap();
        dead.wait().unwrap();
        let mut live = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut files = TaskFiles::default();
        files.insert(live.id(), TaskFile::Cgroup, dead_file);
        let mut buf = [0u8; 4096];
        let got = files
            .read(live.id(), TaskFile::Cgroup, &mut buf)
            .map(<[u8]>::to_vec);
        let want = std::fs::read(format!("/proc/{}/cgroup", live.id())).unwrap();
        live.kill().unwrap();
        live.wait().unwrap();
        assert_eq!(got.as_deref(), Some(&want[..]));
    }

    #[test]
    fn a_task_moved_to_another_cgroup_is_read_in_its_new_cgroup() {
        let Some(root) = crate::runtime::cgroup::cgroup2_root()
            .ok()
            // SAFETY: geteuid has no preconditions and cannot fail.
            .filter(|_| unsafe { libc::geteuid() } == 0)
        else {
            let msg = "SKIP: moving a task between cgroups needs root and a cgroup v2 mount";
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("{msg}");
            return;
        };
        let scratch = root.join(format!("seawall-test-opener-{}", std::process::id()));
        std::fs::create_dir(&scratch).unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut files = TaskFiles::default();
        let unified = |files: &mut TaskFiles| {
            let mut buf = [0u8; 4096];
            let text = files.read(pid, TaskFile::Cgroup, &mut buf)?;
            crate::runtime::cgroup::unified_path_bytes(text).map(<[u8]>::to_vec)
        };
        let before = unified(&mut files);
        let moved = std::fs::write(scratch.join("cgroup.procs"), pid.to_string());
        let after = unified(&mut files);
        let original = std::fs::read_to_string(format!("/proc/{}/cgroup", std::process::id()))
            .ok()
            .and_then(|t| {
                crate::runtime::cgroup::unified_path_bytes(t.as_bytes()).map(<[u8]>::to_vec)
            });
        // Back out before asserting, so a failure leaves nothing behind.
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir(&scratch).unwrap();
        moved.unwrap();
        assert_eq!(before, original, "the child starts in the test's cgroup");
        let name = scratch.file_name().unwrap().to_str().unwrap();
        assert_eq!(after, Some(format!("/{name}").into_bytes()));
        assert_eq!(files.len(), 1, "one cached file, read twice");
    }

    #[test]
    fn a_new_thread_never_grows_a_full_cache() {
        let mut files = TaskFiles::default();
        for fake in 0..MAX_TASKS as u32 {
            files.tasks.insert(u32::MAX - fake, Files::default());
        }
        let mut buf = [0u8; 4096];
        assert!(files.read(gettid(), TaskFile::Cgroup, &mut buf).is_some());
        assert_eq!(files.len(), MAX_TASKS);
        assert!(files.tasks.contains_key(&gettid()));
        files.clear();
        assert_eq!(files.len(), 0);
    }
}
