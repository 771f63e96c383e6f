//! Every map the programs share with the agent. Names are the `MAP_*` constants of
//! agent-common (the statics are named the same). The shared maps are pinned by name in the
//! agent's bpffs directory, so a restarted agent adopts them (policy, process origins, and the
//! events written while it was away) instead of starting from nothing.

use agent_common::{
    ContainerPolicy, ContainerRoot, ExecEvent, LayoutStamp, NetRule, NetRuleKey, PathRuleKey,
    BACKEND_LSM, COUNTER_COUNT, HELD_EXECS_ENTRIES,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};

/// Default ring buffer size; the agent may resize it before load (`ringbuf_bytes`).
const RINGBUF_BYTES: u32 = 8 << 20;

#[map]
pub static EVENTS: RingBuf = RingBuf::pinned(RINGBUF_BYTES, 0);

#[map]
pub static AGENT_HEARTBEAT: Array<u64> = Array::pinned(1, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_COUNT, 0);

#[map]
pub static CONTAINER_PARENTS: HashMap<u64, u32> = HashMap::pinned(64, 0);

#[map]
pub static CONTAINERS: HashMap<u64, ContainerPolicy> = HashMap::pinned(8192, 0);

#[map]
pub static CONTAINER_INIT: HashMap<u64, u32> = HashMap::pinned(8192, 0);

#[map]
pub static TASK_ORIGIN: HashMap<u32, u32> = HashMap::pinned(131_072, 0);

#[map]
pub static PATH_RULES: HashMap<PathRuleKey, u32> = HashMap::pinned(16_384, 0);

#[map]
pub static NET_RULES: HashMap<NetRuleKey, NetRule> = HashMap::pinned(8192, 0);

#[map]
pub static CONTAINER_ROOTS: HashMap<u64, ContainerRoot> = HashMap::pinned(8192, 0);

/// Not pinned: the agent that loads the programs says which backend it attached.
#[map]
pub static BACKEND: Array<u32> = Array::with_max_entries(1, 0);

/// What layout the pinned maps have; written by the agent that created them, read by the
/// next one before it adopts them. No program uses it.
#[map]
pub static LAYOUT: Array<LayoutStamp> = Array::pinned(1, 0);

/// Execs stopped for the agent, by tgid (see `agent_common::MAP_HELD_EXECS`).
#[map]
pub static HELD_EXECS: HashMap<u32, ExecEvent> = HashMap::pinned(HELD_EXECS_ENTRIES, 0);

/// Per-CPU scratch for building an exec event (too big for the 512-byte stack).
#[map]
pub static SCRATCH_EXEC: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to a `COUNTER_*`.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *c += 1 };
    }
}

/// Whether the BPF LSM programs are live (the fallback-only heuristics then stand down).
#[inline(always)]
pub fn lsm_active() -> bool {
    BACKEND.get(0).is_some_and(|b| *b & BACKEND_LSM != 0)
}
