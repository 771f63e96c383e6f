//! The raw BTF format's constants (kernel `Documentation/bpf/btf.rst`).

pub(crate) const BTF_MAGIC: u16 = 0xEB9F;
pub(crate) const BTF_VERSION: u8 = 1;
/// `struct btf_header` up to and including `str_len`.
pub(crate) const MIN_HDR_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size/type.
pub(crate) const TYPE_REC_LEN: usize = 12;
/// Guards against reference cycles in malformed BTF (typedef chains, anonymous member nesting).
pub(crate) const MAX_DEPTH: usize = 64;

pub(crate) const KIND_INT: u8 = 1;
pub(crate) const KIND_PTR: u8 = 2;
pub(crate) const KIND_ARRAY: u8 = 3;
pub(crate) const KIND_STRUCT: u8 = 4;
pub(crate) const KIND_UNION: u8 = 5;
pub(crate) const KIND_ENUM: u8 = 6;
pub(crate) const KIND_FWD: u8 = 7;
pub(crate) const KIND_TYPEDEF: u8 = 8;
pub(crate) const KIND_VOLATILE: u8 = 9;
pub(crate) const KIND_CONST: u8 = 10;
pub(crate) const KIND_RESTRICT: u8 = 11;
pub(crate) const KIND_FUNC: u8 = 12;
pub(crate) const KIND_FUNC_PROTO: u8 = 13;
pub(crate) const KIND_VAR: u8 = 14;
pub(crate) const KIND_DATASEC: u8 = 15;
pub(crate) const KIND_FLOAT: u8 = 16;
pub(crate) const KIND_DECL_TAG: u8 = 17;
pub(crate) const KIND_TYPE_TAG: u8 = 18;
pub(crate) const KIND_ENUM64: u8 = 19;

pub(crate) fn kind_name(kind: u8) -> &'static str {
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
