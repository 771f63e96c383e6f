//! Work done inside the tree's Landlock domain: sockets the supervisor creates, connects, binds
//! and sends on for the tree. Done from a thread in the same domain, the kernel judges these
//! calls as it would the tree's own (TCP port rules, abstract unix socket scope, where a unix
//! socket file may be created). The tree itself sits one layer deeper, which adds only a signal
//! scope: it cannot signal these threads.
//!
//! Landlock domains belong to threads and are inherited by the threads they create, so one
//! thread enters the domain and every worker is spawned by it. Workers may block (a connect to
//! a slow peer), so the pool grows when all are busy.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

/// A unit of work for a domain worker.
pub type Job = Box<dyn FnOnce() + Send>;

/// More workers than this and jobs wait for one to finish.
const MAX_WORKERS: usize = 64;
const INITIAL_WORKERS: usize = 2;

struct Pool {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
    idle: AtomicUsize,
    workers: AtomicUsize,
    /// Asks the domain thread for one more worker.
    spawn: mpsc::Sender<()>,
}

/// Handle to the domain's workers. Cheap to clone.
#[derive(Clone)]
pub struct Domain {
    pool: Arc<Pool>,
}

impl Domain {
    /// Starts the domain thread: it runs `enter` (which must put the thread in the domain and
    /// may start the tree), then, if that succeeded, spawns workers on demand.
    pub fn start(enter: impl FnOnce() -> bool + Send + 'static) -> Domain {
        let (spawn, spawn_rx) = mpsc::channel::<()>();
        let pool = Arc::new(Pool {
            jobs: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            spawn,
        });
        let p = pool.clone();
        let _ = std::thread::Builder::new()
            .name("seawall-domain".into())
            .spawn(move || {
                if !enter() {
                    return;
                }
                for _ in 0..INITIAL_WORKERS {
                    spawn_worker(&p);
                }
                for () in spawn_rx {
                    if p.idle.load(Ordering::SeqCst) == 0
                        && p.workers.load(Ordering::SeqCst) < MAX_WORKERS
                    {
                        spawn_worker(&p);
                    }
                }
            });
        Domain { pool }
    }

    /// Runs `job` on a worker inside the domain.
    pub fn submit(&self, job: Job) {
        self.lock().push_back(job);
        self.pool.ready.notify_one();
        if self.pool.idle.load(Ordering::SeqCst) == 0 {
            let _ = self.pool.spawn.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        // A job that panicked leaves the queue itself intact.
        self.pool.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn spawn_worker(pool: &Arc<Pool>) {
    let p = pool.clone();
    let spawned = std::thread::Builder::new()
        .name("seawall-worker".into())
        .spawn(move || {
            // Each worker gets its own cwd and umask, to act in the caller's directory when
            // binding or connecting a unix socket by a relative path.
            // SAFETY: unshare of this thread's fs context only.
            unsafe { libc::unshare(libc::CLONE_FS) };
            p.idle.fetch_add(1, Ordering::SeqCst);
            loop {
                let job = {
                    let mut q = p.jobs.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(j) = q.pop_front() {
                            // Taking the last idle worker with work still queued: ask for one
                            // more, or that work waits for this job, however long it blocks.
                            if !q.is_empty() && p.idle.load(Ordering::SeqCst) <= 1 {
                                let _ = p.spawn.send(());
                            }
                            break j;
                        }
                        q = p.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                p.idle.fetch_sub(1, Ordering::SeqCst);
                job();
                p.idle.fetch_add(1, Ordering::SeqCst);
            }
        });
    if spawned.is_ok() {
        pool.workers.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jobs_run_on_workers_spawned_by_the_domain_thread_and_the_pool_grows() {
        let d = Domain::start(|| true);
        let (tx, rx) = mpsc::channel();
        // Five jobs that all block until released: more than the initial workers.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        for i in 0..5 {
            let tx = tx.clone();
            let gate = gate.clone();
            d.submit(Box::new(move || {
                let (m, c) = &*gate;
                let mut open = m.lock().unwrap();
                while !*open {
                    open = c.wait(open).unwrap();
                }
                let _ = tx.send(i);
            }));
        }
        std::thread::sleep(Duration::from_millis(200));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let mut got: Vec<i32> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }
}
