//! Kernel struct layout from BTF, resolved at run time.
//!
//! The eBPF programs read kernel structs with `bpf_probe_read_kernel` at byte offsets that differ
//! between kernel builds, so userspace resolves them from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`, plus split module BTF in `/sys/kernel/btf/<module>`) and hands them
//! to the programs as read-only globals. Offsets are never guessed: a missing field is an error
//! that names it (see DESIGN.md, "Kernel/user ABI rules").
//!
//! This is a small self-contained parser of the raw BTF format (kernel
//! `Documentation/bpf/btf.rst`): header, type section, string section. It understands every kind
//! up to `BTF_KIND_ENUM64` well enough to skip it, and struct/union members (including
//! `kind_flag` bitfield encoding) well enough to compute offsets. Split BTF (module BTF whose type
//! ids and string offsets continue after its base) is supported via [`Btf::from_file_with_base`].

mod error;
mod kinds;
mod parse;
mod query;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

pub use error::BtfError;
use parse::{parse_layer, read_file, with_path, Layer};

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Parsed kernel BTF (optionally split: a module's types on top of vmlinux's).
///
/// Cloning is cheap: layers are shared.
#[derive(Clone, Debug)]
pub struct Btf {
    /// Base first; each later layer is split BTF continuing the ids and strings of the previous.
    layers: Vec<Arc<Layer>>,
}

impl Btf {
    /// Load the running kernel's BTF from [`VMLINUX_BTF`].
    pub fn from_sys() -> Result<Btf, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    /// Load base (non-split) BTF from a file, e.g. a `vmlinux` BTF dump.
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = read_file(path)?;
        Self::from_bytes(&data).map_err(|e| with_path(e, path))
    }

    /// Parse base (non-split) BTF from raw bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Btf, BtfError> {
        let layer = parse_layer(data, &[])?;
        Ok(Btf {
            layers: vec![Arc::new(layer)],
        })
    }

    /// Parse split BTF (e.g. `/sys/kernel/btf/overlay`) whose type ids and string offsets
    /// continue after `base`'s. The result answers queries for both base and module types.
    pub fn from_bytes_with_base(data: &[u8], base: &Btf) -> Result<Btf, BtfError> {
        let layer = parse_layer(data, &base.layers)?;
        let mut layers = base.layers.clone();
        layers.push(Arc::new(layer));
        Ok(Btf { layers })
    }

    /// Load split BTF from a file (e.g. `/sys/kernel/btf/overlay`) on top of `base` (vmlinux).
    pub fn from_file_with_base(path: &Path, base: &Btf) -> Result<Btf, BtfError> {
        let data = read_file(path)?;
        Self::from_bytes_with_base(&data, base).map_err(|e| with_path(e, path))
    }
}
