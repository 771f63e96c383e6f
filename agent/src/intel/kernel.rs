//! The agent's side of the intel and assurance maps: what the kernel owner writes. The tries'
//! keys are the address bytes in network order (the kernel reads the same bytes as 32-bit words).
//!
//! Feed changes are applied as "add, then remove", so a network listed before and after a
//! reload is never missing in between; LPM tries have no atomic swap, and they do not need one
//! for that guarantee.

use std::net::IpAddr;

use agent_common::{ASSURANCE_REFUSED, INTEL_LISTED, MAP_ASSURANCE, MAP_INTEL_V4, MAP_INTEL_V6};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap, MapData, MapError,
    },
    Ebpf,
};
use seawall_intel::IpNet;

use super::feeds::NetChanges;

/// A failed intel map operation.
#[derive(Debug, thiserror::Error)]
pub enum IntelMapError {
    /// The object has no such map (agent and kernel programs from different builds).
    #[error("the kernel object has no map {0}")]
    Missing(&'static str),
    /// The map syscall failed.
    #[error("map {map}")]
    Map {
        /// Which map.
        map: &'static str,
        /// What the kernel said.
        #[source]
        source: MapError,
    },
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> IntelMapError {
    move |source| IntelMapError::Map { map, source }
}

/// The LPM key of a network (IPv4 networks in the IPv4 trie; the feeds already stored
/// IPv4-mapped networks as IPv4).
pub enum TrieKey {
    /// For `INTEL_V4`.
    V4(Key<[u8; 4]>),
    /// For `INTEL_V6`.
    V6(Key<[u8; 16]>),
}

/// The key the kernel looks a network up with.
pub fn trie_key(net: IpNet) -> TrieKey {
    let prefix = u32::from(net.prefix_len());
    match net.addr() {
        IpAddr::V4(a) => TrieKey::V4(Key::new(prefix, a.octets())),
        IpAddr::V6(a) => TrieKey::V6(Key::new(prefix, a.octets())),
    }
}

/// The three maps, taken from the loaded object. (A container's intel mode is a field of its
/// `ContainerPolicy`, written with the rest of its policy.)
pub struct IntelMaps {
    v4: LpmTrie<MapData, [u8; 4], u32>,
    v6: LpmTrie<MapData, [u8; 16], u32>,
    assurance: HashMap<MapData, u64, u32>,
}

impl IntelMaps {
    /// Takes the maps out of the object (the kernel owner keeps them).
    pub fn take(ebpf: &mut Ebpf) -> Result<IntelMaps, IntelMapError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(IntelMapError::Missing(name));
        Ok(IntelMaps {
            v4: LpmTrie::try_from(take(MAP_INTEL_V4)?).map_err(map_err(MAP_INTEL_V4))?,
            v6: LpmTrie::try_from(take(MAP_INTEL_V6)?).map_err(map_err(MAP_INTEL_V6))?,
            assurance: HashMap::try_from(take(MAP_ASSURANCE)?).map_err(map_err(MAP_ASSURANCE))?,
        })
    }

    /// Adds the new networks, then removes the old ones.
    pub fn apply(&mut self, changes: &NetChanges) -> Result<(), IntelMapError> {
        for &net in &changes.add {
            match trie_key(net) {
                TrieKey::V4(k) => self
                    .v4
                    .insert(&k, INTEL_LISTED, 0)
                    .map_err(map_err(MAP_INTEL_V4))?,
                TrieKey::V6(k) => self
                    .v6
                    .insert(&k, INTEL_LISTED, 0)
                    .map_err(map_err(MAP_INTEL_V6))?,
            }
        }
        for &net in &changes.remove {
            // Already gone (e.g. a map adopted from an earlier agent) is the goal reached.
            let _ = match trie_key(net) {
                TrieKey::V4(k) => self.v4.remove(&k),
                TrieKey::V6(k) => self.v6.remove(&k),
            };
        }
        Ok(())
    }

    /// Every network the tries hold (to reconcile with maps adopted from an earlier agent).
    pub fn listed(&self) -> Vec<IpNet> {
        let v4 = self
            .v4
            .keys()
            .filter_map(Result::ok)
            .map(|k| IpNet::new_masked(IpAddr::from(k.data()), k.prefix_len() as u8));
        let v6 = self
            .v6
            .keys()
            .filter_map(Result::ok)
            .map(|k| IpNet::new_masked(IpAddr::from(k.data()), k.prefix_len() as u8));
        v4.chain(v6).collect()
    }

    /// Refuses every exec in the container (image assurance, enforce mode).
    pub fn refuse(&mut self, cgroup_id: u64) -> Result<(), IntelMapError> {
        self.assurance
            .insert(cgroup_id, ASSURANCE_REFUSED, 0)
            .map_err(map_err(MAP_ASSURANCE))
    }

    /// Forgets a container that is gone.
    pub fn forget(&mut self, cgroup_id: u64) {
        let _ = self.assurance.remove(&cgroup_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_network_order_with_the_prefix() {
        match trie_key(IpNet::parse("198.51.100.0/24").unwrap()) {
            TrieKey::V4(k) => {
                assert_eq!(k.prefix_len(), 24);
                assert_eq!(k.data(), [198, 51, 100, 0]);
            }
            TrieKey::V6(_) => panic!("IPv4 network in the IPv6 trie"),
        }
        match trie_key(IpNet::parse("::ffff:192.0.2.1").unwrap()) {
            TrieKey::V4(k) => assert_eq!((k.prefix_len(), k.data()), (32, [192, 0, 2, 1])),
            TrieKey::V6(_) => panic!("a mapped address belongs in the IPv4 trie"),
        }
        match trie_key(IpNet::parse("2001:db8::/32").unwrap()) {
            TrieKey::V6(k) => {
                assert_eq!(k.prefix_len(), 32);
                assert_eq!(k.data()[..4], [0x20, 0x01, 0x0d, 0xb8]);
            }
            TrieKey::V4(_) => panic!("IPv6 network in the IPv4 trie"),
        }
    }
}
