//! Threat intelligence in the kernel: destinations listed by the operator's feeds, matched with
//! LPM tries by the cgroup connect and sendmsg programs of every monitored container. The cost
//! is one or two trie lookups per connection or unconnected datagram; no userspace round trip.
//! (Listed file hashes are decided by the agent, which must read the file: see the agent's
//! intel wing.)
//!
//! The mode is the container's `ContainerPolicy::intel_mode` (the default policy's until the
//! container's own is written), so deciding costs no lookup beyond the trie's.
//!
//! Gating: `on_destination` is only reached for a task the membership check proved is in a
//! monitored container (DESIGN.md, Safety). Fail-open/closed: a lookup either finds an entry
//! or not; there is no kernel memory to fail reading here.

use agent_common::{
    ACTION_ALLOWED, ACTION_BLOCKED, CONTROL_INTEL, CONTROL_NETWORK, CONTROL_NONE, FAMILY_INET,
    INTEL_V4_MAX_ENTRIES, INTEL_V6_MAX_ENTRIES, NET_OP_BIND,
};
use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, LpmTrie},
};

use crate::container::{action_for, Membership};

#[map]
pub static INTEL_V4: LpmTrie<u32, u32> = LpmTrie::pinned(INTEL_V4_MAX_ENTRIES, 0);

#[map]
pub static INTEL_V6: LpmTrie<[u32; 4], u32> = LpmTrie::pinned(INTEL_V6_MAX_ENTRIES, 0);

/// Whether a feed lists the destination. `addr` is as the network programs hold it: IPv4 in
/// the first four bytes when `family` is `AF_INET`, which it also is for an IPv4-mapped IPv6
/// destination (the feeds store IPv4-mapped networks as IPv4, so one lookup decides). The key
/// is built from 32-bit words, in network byte order as the bytes are: no copy loop for the
/// verifier to walk (the rule loops that follow are what it spends its budget on).
#[inline(always)]
pub fn listed(family: u32, addr: &[u8; 16]) -> bool {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    if family == FAMILY_INET {
        INTEL_V4.get(Key::new(32, w(0))).is_some()
    } else {
        INTEL_V6
            .get(Key::new(128, [w(0), w(4), w(8), w(12)]))
            .is_some()
    }
}

/// The intel verdict on a connection or datagram, once the container's own network rules gave
/// `rules_action`: the control and action to report and enforce. A destination a feed lists
/// is refused (enforce) or reported (audit) even when the profile's egress allow list permits
/// it; when the rules already block, their verdict stands. One event per operation either way.
/// Decided after the rules, from their outcome, so the verifier walks the rule loops no more
/// often than before (`connect6` is close to its instruction budget).
#[inline(always)]
pub fn judge(
    m: &Membership,
    op: u32,
    family: u32,
    addr: &[u8; 16],
    rules_action: u32,
) -> (u32, u32) {
    let rules = if rules_action == ACTION_ALLOWED {
        (CONTROL_NONE, rules_action)
    } else {
        (CONTROL_NETWORK, rules_action)
    };
    let mode = m.policy.intel_mode;
    if mode == 0 || op == NET_OP_BIND || rules_action == ACTION_BLOCKED || !listed(family, addr) {
        return rules;
    }
    (CONTROL_INTEL, action_for(mode))
}
