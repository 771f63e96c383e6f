//! Failpoints for the fault-injection tests (`tests/faults.rs`): named places where a test
//! build can be told to fail on purpose, through `SEAWALL_FAILPOINTS="name[=value],…"`.
//!
//! They exist only with the `failpoints` cargo feature, which `cargo xtask test` turns on for
//! the debug binary the privileged tests drive; release builds have none, and there [`armed`]
//! is a constant `None` the compiler removes with the code behind it.

/// The value of failpoint `name` when the environment arms it (`""` for a bare name).
#[cfg(feature = "failpoints")]
pub fn armed(name: &str) -> Option<&'static str> {
    use std::{collections::HashMap, sync::OnceLock};
    static ARMED: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("SEAWALL_FAILPOINTS").unwrap_or_default();
            let armed: HashMap<String, &'static str> = spec
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let (k, v) = s.split_once('=').unwrap_or((s, ""));
                    (k.to_string(), &*String::leak(v.to_string()))
                })
                .collect();
            if !armed.is_empty() {
                tracing::warn!(failpoints = %spec, "failpoints armed: this agent fails on purpose");
            }
            armed
        })
        .get(name)
        .copied()
}

/// Without the `failpoints` feature nothing is ever armed.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn armed(_name: &str) -> Option<&'static str> {
    None
}

/// The numeric value of failpoint `name`, when armed with one.
pub fn armed_number(name: &str) -> Option<u64> {
    armed(name).and_then(|v| v.parse().ok())
}

/// Logs every armed failpoint at start, so a test can tell a build without them.
pub fn announce() {
    let _ = armed("");
}
