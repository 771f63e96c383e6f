//! Image assurance at container creation: the verdict on a new container's image, taken once,
//! and whether to report it (audit mode reports a container once, not at every exec).

use std::collections::HashSet;

use seawall_intel::{AssurancePolicy, Refusal, Verdict};
use seawall_profile::Mode;

/// What to do about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Which rule refused its image.
    pub refusal: Refusal,
    /// Enforce (the container may run nothing) or audit (it runs, and is reported).
    pub mode: Mode,
    /// True the first time this container is judged: report it then, and only then.
    pub first: bool,
}

/// The assurance policy and the containers already reported.
pub struct AssuranceGate {
    policy: AssurancePolicy,
    reported: HashSet<String>,
}

impl AssuranceGate {
    /// A gate for a validated policy.
    pub fn new(policy: AssurancePolicy) -> AssuranceGate {
        AssuranceGate {
            policy,
            reported: HashSet::new(),
        }
    }

    /// The judgement on a container whose image is not approved; `None` when it is.
    /// `digests` are the image id and repo digests.
    pub fn judge(
        &mut self,
        container_id: &str,
        image: &str,
        digests: &[&str],
    ) -> Option<Judgement> {
        match self.policy.verdict(image, digests) {
            Verdict::Approved => None,
            Verdict::Refused(refusal) => Some(Judgement {
                refusal,
                mode: self.policy.mode,
                first: self.reported.insert(container_id.to_string()),
            }),
        }
    }

    /// Forgets a removed container.
    pub fn forget(&mut self, container_id: &str) {
        self.reported.remove(container_id);
    }

    /// The policy's mode.
    pub fn mode(&self) -> Mode {
        self.policy.mode
    }
}

#[cfg(test)]
mod tests {
    use seawall_intel::{AssuranceConfig, AssuranceMode};

    use super::*;

    const D: &str = "sha256:3cc203321400a2f86a6e5ba0e3a0ac1ef4fd8e3b3a1a6e1e5c2c0c7c1a2b3c4d";

    fn gate(mode: AssuranceMode) -> AssuranceGate {
        let config = AssuranceConfig {
            mode,
            allow: Some(vec!["seawall-test/approved*".into()]),
            ..Default::default()
        };
        AssuranceGate::new(AssurancePolicy::from_config(&config).unwrap().unwrap())
    }

    #[test]
    fn unapproved_containers_are_reported_once() {
        let mut g = gate(AssuranceMode::Audit);
        assert_eq!(g.judge("c1", "seawall-test/approved:1", &[D]), None);
        let j = g.judge("c2", "seawall-test/other:1", &[D]).unwrap();
        assert_eq!((j.mode, j.first), (Mode::Audit, true));
        assert_eq!(j.refusal, Refusal::NotAllowed);
        assert!(!g.judge("c2", "seawall-test/other:1", &[D]).unwrap().first);
        g.forget("c2");
        assert!(g.judge("c2", "seawall-test/other:1", &[D]).unwrap().first);
        assert_eq!(gate(AssuranceMode::Enforce).mode(), Mode::Enforce);
    }
}
