//! Layout queries: field offsets through embedded members, struct sizes, type lookup.

use crate::{
    error::format_err,
    kinds::*,
    parse::{str_bytes, str_len, Member, Ty},
    Btf, BtfError,
};

impl Btf {
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
    pub(crate) fn ids_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = u32> + 'a {
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
