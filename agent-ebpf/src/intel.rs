//! Threat intelligence in the kernel: destinations listed by the operator's feeds, matched with
//! LPM tries by the cgroup connect and sendmsg programs of every monitored container. The cost
//! is one or two trie lookups per connection or unconnected datagram; no userspace round trip.
//! (Listed file hashes are decided by the agent, which must read the file: see the agent's
//! intel wing.)
//!
//! Gating: `on_destination` is only reached for a task the membership check proved is in a
//! monitored container (DESIGN.md, Safety). Fail-open/closed: a lookup either finds an entry
//! or not; there is no kernel memory to fail reading here.

use agent_common::{
    ACTION_BLOCKED, CONTROL_INTEL, FAMILY_INET, FAMILY_INET6, INTEL_CONTAINERS_MAX,
    INTEL_V4_MAX_ENTRIES, INTEL_V6_MAX_ENTRIES, NET_OP_BIND,
};
use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, HashMap, LpmTrie},
};

use crate::{
    container::{action_for, Membership},
    net,
};

#[map]
pub static INTEL_V4: LpmTrie<[u8; 4], u32> = LpmTrie::pinned(INTEL_V4_MAX_ENTRIES, 0);

#[map]
pub static INTEL_V6: LpmTrie<[u8; 16], u32> = LpmTrie::pinned(INTEL_V6_MAX_ENTRIES, 0);

#[map]
pub static INTEL_MODE: HashMap<u64, u32> = HashMap::pinned(INTEL_CONTAINERS_MAX, 0);

/// The container's intel mode: its own entry, else the agent-wide default at key 0 (in force
/// from a new container's first connection, before the agent knows its image).
#[inline(always)]
fn mode(m: &Membership) -> u32 {
    // SAFETY (both): the value is copied out at once.
    if m.configured {
        if let Some(mode) = unsafe { INTEL_MODE.get(m.cgroup_id) } {
            return *mode;
        }
    }
    unsafe { INTEL_MODE.get(0u64) }.copied().unwrap_or(0)
}

/// Whether a feed lists the destination. `addr` is as the network programs hold it: IPv4 in
/// the first four bytes when `family` is `AF_INET`, which it also is for an IPv4-mapped IPv6
/// address (`sock_family` `AF_INET6`): that one is looked up as the IPv4 address, then as the
/// IPv6 address it also is, the same two lookups the agent's own matcher makes.
#[inline(always)]
pub fn listed(sock_family: u32, family: u32, addr: &[u8; 16]) -> bool {
    if family == FAMILY_INET {
        let v4 = Key::new(32, [addr[0], addr[1], addr[2], addr[3]]);
        if INTEL_V4.get(v4).is_some() {
            return true;
        }
        if sock_family != FAMILY_INET6 {
            return false;
        }
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..16].copy_from_slice(&addr[..4]);
        return INTEL_V6.get(Key::new(128, mapped)).is_some();
    }
    family == FAMILY_INET6 && INTEL_V6.get(Key::new(128, *addr)).is_some()
}

/// The intel verdict on a connection or datagram to a destination, for the cgroup sock_addr
/// programs, once the container's own network rules gave `rules_action`. `None` when no feed
/// lists the destination (or intel is off, or the rules already block it and intel only
/// audits): the rules' verdict and event stand. Otherwise the intel event is reported — one
/// event per operation, the stronger verdict — and its verdict returned: enforce refuses
/// (`EPERM`) even what the profile's egress allow list permits.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn on_destination(
    m: &Membership,
    op: u32,
    sock_family: u32,
    family: u32,
    addr: &[u8; 16],
    port: u16,
    proto: u32,
    rules_action: u32,
) -> Option<i32> {
    if op == NET_OP_BIND {
        return None;
    }
    let mode = mode(m);
    if mode == 0 || !listed(sock_family, family, addr) {
        return None;
    }
    let action = action_for(mode);
    if rules_action == ACTION_BLOCKED && action != ACTION_BLOCKED {
        return None;
    }
    net::emit_control(
        m.cgroup_id,
        op,
        family,
        proto,
        port,
        *addr,
        CONTROL_INTEL,
        action,
    );
    Some(net::verdict(action))
}

#[allow(dead_code)]
const _: () = assert!(FAMILY_INET != FAMILY_INET6);
