//! Who a client is and what it may do, from the certificate it presented in the TLS handshake.
//!
//! - **Identity**: the subject common name (the whole subject when it has no CN).
//! - **Role**: the subject's organizational unit: `OU=<roles.agent_ou>` (default
//!   `seawall-agent`) may `Publish`; `OU=<roles.reader_ou>` (default `seawall-reader`) may
//!   `Subscribe` and `Query`. Both may ask for `Health`. A certificate with neither, or with both,
//!   is refused everything: the client CA signing it is not enough.
//! - **Nodes**: an agent may publish events only for the nodes its certificate names: its CN and
//!   its DNS subject alternative names (`*.pool.example` covers one label). Several nodes that
//!   share one certificate are listed there, and their events stay apart by spool instance.

use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::intake::NodePolicy;

/// How roles are read from certificates (`[roles]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// Subject OU of agent certificates.
    #[serde(default = "default_agent_ou")]
    pub agent_ou: String,
    /// Subject OU of consumer (SIEM, dashboard, `seawall events`) certificates.
    #[serde(default = "default_reader_ou")]
    pub reader_ou: String,
}

fn default_agent_ou() -> String {
    "seawall-agent".into()
}
fn default_reader_ou() -> String {
    "seawall-reader".into()
}

impl Default for RolesConfig {
    fn default() -> Self {
        RolesConfig {
            agent_ou: default_agent_ou(),
            reader_ou: default_reader_ou(),
        }
    }
}

/// What a certificate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Reader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Agent => "agent",
            Role::Reader => "reader",
        })
    }
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub identity: String,
    pub role: Role,
    /// Node names an agent may publish for: the CN, then the DNS subject alternative names.
    pub nodes: Vec<String>,
}

/// Why a certificate gives no access.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error("certificate {identity:?} has no role: its subject needs OU={agent_ou} (an agent) or OU={reader_ou} (a reader)")]
    NoRole {
        identity: String,
        agent_ou: String,
        reader_ou: String,
    },
    #[error("certificate {identity:?} claims both roles (OU={agent_ou} and OU={reader_ou}); give an agent and a reader separate certificates")]
    BothRoles {
        identity: String,
        agent_ou: String,
        reader_ou: String,
    },
}

/// The peer a DER certificate (already verified by the handshake) describes.
pub fn peer_from_der(der: &[u8], roles: &RolesConfig) -> Result<Peer, PeerError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| PeerError::Unparsable)?;
    let subject = cert.subject();
    let identity = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| subject.to_string());
    let ous: Vec<&str> = subject
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok())
        .collect();
    let agent = ous.contains(&roles.agent_ou.as_str());
    let reader = ous.contains(&roles.reader_ou.as_str());
    let role = match (agent, reader) {
        (true, false) => Role::Agent,
        (false, true) => Role::Reader,
        (a, _) => {
            let (identity, agent_ou, reader_ou) =
                (identity, roles.agent_ou.clone(), roles.reader_ou.clone());
            return Err(if a {
                PeerError::BothRoles {
                    identity,
                    agent_ou,
                    reader_ou,
                }
            } else {
                PeerError::NoRole {
                    identity,
                    agent_ou,
                    reader_ou,
                }
            });
        }
    };
    let mut nodes = vec![identity.clone()];
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(d) = name {
                nodes.push(d.to_string());
            }
        }
    }
    Ok(Peer {
        identity,
        role,
        nodes,
    })
}

/// `pattern` is a name or `*.suffix`, where `*` stands for exactly one label.
fn name_matches(pattern: &str, node: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => node
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(node),
    }
}

impl NodePolicy for Peer {
    fn check(&self, node: &str) -> Option<String> {
        if self.nodes.iter().any(|p| name_matches(p, node)) {
            return None;
        }
        Some(format!(
            "node {node:?} is not named by the agent's certificate {:?} (its CN or DNS subject alternative names: {:?})",
            self.identity, self.nodes
        ))
    }

    fn identity(&self) -> &str {
        &self.identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    /// rcgen keeps one value per attribute type, so these certificates have at most one OU.
    fn der(cn: &str, ous: &[&str], sans: &[&str]) -> Vec<u8> {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        for ou in ous {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, *ou);
        }
        p.self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn roles_come_from_the_subject_ou_and_nodes_from_cn_and_sans() {
        let roles = RolesConfig::default();
        let p = peer_from_der(
            &der("pool", &["seawall-agent"], &["a.example", "*.pool.example"]),
            &roles,
        )
        .unwrap();
        assert_eq!(p.role, Role::Agent);
        assert_eq!(p.check("pool"), None);
        assert_eq!(p.check("A.example"), None);
        assert_eq!(p.check("n7.pool.example"), None);
        assert!(
            p.check("x.n7.pool.example").is_some(),
            "a wildcard is one label"
        );
        assert!(p.check("victim").unwrap().contains("victim"));
        let r = peer_from_der(&der("soc", &["seawall-reader"], &[]), &roles).unwrap();
        assert_eq!(r.role, Role::Reader);
        assert!(matches!(
            peer_from_der(&der("x", &[], &[]), &roles),
            Err(PeerError::NoRole { .. })
        ));
        let custom = RolesConfig {
            agent_ou: "nodes".into(),
            reader_ou: "soc".into(),
        };
        assert_eq!(
            peer_from_der(&der("x", &["soc"], &[]), &custom)
                .unwrap()
                .role,
            Role::Reader
        );
    }
}
