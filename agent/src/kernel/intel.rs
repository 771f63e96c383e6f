//! The intel and assurance maps, as the kernel owner writes them: the LPM tries of the networks
//! the feeds list (`INTEL_V4`, `INTEL_V6`) and the containers image assurance refused
//! (`ASSURANCE`). A container's intel mode is a field of its `ContainerPolicy`, written with the
//! rest of its policy.
//!
//! The tries' keys are the address bytes in network order, as the kernel reads them (as 32-bit
//! words of the same bytes). Feed changes are applied "add, then remove", so a network listed
//! before and after a reload is never missing in between: LPM tries have no atomic swap, and
//! that guarantee does not need one.

use std::{collections::HashSet, net::IpAddr};

use agent_common::{ASSURANCE_REFUSED, INTEL_LISTED, MAP_ASSURANCE, MAP_INTEL_V4, MAP_INTEL_V6};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap, MapData, MapError,
    },
    Ebpf,
};
use seawall_intel::IpNet;
use tokio::sync::oneshot;

use super::{
    maps::KernelError,
    owner::{Command, KernelHandle},
};

/// The LPM key of a network: IPv4 networks in the IPv4 trie (the feeds already store
/// IPv4-mapped networks as IPv4, and the kernel looks a mapped destination up as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrieKey {
    /// For `INTEL_V4`.
    V4(u32, [u8; 4]),
    /// For `INTEL_V6`.
    V6(u32, [u8; 16]),
}

impl TrieKey {
    /// The key the kernel looks `net` up with.
    pub fn of(net: IpNet) -> TrieKey {
        let prefix = u32::from(net.prefix_len());
        match net.addr() {
            IpAddr::V4(a) => TrieKey::V4(prefix, a.octets()),
            IpAddr::V6(a) => TrieKey::V6(prefix, a.octets()),
        }
    }
}

/// What the owner is asked to do with the intel maps.
pub(super) enum IntelCommand {
    /// Make the tries hold exactly these networks (at start, over maps an earlier agent may
    /// have left pinned).
    Sync {
        nets: Vec<IpNet>,
        reply: oneshot::Sender<Result<(), KernelError>>,
    },
    /// Add these networks, then remove those (a reload).
    Apply {
        add: Vec<IpNet>,
        remove: Vec<IpNet>,
        reply: oneshot::Sender<Result<(), KernelError>>,
    },
    /// Refuse (or stop refusing) every exec in a container.
    Assurance {
        cgroup_id: u64,
        refused: bool,
        reply: oneshot::Sender<Result<(), KernelError>>,
    },
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> KernelError {
    move |source| KernelError::Map { name, source }
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, KernelError> {
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}

/// The three maps, held by the kernel owner.
pub struct IntelMaps {
    v4: LpmTrie<MapData, [u8; 4], u32>,
    v6: LpmTrie<MapData, [u8; 16], u32>,
    assurance: HashMap<MapData, u64, u32>,
}

impl IntelMaps {
    /// Takes the maps out of the loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<IntelMaps, KernelError> {
        Ok(IntelMaps {
            v4: take(ebpf, MAP_INTEL_V4)?,
            v6: take(ebpf, MAP_INTEL_V6)?,
            assurance: take(ebpf, MAP_ASSURANCE)?,
        })
    }

    /// Runs one command (on the owner thread).
    pub(super) fn serve(&mut self, command: IntelCommand) {
        // A reply nobody waits for any more is not an error.
        match command {
            IntelCommand::Sync { nets, reply } => {
                let _ = reply.send(self.sync(nets));
            }
            IntelCommand::Apply { add, remove, reply } => {
                let _ = reply.send(self.apply(&add, &remove));
            }
            IntelCommand::Assurance {
                cgroup_id,
                refused,
                reply,
            } => {
                let _ = reply.send(self.set_refused(cgroup_id, refused));
            }
        }
    }

    fn sync(&mut self, nets: Vec<IpNet>) -> Result<(), KernelError> {
        let wanted: HashSet<TrieKey> = nets.into_iter().map(TrieKey::of).collect();
        let held = self.listed();
        let add: Vec<TrieKey> = wanted.difference(&held).copied().collect();
        let remove: Vec<TrieKey> = held.difference(&wanted).copied().collect();
        self.write(&add, &remove)
    }

    fn apply(&mut self, add: &[IpNet], remove: &[IpNet]) -> Result<(), KernelError> {
        let keys = |nets: &[IpNet]| nets.iter().map(|n| TrieKey::of(*n)).collect::<Vec<_>>();
        self.write(&keys(add), &keys(remove))
    }

    fn write(&mut self, add: &[TrieKey], remove: &[TrieKey]) -> Result<(), KernelError> {
        for key in add {
            match *key {
                TrieKey::V4(p, a) => self
                    .v4
                    .insert(&Key::new(p, a), INTEL_LISTED, 0)
                    .map_err(map_err(MAP_INTEL_V4))?,
                TrieKey::V6(p, a) => self
                    .v6
                    .insert(&Key::new(p, a), INTEL_LISTED, 0)
                    .map_err(map_err(MAP_INTEL_V6))?,
            }
        }
        for key in remove {
            // Already gone is the goal reached.
            let _ = match *key {
                TrieKey::V4(p, a) => self.v4.remove(&Key::new(p, a)),
                TrieKey::V6(p, a) => self.v6.remove(&Key::new(p, a)),
            };
        }
        Ok(())
    }

    /// Every key the tries hold.
    fn listed(&self) -> HashSet<TrieKey> {
        let v4 = self
            .v4
            .keys()
            .filter_map(Result::ok)
            .map(|k| TrieKey::V4(k.prefix_len(), k.data()));
        let v6 = self
            .v6
            .keys()
            .filter_map(Result::ok)
            .map(|k| TrieKey::V6(k.prefix_len(), k.data()));
        v4.chain(v6).collect()
    }

    fn set_refused(&mut self, cgroup_id: u64, refused: bool) -> Result<(), KernelError> {
        if refused {
            self.assurance
                .insert(cgroup_id, ASSURANCE_REFUSED, 0)
                .map_err(map_err(MAP_ASSURANCE))
        } else {
            self.forget(cgroup_id);
            Ok(())
        }
    }

    /// Forgets a container that is gone.
    pub fn forget(&mut self, cgroup_id: u64) {
        let _ = self.assurance.remove(&cgroup_id);
    }
}

impl KernelHandle {
    async fn intel(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), KernelError>>) -> IntelCommand,
    ) -> Result<(), KernelError> {
        self.ask(|reply| Command::Intel(command(reply))).await?
    }

    /// Makes the tries hold exactly `nets`.
    pub async fn sync_intel_nets(&self, nets: Vec<IpNet>) -> Result<(), KernelError> {
        self.intel(|reply| IntelCommand::Sync { nets, reply }).await
    }

    /// Adds `add`, then removes `remove`.
    pub async fn apply_intel_nets(
        &self,
        add: Vec<IpNet>,
        remove: Vec<IpNet>,
    ) -> Result<(), KernelError> {
        self.intel(|reply| IntelCommand::Apply { add, remove, reply })
            .await
    }

    /// Refuses every exec in the container (`refused`), or stops refusing them.
    pub async fn set_assurance_refused(
        &self,
        cgroup_id: u64,
        refused: bool,
    ) -> Result<(), KernelError> {
        self.intel(|reply| IntelCommand::Assurance {
            cgroup_id,
            refused,
            reply,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_network_order_with_the_prefix_and_mapped_addresses_are_ipv4() {
        let key = |s: &str| TrieKey::of(IpNet::parse(s).unwrap());
        assert_eq!(key("198.51.100.0/24"), TrieKey::V4(24, [198, 51, 100, 0]));
        assert_eq!(key("::ffff:192.0.2.1"), TrieKey::V4(32, [192, 0, 2, 1]));
        match key("2001:db8::/32") {
            TrieKey::V6(32, a) => assert_eq!(a[..4], [0x20, 0x01, 0x0d, 0xb8]),
            other => panic!("{other:?}"),
        }
    }
}
