//! Opens and path changes (unlink, rename, truncate, link, mkdir…). Landlock decides them all;
//! the supervisor looks at the ones the profile cares about to report, and predicts from the
//! installed rules whether the kernel is about to refuse (`blocked`) or not (`audited`: an audit
//! mode, `files.monitor`, or a path these rules could not cover).

use seawall_profile::Mode;
use seawall_proto::event::{Action, File, Kind};

use super::listener::{Reply, Request};
use super::resolve::{display, resolve, Resolved};
use super::target::Target;
use super::{bit_names, Context};
use crate::events::Draft;
use crate::fs::rights::*;

/// What a call does to one path, and the rights Landlock will want for it.
struct Touch {
    resolved: Resolved,
    /// Rights on the file itself.
    on_file: Rights,
    /// Rights on its directory.
    on_parent: Rights,
    /// The file's contents or entries change (read_only and monitor care).
    changes: bool,
    /// The file is opened (deny cares).
    opens: bool,
}

fn open_rights(flags: u64, exists: bool, is_dir: bool) -> (Rights, Rights) {
    let flags = flags as i32;
    let acc = flags & libc::O_ACCMODE;
    let mut f = 0;
    if acc == libc::O_RDONLY || acc == libc::O_RDWR {
        f |= if is_dir { READ_DIR } else { READ_FILE };
    }
    if acc == libc::O_WRONLY || acc == libc::O_RDWR {
        f |= WRITE_FILE;
    }
    if flags & libc::O_TRUNC != 0 {
        f |= TRUNCATE;
    }
    let parent = if flags & libc::O_CREAT != 0 && !exists {
        MAKE_REG
    } else {
        0
    };
    (f, parent)
}

/// `O_WRONLY|O_CREAT|O_TRUNC` for events.
fn flags_text(flags: u64) -> String {
    let flags = flags as i32;
    let mut parts = vec![match flags & libc::O_ACCMODE {
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_RDONLY",
    }];
    parts.extend(bit_names(
        flags,
        &[
            (libc::O_CREAT, "O_CREAT"),
            (libc::O_EXCL, "O_EXCL"),
            (libc::O_TRUNC, "O_TRUNC"),
            (libc::O_APPEND, "O_APPEND"),
        ],
    ));
    parts.join("|")
}

fn remove_right(r: &Resolved) -> Rights {
    if r.mode & libc::S_IFMT == libc::S_IFDIR {
        REMOVE_DIR
    } else {
        REMOVE_FILE
    }
}

fn make_right(mode: u32) -> Rights {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => MAKE_DIR,
        libc::S_IFIFO => MAKE_FIFO,
        libc::S_IFSOCK => MAKE_SOCK,
        libc::S_IFCHR => MAKE_CHAR,
        libc::S_IFBLK => MAKE_BLOCK,
        libc::S_IFLNK => MAKE_SYM,
        _ => MAKE_REG,
    }
}

/// The paths a call touches, with the operation's name and its open flags (if an open).
fn touches(t: &Target, req: &Request) -> Option<(&'static str, Option<u64>, Vec<Touch>)> {
    let a = &req.args;
    let str_at = |p: u64| t.read_cstr(p).ok();
    let path = |dirfd: i32, p: u64, follow: bool| resolve(t, dirfd, &str_at(p)?, follow, false);
    let cwd = libc::AT_FDCWD;
    let touch =
        |r: Resolved, on_file: Rights, on_parent: Rights, changes: bool, opens: bool| Touch {
            resolved: r,
            on_file,
            on_parent,
            changes,
            opens,
        };
    let open = |r: Resolved, flags: u64| {
        let is_dir = r.mode & libc::S_IFMT == libc::S_IFDIR;
        let (f, p) = open_rights(flags, r.id.is_some(), is_dir);
        let changes = f & (WRITE_FILE | TRUNCATE) != 0 || p != 0;
        touch(r, f, p, changes, true)
    };
    let nofollow = |flags: u64| flags as i32 & libc::O_NOFOLLOW == 0;
    // Creating what exists fails with EEXIST, removing or renaming what does not with ENOENT,
    // both before Landlock is asked: nothing to report.
    let creates =
        |r: Resolved, right: Rights| (r.id.is_none()).then(|| touch(r, 0, right, true, false));
    let nr = i64::from(req.nr);
    let r = match nr {
        libc::SYS_openat => {
            let f = a[2];
            (
                "open",
                Some(f),
                vec![open(path(req.int(0), a[1], nofollow(f))?, f)],
            )
        }
        libc::SYS_openat2 => {
            let how: libc::open_how = t.read_value(a[2]).ok()?;
            let f = how.flags;
            (
                "open",
                Some(f),
                vec![open(path(req.int(0), a[1], nofollow(f))?, f)],
            )
        }
        libc::SYS_truncate => (
            "truncate",
            None,
            vec![touch(path(cwd, a[0], true)?, TRUNCATE, 0, true, false)],
        ),
        libc::SYS_unlinkat => {
            let r = path(req.int(0), a[1], false)?;
            r.id?;
            let rm = remove_right(&r);
            ("unlink", None, vec![touch(r, 0, rm, true, false)])
        }
        libc::SYS_renameat | libc::SYS_renameat2 => {
            let from = path(req.int(0), a[1], false)?;
            from.id?;
            let to = path(req.int(2), a[3], false)?;
            rename(from, to)
        }
        libc::SYS_linkat => (
            "link",
            None,
            vec![creates(path(req.int(2), a[3], false)?, MAKE_REG)?],
        ),
        libc::SYS_symlinkat => (
            "symlink",
            None,
            vec![creates(path(req.int(1), a[2], false)?, MAKE_SYM)?],
        ),
        libc::SYS_mkdirat => (
            "mkdir",
            None,
            vec![creates(path(req.int(0), a[1], false)?, MAKE_DIR)?],
        ),
        libc::SYS_mknodat => {
            let right = make_right(a[2] as u32);
            (
                "mknod",
                None,
                vec![creates(path(req.int(0), a[1], false)?, right)?],
            )
        }
        _ => return legacy(t, req),
    };
    Some(r)
}

fn rename(from: Resolved, to: Resolved) -> (&'static str, Option<u64>, Vec<Touch>) {
    let rm = remove_right(&from);
    let mk = make_right(from.mode);
    let over = if to.id.is_some() {
        remove_right(&to)
    } else {
        0
    };
    (
        "rename",
        None,
        vec![
            Touch {
                resolved: from,
                on_file: 0,
                on_parent: rm,
                changes: true,
                opens: false,
            },
            Touch {
                resolved: to,
                on_file: 0,
                on_parent: mk | over,
                changes: true,
                opens: false,
            },
        ],
    )
}

/// The x86_64 calls without a directory fd.
#[cfg(target_arch = "x86_64")]
fn legacy(t: &Target, req: &Request) -> Option<(&'static str, Option<u64>, Vec<Touch>)> {
    let mut r = *req;
    let cwd = libc::AT_FDCWD as u32 as u64;
    // Rewrite each as its *at form and reuse that.
    let (nr, args): (i64, [u64; 6]) = match i64::from(req.nr) {
        libc::SYS_open => (
            libc::SYS_openat,
            [cwd, req.args[0], req.args[1], req.args[2], 0, 0],
        ),
        libc::SYS_creat => (
            libc::SYS_openat,
            [
                cwd,
                req.args[0],
                (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64,
                req.args[1],
                0,
                0,
            ],
        ),
        libc::SYS_unlink => (libc::SYS_unlinkat, [cwd, req.args[0], 0, 0, 0, 0]),
        libc::SYS_rmdir => (
            libc::SYS_unlinkat,
            [cwd, req.args[0], libc::AT_REMOVEDIR as u64, 0, 0, 0],
        ),
        libc::SYS_rename => (
            libc::SYS_renameat,
            [cwd, req.args[0], cwd, req.args[1], 0, 0],
        ),
        libc::SYS_link => (libc::SYS_linkat, [cwd, req.args[0], cwd, req.args[1], 0, 0]),
        libc::SYS_symlink => (
            libc::SYS_symlinkat,
            [req.args[0], cwd, req.args[1], 0, 0, 0],
        ),
        libc::SYS_mkdir => (libc::SYS_mkdirat, [cwd, req.args[0], req.args[1], 0, 0, 0]),
        libc::SYS_mknod => (
            libc::SYS_mknodat,
            [cwd, req.args[0], req.args[1], req.args[2], 0, 0],
        ),
        _ => return None,
    };
    r.nr = nr as i32;
    r.args = args;
    touches(t, &r)
}

#[cfg(not(target_arch = "x86_64"))]
fn legacy(_: &Target, _: &Request) -> Option<(&'static str, Option<u64>, Vec<Touch>)> {
    None
}

/// Which rule a touch breaks, if any: (what, mode).
fn rule_hit(ctx: &Context, tch: &Touch) -> Option<&'static str> {
    let f = &ctx.profile.files;
    let p = display(&tch.resolved.path);
    if tch.opens && f.deny.matches(&p) {
        return Some("deny");
    }
    if tch.changes && f.read_only.matches(&p) {
        return Some("read_only");
    }
    if tch.changes && f.monitor.matches(&p) {
        return Some("monitor");
    }
    None
}

/// Whether the installed rules refuse this touch.
fn refused(ctx: &Context, tch: &Touch) -> bool {
    let h = ctx.fs.handled;
    let need_file = tch.on_file & h;
    let need_parent = tch.on_parent & h;
    let path = &tch.resolved.path;
    let file_ok = need_file == 0 || ctx.fs.rights_at(path) & need_file == need_file;
    let parent_ok = need_parent == 0
        || path
            .parent()
            .is_some_and(|d| ctx.fs.rights_at(d) & need_parent == need_parent);
    !(file_ok && parent_ok)
}

pub fn on_file(ctx: &Context, req: &Request) -> Reply {
    let Ok(t) = Target::open(&ctx.listener, req, false) else {
        return Reply::Continue;
    };
    let Some((op, flags, list)) = touches(&t, req) else {
        return Reply::Continue;
    };
    for tch in &list {
        let hit = rule_hit(ctx, tch);
        let blocked = refused(ctx, tch);
        let (control, rule, mode) = match hit {
            Some("monitor") if !blocked => ("file", "monitor", Mode::Audit),
            Some(_) if blocked && ctx.profile.files.mode != Mode::Enforce => (
                "drift",
                "executables of the image are not writable",
                Mode::Enforce,
            ),
            Some(rule) => ("file", rule, ctx.profile.files.mode),
            // Refused with no file rule matching: the W^X half of drift (an executable of
            // the image, or a directory holding them).
            None if blocked && ctx.plan.landlock_drift && tch.changes => (
                "drift",
                "executables of the image are not writable",
                Mode::Enforce,
            ),
            None => continue,
        };
        let action = if blocked {
            Action::Blocked
        } else {
            Action::Audited
        };
        let path = display(&tch.resolved.path);
        let flags = flags.map(flags_text).unwrap_or_else(|| op.to_string());
        let not_enforced = if mode == Mode::Enforce && !blocked {
            " (not enforced here: created after start, see seawall-micro --check)"
        } else {
            ""
        };
        ctx.events.emit(Draft {
            kind: Kind::File,
            action,
            control,
            message: format!("{control}: {op} {path} {flags} {action} ({rule}){not_enforced}"),
            process: Some(t.process()),
            file: Some(File { path, flags }),
            network: None,
        });
        // One event per call: the first path that matters.
        break;
    }
    Reply::Continue
}
