//! What can go wrong loading BTF or answering a layout query.

use std::path::{Path, PathBuf};

/// Why BTF could not be loaded or a layout query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("{}", io_message(path, source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}; the file is corrupt or uses a BTF encoding this parser does not know (only version 1, kinds 1..=19)")]
    Format(String),
    #[error("type `{0}` not found in kernel BTF; this kernel does not have it, or it lives in a module whose BTF (/sys/kernel/btf/<module>) was not loaded")]
    NoType(String),
    #[error("`{ty}` has no field `{field}` in this kernel's BTF; if it was renamed in this kernel, add the new name as a candidate (Btf::field_offset_any)")]
    NoField { ty: String, field: String },
    #[error("`{ty}.{field}` is a bitfield; Seawall never reads bitfields with bpf_probe_read_kernel, read a byte-aligned field instead")]
    Bitfield { ty: String, field: String },
    #[error("`{ty}.{field}` is a {kind}, not an embedded struct/union; dotted field paths only descend into embedded members, never through pointers (resolve the pointee's offsets separately)")]
    NotEmbedded {
        ty: String,
        field: String,
        kind: &'static str,
    },
}

fn io_message(path: &Path, source: &std::io::Error) -> String {
    if source.kind() == std::io::ErrorKind::NotFound {
        format!(
            "kernel BTF not found at {}: Seawall needs a kernel built with CONFIG_DEBUG_INFO_BTF=y \
             (and CONFIG_DEBUG_INFO_BTF_MODULES=y for types that live in modules)",
            path.display()
        )
    } else {
        format!("cannot read BTF from {}", path.display())
    }
}

pub(crate) fn format_err(msg: impl Into<String>) -> BtfError {
    BtfError::Format(msg.into())
}
