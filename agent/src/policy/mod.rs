//! Profiles (the language lives in `seawall-profile`) → what the kernel enforces, plus the few
//! verdicts userspace takes itself (a held exec, a fanotify open).

pub mod compile;
pub mod verdict;
