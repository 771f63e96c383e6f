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

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where the running kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xEB9F;
const BTF_VERSION: u8 = 1;
/// `struct btf_header` up to and including `str_len`.
const MIN_HDR_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_REC_LEN: usize = 12;
/// Guards against reference cycles in malformed BTF (typedef chains, anonymous member nesting).
const MAX_DEPTH: usize = 64;

const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_FWD: u8 = 7;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC: u8 = 12;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_FLOAT: u8 = 16;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

fn kind_name(kind: u8) -> &'static str {
    match kind {
        0 => "void",
        KIND_INT => "int",
        KIND_PTR => "pointer",
        KIND_ARRAY => "array",
        KIND_STRUCT => "struct",
        KIND_UNION => "union",
        KIND_ENUM => "enum",
        KIND_FWD => "forward declaration",
        KIND_TYPEDEF => "typedef",
        KIND_VOLATILE => "volatile",
        KIND_CONST => "const",
        KIND_RESTRICT => "restrict",
        KIND_FUNC => "function",
        KIND_FUNC_PROTO => "function prototype",
        KIND_VAR => "variable",
        KIND_DATASEC => "data section",
        KIND_FLOAT => "float",
        KIND_DECL_TAG => "decl tag",
        KIND_TYPE_TAG => "type tag",
        KIND_ENUM64 => "enum64",
        _ => "unknown kind",
    }
}

/// Why BTF could not be loaded or a layout query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("{}", io_message(path, source))]
    Io {
        path: PathBuf,
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
        format!("cannot read BTF from {}: {source}", path.display())
    }
}

fn format_err(msg: impl Into<String>) -> BtfError {
    BtfError::Format(msg.into())
}

/// One parsed `struct btf_type` record.
#[derive(Clone, Copy, Debug)]
struct Ty {
    /// Global string offset of the name (0 = anonymous).
    name_off: u32,
    /// Length in bytes of the name, resolved at parse time.
    name_len: u32,
    kind: u8,
    kind_flag: bool,
    vlen: u16,
    /// `size` for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT/ENUM64, `type` for the rest.
    size_or_type: u32,
    /// Byte offset of the kind-specific trailing data within the type section.
    extra: u32,
}

/// A struct/union member as found by [`Btf::find_member`].
#[derive(Clone, Copy, Debug)]
struct Member {
    /// Offset in bits from the start of the outermost struct searched.
    bit_offset: u32,
    /// Non-zero for bitfields.
    bitfield_size: u32,
    type_id: u32,
}

/// One BTF blob: vmlinux (base) or a module's split BTF layered on top of it.
#[derive(Debug)]
struct Layer {
    /// First type id defined by this layer (1 for base BTF; id 0 is always `void`).
    start_id: u32,
    /// First string offset owned by this layer (0 for base BTF).
    start_str_off: u32,
    big_endian: bool,
    type_sec: Vec<u8>,
    str_sec: Vec<u8>,
    types: Vec<Ty>,
    /// Indices into `types` of named types, sorted by name. Built on first lookup.
    by_name: OnceLock<Vec<u32>>,
}

impl Layer {
    fn u32_at(&self, off: usize) -> u32 {
        // Bounds were validated when the type was parsed.
        let b: [u8; 4] = self.type_sec[off..off + 4].try_into().unwrap();
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

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

    /// Byte offset of a (possibly nested) member of struct/union `strukt`.
    ///
    /// `path` is a dotted path through embedded (not pointed-to) struct/union members, e.g.
    /// `"root.dentry"` in `fs_struct`. Members of anonymous structs/unions are found
    /// recursively with their offsets added (`mm_struct.arg_start`). Bitfields are an error.
    pub fn field_offset(&self, strukt: &str, path: &str) -> Result<u32, BtfError> {
        let root = self.find_composite(strukt)?;
        let mut cur = root;
        let mut cur_name = strukt.to_string();
        let mut bits: u64 = 0;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(BtfError::NoField {
                    ty: strukt.to_string(),
                    field: path.to_string(),
                });
            }
            let member = self
                .find_member(cur, part, 0)?
                .ok_or_else(|| BtfError::NoField {
                    ty: cur_name.clone(),
                    field: (*part).to_string(),
                })?;
            if member.bitfield_size != 0
                || member.bit_offset % 8 != 0
                || self.is_int_bitfield(member.type_id)?
            {
                return Err(BtfError::Bitfield {
                    ty: cur_name,
                    field: (*part).to_string(),
                });
            }
            bits += u64::from(member.bit_offset);
            if i + 1 < parts.len() {
                let next = self.skip_modifiers(member.type_id)?;
                let ty = self.ty(next)?;
                if ty.kind != KIND_STRUCT && ty.kind != KIND_UNION {
                    return Err(BtfError::NotEmbedded {
                        ty: cur_name,
                        field: (*part).to_string(),
                        kind: kind_name(ty.kind),
                    });
                }
                cur = next;
                cur_name = format!("{cur_name}.{part}");
            }
        }
        u32::try_from(bits / 8)
            .map_err(|_| format_err(format!("offset of {strukt}.{path} overflows")))
    }

    /// Offset of the first of several candidate paths that exists, for fields renamed across
    /// kernel versions (e.g. `["__parent", "parent"]` in `kernfs_node`).
    ///
    /// If none exists the error names all candidates. Errors other than a missing field (no such
    /// struct, bitfield, path through a pointer) are returned as soon as they occur.
    pub fn field_offset_any(&self, strukt: &str, paths: &[&str]) -> Result<u32, BtfError> {
        for path in paths {
            match self.field_offset(strukt, path) {
                Ok(off) => return Ok(off),
                Err(BtfError::NoField { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(BtfError::NoField {
            ty: strukt.to_string(),
            field: if paths.is_empty() {
                "(no candidates given)".to_string()
            } else {
                paths.join("` or `")
            },
        })
    }

    /// `sizeof(struct name)` (or union) in this kernel.
    pub fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        let id = self.find_composite(name)?;
        Ok(self.ty(id)?.size_or_type)
    }

    /// Whether a named type of any kind exists, e.g. the FUNC `bpf_lsm_file_open` (LSM hook
    /// present) or a struct only some kernels have.
    pub fn has_type(&self, name: &str) -> bool {
        self.ids_named(name).next().is_some()
    }

    // ---- internals ----

    fn ty(&self, id: u32) -> Result<Ty, BtfError> {
        let (layer, idx) = self.locate(id)?;
        Ok(self.layers[layer].types[idx])
    }

    fn locate(&self, id: u32) -> Result<(usize, usize), BtfError> {
        for (i, layer) in self.layers.iter().enumerate().rev() {
            if id >= layer.start_id {
                let idx = (id - layer.start_id) as usize;
                if idx < layer.types.len() {
                    return Ok((i, idx));
                }
                break;
            }
        }
        Err(format_err(format!(
            "reference to type id {id}, which does not exist"
        )))
    }

    fn name_of(&self, ty: &Ty) -> &[u8] {
        // name_off/name_len were validated when the type was parsed.
        str_bytes(&self.layers, ty.name_off, ty.name_len)
    }

    /// NUL-terminated string at a global string offset.
    fn str_at(&self, off: u32) -> Result<&[u8], BtfError> {
        let len = str_len(&self.layers, off)?;
        Ok(str_bytes(&self.layers, off, len))
    }

    fn index(&self, layer_idx: usize) -> &[u32] {
        let layer = &self.layers[layer_idx];
        layer.by_name.get_or_init(|| {
            let mut named: Vec<(&[u8], u32)> = layer
                .types
                .iter()
                .enumerate()
                .filter(|(_, t)| t.name_len != 0)
                .map(|(i, t)| (self.name_of(t), i as u32))
                .collect();
            // Stable order among equal names keeps the lowest type id first.
            named.sort_by(|a, b| a.0.cmp(b.0));
            named.into_iter().map(|(_, i)| i).collect()
        })
    }

    /// Type ids with the given name, base layer first, lowest id first within a layer.
    fn ids_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = u32> + 'a {
        let name = name.as_bytes();
        (0..self.layers.len()).flat_map(move |li| {
            let layer = &self.layers[li];
            let index = self.index(li);
            let lo = index.partition_point(|&i| self.name_of(&layer.types[i as usize]) < name);
            index[lo..]
                .iter()
                .take_while(move |&&i| self.name_of(&layer.types[i as usize]) == name)
                .map(move |&i| layer.start_id + i)
        })
    }

    /// Struct or union named `name`; a typedef naming one is accepted too (`atomic_t`).
    fn find_composite(&self, name: &str) -> Result<u32, BtfError> {
        let mut typedef = None;
        for id in self.ids_named(name) {
            let ty = self.ty(id)?;
            match ty.kind {
                KIND_STRUCT | KIND_UNION => return Ok(id),
                KIND_TYPEDEF if typedef.is_none() => typedef = Some(id),
                _ => {}
            }
        }
        if let Some(id) = typedef {
            let target = self.skip_modifiers(id)?;
            let kind = self.ty(target)?.kind;
            if kind == KIND_STRUCT || kind == KIND_UNION {
                return Ok(target);
            }
        }
        Err(BtfError::NoType(name.to_string()))
    }

    /// Follow typedef/const/volatile/restrict/type_tag to the underlying type.
    fn skip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(0);
            }
            let ty = self.ty(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_CONST | KIND_VOLATILE | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type
                }
                _ => return Ok(id),
            }
        }
        Err(format_err(format!(
            "type id {id}: modifier chain too long (cycle?)"
        )))
    }

    /// A member whose type is an INT narrower than its storage is a bitfield in the
    /// non-kind_flag encoding.
    fn is_int_bitfield(&self, type_id: u32) -> Result<bool, BtfError> {
        let id = self.skip_modifiers(type_id)?;
        if id == 0 {
            return Ok(false);
        }
        let ty = self.ty(id)?;
        if ty.kind != KIND_INT {
            return Ok(false);
        }
        let (li, _) = self.locate(id)?;
        let enc = self.layers[li].u32_at(ty.extra as usize);
        let bits = enc & 0xff;
        let offset = (enc >> 16) & 0xff;
        Ok(offset != 0 || bits != ty.size_or_type.saturating_mul(8))
    }

    /// Find member `name` of struct/union `id`, descending into anonymous struct/union members.
    fn find_member(&self, id: u32, name: &str, depth: usize) -> Result<Option<Member>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(format_err(format!(
                "type id {id}: anonymous members nested too deep (cycle?)"
            )));
        }
        let (li, idx) = self.locate(id)?;
        let layer = &self.layers[li];
        let ty = layer.types[idx];
        let mut anonymous = Vec::new();
        for m in 0..ty.vlen as usize {
            let base = ty.extra as usize + m * 12;
            let m_name = layer.u32_at(base);
            let m_type = layer.u32_at(base + 4);
            let m_off = layer.u32_at(base + 8);
            let (bit_offset, bitfield_size) = if ty.kind_flag {
                (m_off & 0x00ff_ffff, m_off >> 24)
            } else {
                (m_off, 0)
            };
            let m_name = self.str_at(m_name)?;
            if m_name.is_empty() {
                anonymous.push((bit_offset, m_type));
            } else if m_name == name.as_bytes() {
                return Ok(Some(Member {
                    bit_offset,
                    bitfield_size,
                    type_id: m_type,
                }));
            }
        }
        // Named members of this struct take precedence over ones inside anonymous members.
        for (bit_offset, m_type) in anonymous {
            let inner = self.skip_modifiers(m_type)?;
            if inner == 0 {
                continue;
            }
            let kind = self.ty(inner)?.kind;
            if kind != KIND_STRUCT && kind != KIND_UNION {
                continue;
            }
            if let Some(mut found) = self.find_member(inner, name, depth + 1)? {
                found.bit_offset += bit_offset;
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|source| BtfError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn with_path(e: BtfError, path: &Path) -> BtfError {
    match e {
        BtfError::Format(msg) => BtfError::Format(format!("{}: {msg}", path.display())),
        other => other,
    }
}

/// Which layer owns global string offset `off`, and the offset within its string section.
fn str_layer(layers: &[Arc<Layer>], off: u32) -> Option<(&Layer, usize)> {
    let layer = layers.iter().rev().find(|l| off >= l.start_str_off)?;
    let local = (off - layer.start_str_off) as usize;
    (local < layer.str_sec.len()).then_some((layer.as_ref(), local))
}

fn str_len(layers: &[Arc<Layer>], off: u32) -> Result<u32, BtfError> {
    let (layer, local) = str_layer(layers, off)
        .ok_or_else(|| format_err(format!("string offset {off} is outside the string section")))?;
    let rest = &layer.str_sec[local..];
    let len = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format_err(format!("string at offset {off} is not NUL-terminated")))?;
    Ok(len as u32)
}

fn str_bytes(layers: &[Arc<Layer>], off: u32, len: u32) -> &[u8] {
    match str_layer(layers, off) {
        Some((layer, local)) => &layer.str_sec[local..local + len as usize],
        None => &[],
    }
}

fn parse_layer(data: &[u8], base: &[Arc<Layer>]) -> Result<Layer, BtfError> {
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

fn parse_types(layer: &Layer, base: &[Arc<Layer>]) -> Result<Vec<Ty>, BtfError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-assembles BTF blobs for tests.
    struct Builder {
        big_endian: bool,
        types: Vec<u8>,
        strings: Vec<u8>,
        /// Global string offset of `strings[0]`.
        start_str_off: u32,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                big_endian: false,
                types: Vec::new(),
                strings: vec![0],
                start_str_off: 0,
                next_id: 1,
            }
        }

        /// Split BTF continuing after a base built by `base`.
        fn split(base: &Builder) -> Self {
            Builder {
                big_endian: base.big_endian,
                types: Vec::new(),
                strings: Vec::new(),
                start_str_off: base.start_str_off + base.strings.len() as u32,
                next_id: base.next_id,
            }
        }

        fn u32(&mut self, v: u32) {
            let b = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.types.extend_from_slice(&b);
        }

        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.start_str_off + self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn rec(&mut self, name: &str, kind: u8, kflag: bool, vlen: u16, size_or_type: u32) -> u32 {
            let n = self.s(name);
            self.u32(n);
            self.u32((u32::from(kflag) << 31) | (u32::from(kind) << 24) | u32::from(vlen));
            self.u32(size_or_type);
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.rec(name, KIND_INT, false, 0, size);
            self.u32(size * 8);
            id
        }

        fn int_bits(&mut self, name: &str, size: u32, bits: u32) -> u32 {
            let id = self.rec(name, KIND_INT, false, 0, size);
            self.u32(bits);
            id
        }

        fn composite(
            &mut self,
            kind: u8,
            name: &str,
            size: u32,
            kflag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.rec(name, kind, kflag, members.len() as u16, size);
            for &(m, ty, off) in members {
                let n = self.s(m);
                self.u32(n);
                self.u32(ty);
                self.u32(off);
            }
            id
        }

        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(KIND_STRUCT, name, size, false, members)
        }

        fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            self.composite(KIND_UNION, name, size, false, members)
        }

        fn simple(&mut self, kind: u8, name: &str, ty: u32) -> u32 {
            self.rec(name, kind, false, 0, ty)
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let w16 = |out: &mut Vec<u8>, v: u16| {
                out.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                })
            };
            let w32 = |out: &mut Vec<u8>, v: u32| {
                out.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                })
            };
            w16(&mut out, BTF_MAGIC);
            out.push(BTF_VERSION);
            out.push(0);
            w32(&mut out, 24);
            w32(&mut out, 0);
            w32(&mut out, self.types.len() as u32);
            w32(&mut out, self.types.len() as u32);
            w32(&mut out, self.strings.len() as u32);
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A base blob exercising every kind, plus structs shaped like the kernel's.
    fn sample(big_endian: bool) -> Builder {
        let mut b = Builder::new();
        b.big_endian = big_endian;
        let u32_t = b.int("unsigned int", 4); // 1
        let u64_t = b.int("long long unsigned int", 8); // 2
        let char_t = b.int("char", 1); // 3
        let ptr_char = b.simple(KIND_PTR, "", char_t); // 4
                                                       // ARRAY: elem type, index type, nelems.
        let arr = b.rec("", KIND_ARRAY, false, 0, 0); // 5
        b.u32(char_t);
        b.u32(u32_t);
        b.u32(16);
        // ENUM with two values.
        b.rec("color", KIND_ENUM, false, 2, 4);
        for (n, v) in [("RED", 0u32), ("GREEN", 1)] {
            let o = b.s(n);
            b.u32(o);
            b.u32(v);
        }
        b.simple(KIND_FWD, "later", 0);
        let u64_td = b.simple(KIND_TYPEDEF, "u64", u64_t);
        let vol = b.simple(KIND_VOLATILE, "", u64_td);
        let cst = b.simple(KIND_CONST, "", vol);
        b.simple(KIND_RESTRICT, "", ptr_char);
        // FUNC_PROTO (int)(char *x, unsigned int y), then FUNC referencing it.
        let proto = b.rec("", KIND_FUNC_PROTO, false, 2, u32_t);
        for (n, t) in [("x", ptr_char), ("y", u32_t)] {
            let o = b.s(n);
            b.u32(o);
            b.u32(t);
        }
        b.simple(KIND_FUNC, "bpf_lsm_file_open", proto);
        let var = b.simple(KIND_VAR, "some_var", u32_t);
        b.u32(1); // linkage
        b.rec(".data", KIND_DATASEC, false, 1, 4);
        b.u32(var);
        b.u32(0);
        b.u32(4);
        b.rec("double", KIND_FLOAT, false, 0, 8);
        b.simple(KIND_DECL_TAG, "user", var);
        b.u32(u32::MAX); // component_idx: tag applies to the var itself
        b.simple(KIND_TYPE_TAG, "rcu", ptr_char);
        b.rec("big", KIND_ENUM64, false, 1, 8);
        let o = b.s("HUGE");
        b.u32(o);
        b.u32(0xffff_ffff);
        b.u32(0x1);

        // struct path { void *mnt; void *dentry; } -- 16 bytes
        let path = b.strukt(
            "path",
            16,
            &[("mnt", ptr_char, 0), ("dentry", ptr_char, 64)],
        );
        // typedef const struct path cpath_t;
        let cpath = b.simple(KIND_CONST, "", path);
        let cpath_t = b.simple(KIND_TYPEDEF, "cpath_t", cpath);
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
        let inner = b.strukt("", 8, &[("hash", u32_t, 0), ("len", u32_t, 32)]);
        let un = b.union("", 8, &[("", inner, 0), ("hash_len", cst, 0)]);
        b.strukt("qstr", 16, &[("", un, 0), ("name", ptr_char, 64)]);
        // struct fs_struct { unsigned int users; unsigned int seq; cpath_t root; struct path pwd; }
        b.strukt(
            "fs_struct",
            40,
            &[
                ("users", u32_t, 0),
                ("seq", u32_t, 32),
                ("root", cpath_t, 64),
                ("pwd", path, 192),
            ],
        );
        // Bitfields in both encodings, plus a pointer member and an array member.
        let nibble = b.int_bits("unsigned int", 4, 4);
        b.composite(
            KIND_STRUCT,
            "flags_kf",
            8,
            true,
            &[
                ("a", u32_t, 3 << 24),
                ("b", u32_t, (5 << 24) | 3),
                ("c", u32_t, 32),
            ],
        );
        b.strukt(
            "flags_old",
            32,
            &[("a", nibble, 0), ("p", ptr_char, 64), ("arr", arr, 128)],
        );
        // typedef struct { ... } anon_t;
        let anon = b.strukt("", 8, &[("x", u32_t, 0), ("y", u32_t, 32)]);
        b.simple(KIND_TYPEDEF, "anon_t", anon);
        b
    }

    #[test]
    fn btf_every_kind_is_skipped_and_offsets_resolve() {
        for big_endian in [false, true] {
            let btf = Btf::from_bytes(&sample(big_endian).build()).unwrap();
            assert_eq!(btf.field_offset("path", "dentry").unwrap(), 8);
            assert_eq!(btf.struct_size("path").unwrap(), 16);
            assert_eq!(btf.struct_size("qstr").unwrap(), 16);
            // Members inside an anonymous struct inside an anonymous union.
            assert_eq!(btf.field_offset("qstr", "hash").unwrap(), 0);
            assert_eq!(btf.field_offset("qstr", "len").unwrap(), 4);
            assert_eq!(btf.field_offset("qstr", "hash_len").unwrap(), 0);
            assert_eq!(btf.field_offset("qstr", "name").unwrap(), 8);
            // Dotted paths through a typedef'd const struct member and a plain one.
            assert_eq!(btf.field_offset("fs_struct", "root").unwrap(), 8);
            assert_eq!(btf.field_offset("fs_struct", "root.dentry").unwrap(), 16);
            assert_eq!(btf.field_offset("fs_struct", "pwd.mnt").unwrap(), 24);
            assert_eq!(btf.field_offset("fs_struct", "pwd.dentry").unwrap(), 32);
            // A typedef of an anonymous struct can be named directly.
            assert_eq!(btf.field_offset("anon_t", "y").unwrap(), 4);
            assert_eq!(btf.struct_size("anon_t").unwrap(), 8);
            assert_eq!(btf.field_offset("flags_kf", "c").unwrap(), 4);
            assert_eq!(btf.field_offset("flags_old", "arr").unwrap(), 16);
            assert!(btf.has_type("bpf_lsm_file_open"));
            assert!(btf.has_type("big"));
            assert!(btf.has_type("u64"));
            assert!(!btf.has_type("bpf_lsm_nope"));
            assert!(!btf.has_type(""));
        }
    }

    #[test]
    fn btf_errors_name_what_is_missing() {
        let btf = Btf::from_bytes(&sample(false).build()).unwrap();
        let e = btf.field_offset("fs_struct", "root.inode").unwrap_err();
        assert!(
            matches!(&e, BtfError::NoField { ty, field } if ty == "fs_struct.root" && field == "inode"),
            "{e:?}"
        );
        assert!(e.to_string().contains("`inode`"), "{e}");
        let e = btf.field_offset("nope_struct", "x").unwrap_err();
        assert!(
            matches!(&e, BtfError::NoType(t) if t == "nope_struct"),
            "{e:?}"
        );
        assert!(e.to_string().contains("nope_struct"), "{e}");
        // A FWD declaration or a function is not a struct.
        assert!(matches!(btf.struct_size("later"), Err(BtfError::NoType(_))));
        assert!(matches!(
            btf.struct_size("bpf_lsm_file_open"),
            Err(BtfError::NoType(_))
        ));
        // Bitfields, both encodings.
        for (s, f) in [("flags_kf", "a"), ("flags_kf", "b"), ("flags_old", "a")] {
            let e = btf.field_offset(s, f).unwrap_err();
            assert!(matches!(e, BtfError::Bitfield { .. }), "{s}.{f}: {e:?}");
        }
        // Never through pointers.
        let e = btf.field_offset("flags_old", "p.x").unwrap_err();
        assert!(
            matches!(
                &e,
                BtfError::NotEmbedded {
                    kind: "pointer",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(matches!(
            btf.field_offset("path", "dentry."),
            Err(BtfError::NotEmbedded { .. }) | Err(BtfError::NoField { .. })
        ));
        assert!(matches!(
            btf.field_offset("path", ""),
            Err(BtfError::NoField { .. })
        ));
    }

    #[test]
    fn btf_field_offset_any_takes_first_existing() {
        let btf = Btf::from_bytes(&sample(false).build()).unwrap();
        assert_eq!(
            btf.field_offset_any("path", &["__dentry", "dentry"])
                .unwrap(),
            8
        );
        assert_eq!(btf.field_offset_any("path", &["mnt", "dentry"]).unwrap(), 0);
        let e = btf.field_offset_any("path", &["a", "b"]).unwrap_err();
        assert!(e.to_string().contains("`a` or `b`"), "{e}");
        assert!(matches!(
            btf.field_offset_any("nope", &["a"]),
            Err(BtfError::NoType(_))
        ));
    }

    #[test]
    fn btf_split_module_continues_ids_and_strings() {
        let base_b = sample(false);
        let base = Btf::from_bytes(&base_b.build()).unwrap();
        let mut m = Builder::split(&base_b);
        // Module struct embedding a base struct, referencing base types by id and one base
        // string ("dentry") by its base offset.
        let path_id = base.ids_named("path").next().unwrap();
        let ptr_char = 4;
        let u32_t = 1;
        let inode = m.strukt(
            "inode",
            24,
            &[
                ("i_ino", u32_t, 0),
                ("i_sb", ptr_char, 64),
                ("x", u32_t, 128),
            ],
        );
        m.strukt(
            "ovl_inode",
            64,
            &[
                ("vfs_inode", inode, 64),
                ("__upperdentry", ptr_char, 256),
                ("redirect", path_id, 320),
            ],
        );
        let dentry_off = {
            // Find "dentry" in the base string section.
            let pos = base_b
                .strings
                .windows(7)
                .position(|w| w == b"dentry\0")
                .unwrap();
            pos as u32
        };
        m.u32(0); // anonymous struct with a member whose name lives in base strings
        m.u32((u32::from(KIND_STRUCT) << 24) | 1);
        m.u32(8);
        m.u32(dentry_off);
        m.u32(ptr_char);
        m.u32(0);
        let anon = m.next_id;
        m.next_id += 1;
        m.strukt("holder", 16, &[("h", u32_t, 0), ("", anon, 64)]);
        let split = Btf::from_bytes_with_base(&m.build(), &base).unwrap();

        assert_eq!(split.field_offset("ovl_inode", "vfs_inode").unwrap(), 8);
        assert_eq!(
            split.field_offset("ovl_inode", "vfs_inode.i_sb").unwrap(),
            16
        );
        assert_eq!(
            split.field_offset("ovl_inode", "__upperdentry").unwrap(),
            32
        );
        assert_eq!(
            split.field_offset("ovl_inode", "redirect.dentry").unwrap(),
            48
        );
        assert_eq!(split.field_offset("holder", "dentry").unwrap(), 8);
        assert_eq!(split.struct_size("inode").unwrap(), 24);
        // Base types are still visible through the split view, module types only there.
        assert_eq!(split.field_offset("qstr", "len").unwrap(), 4);
        assert!(split.has_type("bpf_lsm_file_open"));
        assert!(!base.has_type("ovl_inode"));

        // Split BTF parsed without its base is rejected, not misread.
        assert!(Btf::from_bytes(&m.build()).is_err());
    }

    #[test]
    fn btf_rejects_garbage() {
        assert!(matches!(Btf::from_bytes(&[]), Err(BtfError::Format(_))));
        assert!(matches!(
            Btf::from_bytes(&[0u8; 64]),
            Err(BtfError::Format(_))
        ));
        let mut blob = sample(false).build();
        blob[2] = 2;
        assert!(Btf::from_bytes(&blob)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        // Truncated type section.
        let good = sample(false).build();
        let mut b = sample(false);
        b.types.truncate(b.types.len() - 4);
        assert!(matches!(
            Btf::from_bytes(&b.build()),
            Err(BtfError::Format(_))
        ));
        // Unknown kind.
        let mut b = Builder::new();
        b.rec("x", 25, false, 0, 0);
        let e = Btf::from_bytes(&b.build()).unwrap_err();
        assert!(e.to_string().contains("unknown kind 25"), "{e}");
        assert!(Btf::from_bytes(&good).is_ok());
    }

    #[test]
    fn btf_missing_file_explains_kernel_config() {
        let e = Btf::from_file(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(matches!(e, BtfError::Io { .. }));
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/btf/vmlinux"), "{msg}");
        assert!(msg.contains("CONFIG_DEBUG_INFO_BTF=y"), "{msg}");
    }

    fn sys_btf() -> Option<Btf> {
        if !Path::new(VMLINUX_BTF).exists() {
            println!("SKIP: {VMLINUX_BTF} is absent (kernel without CONFIG_DEBUG_INFO_BTF)");
            return None;
        }
        Some(Btf::from_sys().expect("parse kernel BTF"))
    }

    #[test]
    fn btf_sys_vmlinux_loads_and_indexes() {
        // Timing belongs to `cargo xtask bench`, not to a test: only that it loads and indexes.
        let Some(btf) = sys_btf() else { return };
        assert!(btf.has_type("task_struct"));
        assert!(!btf.has_type("no_such_type_in_any_kernel"));
    }

    #[test]
    fn btf_sys_vmlinux_fields_seawall_reads() {
        let Some(btf) = sys_btf() else { return };
        let fields = [
            ("task_struct", "real_parent"),
            ("task_struct", "tgid"),
            ("task_struct", "fs"),
            ("task_struct", "mm"),
            ("mm_struct", "arg_start"),
            ("mm_struct", "arg_end"),
            ("fs_struct", "root"),
            ("fs_struct", "root.dentry"),
            ("fs_struct", "root.mnt"),
            ("path", "dentry"),
            ("path", "mnt"),
            ("dentry", "d_sb"),
            ("dentry", "d_parent"),
            ("dentry", "d_name"),
            ("dentry", "d_name.name"),
            ("qstr", "name"),
            ("qstr", "len"),
            ("linux_binprm", "file"),
            ("linux_binprm", "filename"),
            ("file", "f_inode"),
            ("file", "f_path"),
            ("inode", "i_sb"),
            ("super_block", "s_magic"),
            ("mount", "mnt"),
            ("mount", "mnt_parent"),
            ("mount", "mnt_mountpoint"),
            ("vfsmount", "mnt_root"),
            ("vfsmount", "mnt_sb"),
        ];
        for (s, f) in fields {
            let off = btf
                .field_offset(s, f)
                .unwrap_or_else(|e| panic!("{s}.{f}: {e}"));
            println!("{s}.{f} = {off}");
        }
        let nlink = btf
            .field_offset_any("inode", &["__i_nlink", "i_nlink"])
            .unwrap();
        assert_eq!(btf.field_offset("inode", "i_nlink").unwrap(), nlink);

        // Structural facts that hold on every kernel.
        assert_eq!(btf.field_offset("path", "mnt").unwrap(), 0);
        assert_eq!(btf.field_offset("path", "dentry").unwrap(), 8);
        assert_eq!(btf.struct_size("path").unwrap(), 16);
        assert_eq!(btf.struct_size("qstr").unwrap(), 16);
        assert_eq!(btf.field_offset("qstr", "len").unwrap(), 4);
        assert_eq!(btf.field_offset("qstr", "name").unwrap(), 8);
        let root = btf.field_offset("fs_struct", "root").unwrap();
        assert_eq!(
            btf.field_offset("fs_struct", "root.dentry").unwrap(),
            root + 8
        );
        let arg_start = btf.field_offset("mm_struct", "arg_start").unwrap();
        assert_eq!(
            btf.field_offset("mm_struct", "arg_end").unwrap(),
            arg_start + 8
        );
        // struct mount embeds struct vfsmount.
        let mnt = btf.field_offset("mount", "mnt").unwrap();
        assert_eq!(
            btf.field_offset("mount", "mnt.mnt_sb").unwrap(),
            mnt + btf.field_offset("vfsmount", "mnt_sb").unwrap()
        );
        // Pointers are not descended through.
        assert!(matches!(
            btf.field_offset("task_struct", "mm.arg_start"),
            Err(BtfError::NotEmbedded { .. })
        ));
        assert!(matches!(
            btf.field_offset("task_struct", "no_such_field"),
            Err(BtfError::NoField { .. })
        ));
        assert!(btf.has_type("bpf_lsm_file_open"));
        assert!(btf.struct_size("task_struct").unwrap() > 1000);
    }

    /// Split module BTF: overlayfs' `struct ovl_inode` embeds `struct inode` right before
    /// `__upperdentry`. Uses the overlay module BTF when it is a module, else vmlinux.
    #[test]
    fn btf_sys_ovl_inode_layout() {
        let Some(base) = sys_btf() else { return };
        let module = Path::new("/sys/kernel/btf/overlay");
        let btf = if base.has_type("ovl_inode") {
            base
        } else if module.exists() {
            Btf::from_file_with_base(module, &base).expect("parse overlay module BTF")
        } else {
            println!("SKIP: overlayfs is neither built in nor loaded as a module with BTF");
            return;
        };
        let vfs = btf.field_offset("ovl_inode", "vfs_inode").unwrap();
        let upper = btf.field_offset("ovl_inode", "__upperdentry").unwrap();
        let inode = btf.struct_size("inode").unwrap();
        assert_eq!(upper - vfs, inode.div_ceil(8) * 8);
    }

    /// Every loaded module's split BTF parses on top of vmlinux.
    #[test]
    fn btf_sys_module_btf_parses() {
        let Some(base) = sys_btf() else { return };
        let mut n = 0;
        for entry in std::fs::read_dir("/sys/kernel/btf").unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "vmlinux") {
                continue;
            }
            Btf::from_file_with_base(&path, &base)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        if n == 0 {
            println!("SKIP: no module BTF under /sys/kernel/btf");
        }
    }
}
