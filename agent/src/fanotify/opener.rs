//! Who opened the file, and how. fanotify's event fd is opened with the group's own flags, so
//! its fdinfo says nothing about the opener's intent (checked: `flags: 0100000` whatever the
//! opener asked); the opener's flags are the syscall arguments of the very thread that is
//! blocked waiting for our answer (`FAN_REPORT_TID`), from `/proc/<tid>/syscall`. Fail closed:
//! any syscall this does not know to be an `open(2)` of the 64-bit ABI — `openat2` (its flags
//! live in memory another thread can change), the 32-bit entry points, x32, io_uring workers —
//! has unknown flags, and unknown flags count as a write.

/// The open flags of the syscall thread `tid` is blocked in, when they are known.
pub fn pending_open_flags(tid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
    parse_syscall_flags(&text)
}

/// Flags from a `/proc/<tid>/syscall` line: `nr arg0 … arg5 sp pc`. Only the x86-64 open
/// family is trusted: a 32-bit `int 0x80` shows its own numbers (5 is `open` there, `fstat`
/// here), which never collide with an x86-64 open (i386 2/85/257 are fork/readlink/
/// remap_file_pages, which open nothing).
pub fn parse_syscall_flags(text: &str) -> Option<i32> {
    let mut it = text.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    let args: Vec<u64> = it
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let flags = match nr {
        2 => *args.get(1)?,   // open(path, flags, mode)
        257 => *args.get(2)?, // openat(dirfd, path, flags, mode)
        85 => (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64, // creat
        _ => return None,
    };
    Some(flags as i32)
}

/// Whether the flags ask to change the file; unknown flags do (fail closed).
pub fn writes(flags: Option<i32>) -> bool {
    match flags {
        Some(f) => {
            f & libc::O_ACCMODE != libc::O_RDONLY || f & (libc::O_TRUNC | libc::O_CREAT) != 0
        }
        None => true,
    }
}

/// `O_WRONLY|O_CREAT|O_TRUNC` style text.
pub fn flags_text(flags: i32) -> String {
    let mut parts = vec![match flags & libc::O_ACCMODE {
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_RDONLY",
    }];
    for (bit, name) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
    ] {
        if flags & bit != 0 {
            parts.push(name);
        }
    }
    parts.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_64_bit_open_family_has_known_flags() {
        // openat(AT_FDCWD, p, O_WRONLY|O_CREAT|O_TRUNC, 0666)
        let line = "257 0xffffffffffffff9c 0x7ffd1234 0x241 0x1b6 0x0 0x0 0x7ffd0000 0x7f000000\n";
        assert_eq!(parse_syscall_flags(line), Some(0x241));
        assert_eq!(parse_syscall_flags("2 0x7ffd 0x0 0x0 0 0 0 0 0"), Some(0));
        assert_eq!(parse_syscall_flags("running\n"), None);
        // openat2: flags are in user memory another thread may change.
        assert_eq!(
            parse_syscall_flags("437 0xffffff9c 0x4000 0x7ffd 0x18 0 0 0 0"),
            None
        );
        // i386 open(2) through int 0x80 is number 5.
        assert_eq!(
            parse_syscall_flags("5 0x4c50a0 0x401 0x1a4 0 0 0 0x7ffd 0x401000"),
            None
        );
        // x32 openat.
        assert_eq!(parse_syscall_flags("1073742081 0 0 0x241 0 0 0 0 0"), None);
        // io_uring_enter: an io_uring open.
        assert_eq!(parse_syscall_flags("426 0x3 0x1 0x0 0x1 0 0 0 0"), None);
    }

    #[test]
    fn unknown_flags_count_as_a_write() {
        assert!(writes(None));
        assert!(writes(Some(0x241)));
        assert!(writes(Some(libc::O_RDWR)));
        assert!(!writes(Some(libc::O_RDONLY | libc::O_CLOEXEC)));
        assert_eq!(flags_text(0x241), "O_WRONLY|O_CREAT|O_TRUNC");
    }
}
