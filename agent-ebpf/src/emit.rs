//! The one way records enter the ring buffer, so that every record is numbered and, under a
//! flood, the records that matter keep their room.
//!
//! - Every record written gets the next number of its CPU (`EVENT_SEQ[SEQ_ASSIGNED]`), taken
//!   only once its reservation succeeded, so the numbers have no gaps. An agent that crashed
//!   after reading records and before writing them out leaves a gap its successor counts.
//! - A record is *critical* when it is blocked or audited, or when the agent needs it to keep
//!   policy right (a new container cgroup, a held exec). Critical records are written whenever
//!   the ring has room. Allowed records are held back when their container has spent its
//!   budget for this second (`EVENT_BUDGET`, set by the loader; 0 means no budget) or when the
//!   ring is more than half full, so one container's fork, exec or connect storm can neither
//!   push another's blocked events out of the ring nor starve the agent. What is held back is
//!   counted in total (`COUNTER_SUPPRESSED`, per CPU: exact) and per container, kind and
//!   command (`SUPPRESSED`, `BUDGETS`: plain increments, so CPUs racing on one container may
//!   lose a few); the agent reports both. Nothing here ever blocks an operation.

use agent_common::{
    EventBudget, EventHeader, SuppressedKey, ACTION_ALLOWED, BUDGETS_ENTRIES,
    COUNTER_RINGBUF_DROPS, COUNTER_SUPPRESSED, SEQ_ASSIGNED, SEQ_CPU_SHIFT, SUPPRESSED_ENTRIES,
};
use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    helpers::{
        bpf_get_current_comm, bpf_probe_read_kernel_buf,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    },
    macros::map,
    maps::{ring_buf::RingBufEntry, LruHashMap, PerCpuArray},
};

use crate::maps::{count, EVENTS};

/// Allowed records one container may write per second (0: no limit). Set by the loader.
#[unsafe(no_mangle)]
static EVENT_BUDGET: u32 = 0;

/// Window of the per-container budget.
const BUDGET_WINDOW_NS: u64 = 1_000_000_000;

#[map]
pub static EVENT_SEQ: PerCpuArray<u64> = PerCpuArray::pinned(2, 0);

#[map]
static BUDGETS: LruHashMap<u64, EventBudget> = LruHashMap::pinned(BUDGETS_ENTRIES, 0);

#[map]
static SUPPRESSED: LruHashMap<SuppressedKey, u64> = LruHashMap::pinned(SUPPRESSED_ENTRIES, 0);

/// A ring record: `#[repr(C)]` with its [`EventHeader`] first.
///
/// # Safety
/// Implementors must start with an `EventHeader` at offset 0.
pub unsafe trait Record {}

// SAFETY: each of these starts with its `header: EventHeader` field (agent-common).
unsafe impl Record for agent_common::ExecEvent {}
unsafe impl Record for agent_common::ForkEvent {}
unsafe impl Record for agent_common::ExitEvent {}
unsafe impl Record for agent_common::NetEvent {}
unsafe impl Record for agent_common::FileEvent {}
unsafe impl Record for agent_common::CgroupEvent {}

/// Where the record comes from, for what is counted when it is held back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A task's own syscall or exec: its command names the binary.
    Task,
    /// Softirq or another task's context: no command to blame.
    Kernel,
}

/// Whether a record of `kind` from `container` with `action` may take ring space now.
/// `critical` records (and every blocked or audited one) always may; an allowed one only
/// within its container's budget and while the ring is at most half full. A record held back
/// is counted here, so the caller just returns.
#[inline(always)]
pub fn admit(container: u64, kind: u32, action: u32, critical: bool, ctx: Context) -> bool {
    if critical || action != ACTION_ALLOWED {
        return true;
    }
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    let used = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if used <= size / 2 && within_budget(container) {
        return true;
    }
    suppress(container, kind, ctx);
    false
}

#[inline(always)]
fn within_budget(container: u64) -> bool {
    // SAFETY: a read-only global; the volatile read defeats constant folding.
    let limit = unsafe { core::ptr::read_volatile(&EVENT_BUDGET) };
    if limit == 0 {
        return true;
    }
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match BUDGETS.get_ptr_mut(container) {
        Some(b) => {
            // SAFETY: a map value; racing CPUs may lose an increment, which only makes the
            // budget a little looser, never a record lost unaccounted.
            unsafe {
                if now.wrapping_sub((*b).window_start_ns) >= BUDGET_WINDOW_NS {
                    (*b).window_start_ns = now;
                    (*b).used = 0;
                }
                if (*b).used >= limit {
                    return false;
                }
                (*b).used += 1;
            }
            true
        }
        None => {
            let fresh = EventBudget {
                window_start_ns: now,
                used: 1,
                _pad: 0,
                suppressed: 0,
            };
            let _ = BUDGETS.insert(container, fresh, BPF_NOEXIST as u64);
            true
        }
    }
}

/// Counts a held-back record: in total, for its container, and by kind and command.
#[inline(always)]
fn suppress(container: u64, kind: u32, ctx: Context) {
    count(COUNTER_SUPPRESSED);
    if let Some(b) = BUDGETS.get_ptr_mut(container) {
        // SAFETY: a map value (see the module comment on racing CPUs).
        unsafe { (*b).suppressed += 1 };
    }
    let key = SuppressedKey {
        cgroup_id: container,
        kind,
        _pad: 0,
        comm: match ctx {
            Context::Task => bpf_get_current_comm().unwrap_or([0; 16]),
            Context::Kernel => [0; 16],
        },
    };
    match SUPPRESSED.get_ptr_mut(key) {
        // SAFETY: as above.
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = SUPPRESSED.insert(key, 1u64, BPF_NOEXIST as u64);
        }
    }
}

/// The next number of this CPU, with the CPU in the top bits.
#[inline(always)]
fn next_seq() -> u64 {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    match EVENT_SEQ.get_ptr_mut(SEQ_ASSIGNED) {
        // SAFETY: this CPU's slot. A program nested on the same CPU (a softirq) may read the
        // same count and write the same number: a duplicate, never a gap.
        Some(n) => unsafe {
            *n += 1;
            (cpu << SEQ_CPU_SHIFT) | *n
        },
        None => 0,
    }
}

/// Numbers a filled reservation and hands it to the reader.
#[inline(always)]
pub fn submit<T: Record>(mut entry: RingBufEntry<T>) {
    let header = entry.as_mut_ptr() as *mut EventHeader;
    // SAFETY: `T: Record` starts with its header; the reservation is ours until submitted.
    unsafe { (*header).seq = next_seq() };
    entry.submit(0);
}

/// Writes a record built elsewhere (a per-CPU scratch or the stack) to the ring: reserved,
/// copied, numbered, submitted. Callers decide [`admit`] first. Counts a full ring.
#[inline(always)]
pub fn copy<T: Record + 'static>(ev: &T) -> bool {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return false;
    };
    // SAFETY: the reservation is `size_of::<T>()` bytes and ours until submitted; the source
    // is a valid `T`.
    let copied = unsafe {
        let dst = core::slice::from_raw_parts_mut(
            entry.as_mut_ptr() as *mut u8,
            core::mem::size_of::<T>(),
        );
        bpf_probe_read_kernel_buf(ev as *const T as *const u8, dst).is_ok()
    };
    if !copied {
        // Cannot happen for our own memory; a discarded reservation takes no number.
        entry.discard(0);
        count(COUNTER_RINGBUF_DROPS);
        return false;
    }
    submit(entry);
    true
}
