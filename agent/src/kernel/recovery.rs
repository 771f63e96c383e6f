//! The maps that let the agent account for faults instead of hiding them: execs the kernel
//! holds for it (`HELD_EXECS`), the kernel's record numbering beside the agent's high-water
//! mark (`EVENT_SEQ`), and what floods held back (`BUDGETS`, `SUPPRESSED`). Only the kernel
//! owner calls these methods, like every other map access.

use agent_common::{
    EventBudget, ExecEvent, SuppressedKey, MAP_BUDGETS, MAP_EVENT_SEQ, MAP_HELD_EXECS,
    MAP_SUPPRESSED, SEQ_ASSIGNED, SEQ_HANDLED,
};
use aya::{
    maps::{HashMap, MapData, PerCpuArray, PerCpuValues},
    Ebpf,
};

use super::{
    decode::{exec_record, KernelEvent},
    maps::{map_err, take, KernelError},
};

/// One exec the kernel stopped, as it recorded it.
#[derive(Debug, Clone)]
pub struct HeldExec {
    /// The stopped process.
    pub pid: u32,
    /// `bpf_ktime_get_boot_ns()` of the hold: with the pid, what identifies it.
    pub ktime_ns: u64,
    /// The exec record, exactly as the ring would have carried it.
    pub record: KernelEvent,
}

/// The kernel's count and the agent's high-water mark, per CPU (index = CPU).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequence {
    /// The last number each CPU stamped.
    pub assigned: Vec<u64>,
    /// The highest number of each CPU an agent recorded as written out.
    pub handled: Vec<u64>,
}

/// Held-back allowed records of one (container, kind, command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub cgroup_id: u64,
    /// `EVENT_*`.
    pub kind: u32,
    /// The command, or empty in softirq context.
    pub comm: String,
    pub count: u64,
}

pub struct RecoveryMaps {
    held: HashMap<MapData, u32, ExecEvent>,
    seq: PerCpuArray<MapData, u64>,
    budgets: HashMap<MapData, u64, EventBudget>,
    suppressed: HashMap<MapData, SuppressedKey, u64>,
}

impl RecoveryMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, KernelError> {
        Ok(Self {
            held: take(ebpf, MAP_HELD_EXECS)?,
            seq: take(ebpf, MAP_EVENT_SEQ)?,
            budgets: take(ebpf, MAP_BUDGETS)?,
            suppressed: take(ebpf, MAP_SUPPRESSED)?,
        })
    }

    /// Every exec held now (at most `HELD_EXECS_ENTRIES`).
    pub fn held(&self) -> Vec<HeldExec> {
        self.held
            .iter()
            .filter_map(Result::ok)
            .map(|(pid, e)| HeldExec {
                pid,
                ktime_ns: e.header.ktime_ns,
                record: exec_record(&e),
            })
            .collect()
    }

    /// Whether the hold of `pid` made at `ktime_ns` is still there (not decided, not exited).
    pub fn is_held(&self, pid: u32, ktime_ns: u64) -> bool {
        self.held
            .get(&pid, 0)
            .is_ok_and(|e| e.header.ktime_ns == ktime_ns)
    }

    /// Removes the hold of `pid` made at `ktime_ns` once it is decided; a newer hold of the
    /// same pid (it ran and was held again) stays.
    pub fn forget_held(&mut self, pid: u32, ktime_ns: u64) {
        if self.is_held(pid, ktime_ns) {
            let _ = self.held.remove(&pid);
        }
    }

    /// Removes every hold whatever it is (`seawall uninstall`: nothing enforces any more).
    pub fn forget_all_held(&mut self) {
        let pids: Vec<u32> = self.held.keys().filter_map(Result::ok).collect();
        for pid in pids {
            let _ = self.held.remove(&pid);
        }
    }

    pub fn sequence(&self) -> Result<Sequence, KernelError> {
        let read = |index: u32| -> Result<Vec<u64>, KernelError> {
            Ok(self
                .seq
                .get(&index, 0)
                .map_err(map_err(MAP_EVENT_SEQ))?
                .iter()
                .copied()
                .collect())
        };
        Ok(Sequence {
            assigned: read(SEQ_ASSIGNED)?,
            handled: read(SEQ_HANDLED)?,
        })
    }

    /// Records the agent's high-water mark, one value per CPU.
    pub fn set_handled(&mut self, per_cpu: Vec<u64>) -> Result<(), KernelError> {
        let values = PerCpuValues::try_from(per_cpu).map_err(|e| KernelError::Map {
            name: MAP_EVENT_SEQ,
            source: aya::maps::MapError::IoError(e),
        })?;
        self.seq
            .set(SEQ_HANDLED, values, 0)
            .map_err(map_err(MAP_EVENT_SEQ))
    }

    /// What floods held back since the last call (read and removed).
    pub fn take_suppressed(&mut self) -> Vec<Suppressed> {
        let entries: Vec<(SuppressedKey, u64)> =
            self.suppressed.iter().filter_map(Result::ok).collect();
        let mut out = Vec::with_capacity(entries.len());
        for (key, count) in entries {
            // A record counted between the read and the remove is lost to the breakdown only;
            // the per-CPU total (`COUNTER_SUPPRESSED`) keeps it.
            let _ = self.suppressed.remove(&key);
            out.push(Suppressed {
                cgroup_id: key.cgroup_id,
                kind: key.kind,
                comm: super::decode::c_str(&key.comm),
                count,
            });
        }
        out
    }

    /// Forgets a removed container's budget.
    pub fn forget_budget(&mut self, cgroup_id: u64) {
        let _ = self.budgets.remove(&cgroup_id);
    }

    pub fn held_count(&self) -> usize {
        self.held.keys().filter(Result::is_ok).count()
    }
}

/// `seawall uninstall`: resumes every process the kernel holds in the pinned `HELD_EXECS` of
/// `dir` (nothing will enforce a verdict on them any more) and empties the map. Returns how
/// many were resumed. Only stopped processes are signalled.
pub fn resume_all_held(dir: &std::path::Path) -> usize {
    let path = dir.join(MAP_HELD_EXECS);
    let Ok(data) = MapData::from_pin(&path) else {
        return 0;
    };
    let Ok(mut map) = HashMap::<MapData, u32, ExecEvent>::try_from(aya::maps::Map::HashMap(data))
    else {
        return 0;
    };
    let pids: Vec<u32> = map.keys().filter_map(Result::ok).collect();
    let mut resumed = 0;
    for pid in pids {
        let stopped = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.stat())
            .is_ok_and(|s| s.state == 'T');
        if stopped
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGCONT,
            )
            .is_ok()
        {
            resumed += 1;
        }
        let _ = map.remove(&pid);
    }
    resumed
}
