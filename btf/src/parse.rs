//! Parsing raw BTF: header, type section, string section, one layer at a time.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::{error::format_err, kinds::*, BtfError};

/// One parsed `struct btf_type` record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ty {
    /// Global string offset of the name (0 = anonymous).
    pub(crate) name_off: u32,
    /// Length in bytes of the name, resolved at parse time.
    pub(crate) name_len: u32,
    pub(crate) kind: u8,
    pub(crate) kind_flag: bool,
    pub(crate) vlen: u16,
    /// `size` for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT/ENUM64, `type` for the rest.
    pub(crate) size_or_type: u32,
    /// Byte offset of the kind-specific trailing data within the type section.
    pub(crate) extra: u32,
}

/// A struct/union member as found by [`Btf::find_member`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    /// Offset in bits from the start of the outermost struct searched.
    pub(crate) bit_offset: u32,
    /// Non-zero for bitfields.
    pub(crate) bitfield_size: u32,
    pub(crate) type_id: u32,
}

/// One BTF blob: vmlinux (base) or a module's split BTF layered on top of it.
#[derive(Debug)]
pub(crate) struct Layer {
    /// First type id defined by this layer (1 for base BTF; id 0 is always `void`).
    pub(crate) start_id: u32,
    /// First string offset owned by this layer (0 for base BTF).
    pub(crate) start_str_off: u32,
    pub(crate) big_endian: bool,
    pub(crate) type_sec: Vec<u8>,
    pub(crate) str_sec: Vec<u8>,
    pub(crate) types: Vec<Ty>,
    /// Indices into `types` of named types, sorted by name. Built on first lookup.
    pub(crate) by_name: OnceLock<Vec<u32>>,
}

impl Layer {
    pub(crate) fn u32_at(&self, off: usize) -> u32 {
        // Bounds were validated when the type was parsed.
        let b: [u8; 4] = self.type_sec[off..off + 4].try_into().unwrap();
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|source| BtfError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn with_path(e: BtfError, path: &Path) -> BtfError {
    match e {
        BtfError::Format(msg) => BtfError::Format(format!("{}: {msg}", path.display())),
        other => other,
    }
}

/// Which layer owns global string offset `off`, and the offset within its string section.
pub(crate) fn str_layer(layers: &[Arc<Layer>], off: u32) -> Option<(&Layer, usize)> {
    let layer = layers.iter().rev().find(|l| off >= l.start_str_off)?;
    let local = (off - layer.start_str_off) as usize;
    (local < layer.str_sec.len()).then_some((layer.as_ref(), local))
}

pub(crate) fn str_len(layers: &[Arc<Layer>], off: u32) -> Result<u32, BtfError> {
    let (layer, local) = str_layer(layers, off)
        .ok_or_else(|| format_err(format!("string offset {off} is outside the string section")))?;
    let rest = &layer.str_sec[local..];
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format_err(format!("string at offset {off} is not NUL-terminated")))?;
    Ok(len as u32)
}

pub(crate) fn str_bytes(layers: &[Arc<Layer>], off: u32, len: u32) -> &[u8] {
    match str_layer(layers, off) {
        Some((layer, local)) => &layer.str_sec[local..local + len as usize],
        None => &[],
    }
}

pub(crate) fn parse_layer(data: &[u8], base: &[Arc<Layer>]) -> Result<Layer, BtfError> {
    if data.len() < MIN_HDR_LEN {
        return Err(format_err(format!(
            "{} bytes is too short for a BTF header",
            data.len()
        )));
    }
    let magic_le = u16::from_le_bytes([data[0], data[1]]);
    let big_endian = if magic_le == BTF_MAGIC {
        false
    } else if magic_le == BTF_MAGIC.swap_bytes() {
        true
    } else {
        return Err(format_err(format!(
            "bad magic {magic_le:#06x} (expected {BTF_MAGIC:#06x}); not a BTF file"
        )));
    };
    if data[2] != BTF_VERSION {
        return Err(format_err(format!(
            "unsupported BTF version {} (expected {BTF_VERSION})",
            data[2]
        )));
    }
    let rd = |off: usize| -> u32 {
        let b: [u8; 4] = data[off..off + 4].try_into().unwrap();
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let hdr_len = rd(4) as usize;
    let (type_off, type_len, str_off, str_len) = (
        rd(8) as usize,
        rd(12) as usize,
        rd(16) as usize,
        rd(20) as usize,
    );
    if hdr_len < MIN_HDR_LEN || hdr_len > data.len() {
        return Err(format_err(format!(
            "header length {hdr_len} is invalid for a {}-byte file",
            data.len()
        )));
    }
    let body = &data[hdr_len..];
    let section = |what: &str, off: usize, len: usize| -> Result<&[u8], BtfError> {
        off.checked_add(len)
            .filter(|&end| end <= body.len())
            .map(|end| &body[off..end])
            .ok_or_else(|| {
                format_err(format!(
                    "{what} section (offset {off}, length {len}) extends past the end of the data ({} bytes after the header)",
                    body.len()
                ))
            })
    };
    let type_sec = section("type", type_off, type_len)?.to_vec();
    let str_sec = section("string", str_off, str_len)?.to_vec();
    if type_len % 4 != 0 {
        return Err(format_err(format!(
            "type section length {type_len} is not a multiple of 4"
        )));
    }
    if base.is_empty() && str_sec.first() != Some(&0) {
        return Err(format_err("string section must start with an empty string"));
    }
    if !str_sec.is_empty() && str_sec.last() != Some(&0) {
        return Err(format_err("string section is not NUL-terminated"));
    }

    let (start_id, start_str_off) = match base.last() {
        None => (1u32, 0u32),
        Some(b) => {
            let next_id = b
                .start_id
                .checked_add(b.types.len() as u32)
                .ok_or_else(|| format_err("too many types"))?;
            let next_str = b
                .start_str_off
                .checked_add(b.str_sec.len() as u32)
                .ok_or_else(|| format_err("string sections too large"))?;
            (next_id, next_str)
        }
    };

    let mut layer = Layer {
        start_id,
        start_str_off,
        big_endian,
        type_sec,
        str_sec,
        types: Vec::new(),
        by_name: OnceLock::new(),
    };
    layer.types = parse_types(&layer, base)?;
    Ok(layer)
}

pub(crate) fn parse_types(layer: &Layer, base: &[Arc<Layer>]) -> Result<Vec<Ty>, BtfError> {
    let sec = &layer.type_sec;
    // A rough guess (records average ~24 bytes in vmlinux) to avoid regrowing the vector.
    let mut types = Vec::with_capacity(sec.len() / 24);
    let mut pos = 0usize;
    let local_str_len = |off: u32| -> Result<u32, BtfError> {
        if off >= layer.start_str_off {
            let local = (off - layer.start_str_off) as usize;
            let rest = layer
                .str_sec
                .get(local..)
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    format_err(format!("string offset {off} is outside the string section"))
                })?;
            // The section is NUL-terminated (checked above), so position() always succeeds.
            Ok(rest.iter().position(|&b| b == 0).unwrap_or(rest.len()) as u32)
        } else {
            str_len(base, off)
        }
    };
    while pos < sec.len() {
        let id = layer.start_id as usize + types.len();
        if pos + TYPE_REC_LEN > sec.len() {
            return Err(format_err(format!("type id {id} is truncated")));
        }
        let name_off = layer.u32_at(pos);
        let info = layer.u32_at(pos + 4);
        let size_or_type = layer.u32_at(pos + 8);
        let vlen = (info & 0xffff) as u16;
        let kind = ((info >> 24) & 0x1f) as u8;
        let kind_flag = info >> 31 != 0;
        let extra = pos + TYPE_REC_LEN;
        let extra_len = match kind {
            KIND_INT => 4,
            KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
            | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION => 12 * vlen as usize,
            KIND_ENUM => 8 * vlen as usize,
            KIND_FUNC_PROTO => 8 * vlen as usize,
            KIND_VAR => 4,
            KIND_DATASEC => 12 * vlen as usize,
            KIND_DECL_TAG => 4,
            KIND_ENUM64 => 12 * vlen as usize,
            other => return Err(format_err(format!("type id {id} has unknown kind {other}"))),
        };
        let end = extra + extra_len;
        if end > sec.len() {
            return Err(format_err(format!(
                "type id {id} ({}) extends past the end of the type section",
                kind_name(kind)
            )));
        }
        let name_len =
            local_str_len(name_off).map_err(|e| format_err(format!("type id {id}: {e}")))?;
        types.push(Ty {
            name_off,
            name_len,
            kind,
            kind_flag,
            vlen,
            size_or_type,
            extra: extra as u32,
        });
        pos = end;
    }
    Ok(types)
}
