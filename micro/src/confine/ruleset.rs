//! The Landlock ruleset: compiled filesystem rules, TCP port rules and scopes, built in the
//! supervisor before anything starts so every error is reported before `CMD` runs.

use landlock::{
    AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, Scope,
};

use crate::fs::compile::Compiled;

/// TCP ports Landlock restricts (ABI 4): a kernel floor under the supervisor's own checks.
#[derive(Debug, Default, Clone)]
pub struct TcpPorts {
    /// Ports `bind(2)` may use; `None` leaves binding unrestricted.
    pub bind: Option<Vec<u16>>,
    /// Ports `connect(2)` may reach; `None` leaves connecting unrestricted.
    pub connect: Option<Vec<u16>>,
}

/// What the ruleset scopes (ABI 6).
#[derive(Debug, Default, Clone, Copy)]
pub struct Scopes {
    /// No signal to a process outside the tree (the supervisor above all).
    pub signal: bool,
    /// No connection to an abstract unix socket created outside the tree.
    pub abstract_unix: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesetBuildError {
    #[error("building the Landlock ruleset")]
    Landlock(#[from] RulesetError),
    /// Opening a rule's path failed for another reason than the file having gone.
    #[error("adding a Landlock rule")]
    Open(#[source] landlock::PathFdError),
}

/// Builds the ruleset; `None` when there is nothing to restrict.
pub fn build(
    fs: &Compiled,
    tcp: &TcpPorts,
    scopes: Scopes,
) -> Result<Option<RulesetCreated>, RulesetBuildError> {
    let fs_access: BitFlags<AccessFs> = BitFlags::from_bits_truncate(fs.handled);
    let mut net_access: BitFlags<AccessNet> = BitFlags::empty();
    if tcp.bind.is_some() {
        net_access |= AccessNet::BindTcp;
    }
    if tcp.connect.is_some() {
        net_access |= AccessNet::ConnectTcp;
    }
    let mut scope: BitFlags<Scope> = BitFlags::empty();
    if scopes.signal {
        scope |= Scope::Signal;
    }
    if scopes.abstract_unix {
        scope |= Scope::AbstractUnixSocket;
    }
    if fs_access.is_empty() && net_access.is_empty() && scope.is_empty() {
        return Ok(None);
    }
    // The plan only asks for what the probed kernel has: anything missing is a bug, not a
    // reason to run with less.
    let mut rs = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if !fs_access.is_empty() {
        rs = rs.handle_access(fs_access)?;
    }
    if !net_access.is_empty() {
        rs = rs.handle_access(net_access)?;
    }
    if !scope.is_empty() {
        rs = rs.scope(scope)?;
    }
    let mut created = rs.create()?;
    for (path, rights) in &fs.rules {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            // Gone since the snapshot: no rule, so nothing is granted to whatever comes back.
            Err(landlock::PathFdError::OpenCall { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue
            }
            Err(e) => return Err(RulesetBuildError::Open(e)),
        };
        let access: BitFlags<AccessFs> = BitFlags::from_bits_truncate(*rights);
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    for (ports, access) in [
        (&tcp.bind, AccessNet::BindTcp),
        (&tcp.connect, AccessNet::ConnectTcp),
    ] {
        for &port in ports.iter().flatten() {
            created = created.add_rule(NetPort::new(port, access))?;
        }
    }
    Ok(Some(created))
}

/// The layer the tree gets on top of the supervisor's domain (ABI 6): signal scope alone. The
/// supervisor's workers live in the domain the tree's rules are judged in, and a signal to one
/// thread is checked against that thread; nested one level below them, the tree can signal
/// none of the supervisor's threads (a SIGKILL to any one would end the supervisor).
pub fn tree_layer() -> Result<RulesetCreated, RulesetBuildError> {
    Ok(Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::Signal)?
        .create()?)
}
