//! The parser against hand-assembled BTF blobs, and against this machine's kernel BTF.

use std::path::Path;

use crate::{kinds::*, Btf, BtfError, VMLINUX_BTF};

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
