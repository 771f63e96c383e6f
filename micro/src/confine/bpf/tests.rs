use super::*;

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xc000_00b7;

/// Runs `f` in a forked child under `spec` (with no_new_privs) and returns how it ended:
/// `Ok(exit code)` or `Err(signal)`.
fn under(spec: &FilterSpec, f: fn() -> i32) -> Result<i32, i32> {
    let prog = spec.assemble().unwrap();
    // SAFETY: the child only makes syscalls and exits; the parent waits for it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut _,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0
            {
                libc::_exit(100);
            }
            libc::_exit(f());
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        if libc::WIFEXITED(st) {
            Ok(libc::WEXITSTATUS(st))
        } else {
            Err(libc::WTERMSIG(st))
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn spec(rules: Vec<SyscallRule>) -> FilterSpec {
    FilterSpec {
        arch: ARCH,
        foreign_nr_bit: if cfg!(target_arch = "x86_64") {
            Some(0x4000_0000)
        } else {
            None
        },
        foreign: Verdict::KillProcess,
        rules,
        default: Verdict::Allow,
    }
}

#[test]
fn errno_verdicts_and_the_default() {
    let s = spec(vec![SyscallRule::always(
        libc::SYS_getppid,
        Verdict::Errno(42),
    )]);
    assert_eq!(
        under(&s, || unsafe {
            let r = libc::syscall(libc::SYS_getppid);
            if r == -1 && errno() == 42 && libc::getpid() > 0 {
                0
            } else {
                1
            }
        }),
        Ok(0)
    );
}

#[test]
fn argument_conditions_look_at_the_low_half_of_integers_and_all_of_pointers() {
    let s = spec(vec![
        SyscallRule {
            nr: libc::SYS_socket as u32,
            arms: vec![
                Arm {
                    conds: vec![Cond::eq(0, libc::AF_PACKET as u32)],
                    verdict: Verdict::Errno(libc::EPERM as u16),
                },
                Arm {
                    conds: vec![Cond::MaskedEq {
                        arg: 1,
                        mask: 0xf,
                        value: libc::SOCK_RAW as u32,
                    }],
                    verdict: Verdict::Errno(libc::EACCES as u16),
                },
            ],
            otherwise: Verdict::Allow,
        },
        SyscallRule {
            nr: libc::SYS_sendto as u32,
            arms: vec![Arm {
                conds: vec![Cond::NonZero { arg: 4 }],
                verdict: Verdict::Errno(libc::EMSGSIZE as u16),
            }],
            otherwise: Verdict::Allow,
        },
    ]);
    assert_eq!(
        under(&s, || unsafe {
            // High garbage in an int register must not hide AF_PACKET.
            let packet = libc::syscall(libc::SYS_socket, 0xdead_0000_0000_0011u64, 3, 0);
            if packet != -1 || errno() != libc::EPERM {
                return 1;
            }
            let raw = libc::syscall(
                libc::SYS_socket,
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                1,
            );
            if raw != -1 || errno() != libc::EACCES {
                return 2;
            }
            let unix = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            if unix < 0 {
                return 3;
            }
            // A pointer whose low half is zero is still a pointer.
            let r = libc::syscall(libc::SYS_sendto, unix, 0, 0, 0, 0x1_0000_0000u64, 0);
            if r != -1 || errno() != libc::EMSGSIZE {
                return 4;
            }
            let r = libc::syscall(libc::SYS_sendto, unix, 0, 0, 0, 0, 0);
            if r == -1 && errno() == libc::EMSGSIZE {
                return 5;
            }
            0
        }),
        Ok(0)
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn other_abis_are_killed() {
    let s = spec(vec![]);
    // int 0x80 with eax = 20: getpid in the i386 table.
    let r = under(&s, || unsafe {
        let mut ret: i64 = 20;
        std::arch::asm!("int 0x80", inout("rax") ret, options(nostack));
        if ret > 0 {
            0
        } else {
            1
        }
    });
    assert_eq!(r, Err(libc::SIGSYS));
    // x32: getpid (39) with the x32 bit.
    let r = under(&s, || unsafe { libc::syscall(0x4000_0000 + 39) as i32 });
    assert_eq!(r, Err(libc::SIGSYS));
}

#[test]
fn only_file_code_mappings_and_exec_grants_reach_the_supervisor() {
    // Notify with no listener attached is ENOSYS: that is how "sent to the supervisor" shows.
    let s = spec(crate::confine::syscalls::code_map_rules(true));
    let got = under(&s, || unsafe {
        let fd = libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY);
        let map = |prot: i32, flags: i32, fd: i32| {
            let p = libc::mmap(std::ptr::null_mut(), 4096, prot, flags, fd, 0);
            if p == libc::MAP_FAILED {
                Err(errno())
            } else {
                Ok(p)
            }
        };
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let checks = [
            map(rx, libc::MAP_PRIVATE, fd).err() == Some(libc::ENOSYS),
            map(libc::PROT_READ, libc::MAP_PRIVATE, fd).is_ok(),
            map(rx, anon, -1).is_ok(),
            match map(libc::PROT_READ, anon, -1) {
                Ok(p) => {
                    libc::mprotect(p, 4096, rx) == -1
                        && errno() == libc::ENOSYS
                        && libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_WRITE) == 0
                }
                Err(_) => false,
            },
            libc::personality(0x0040_0000) == -1 && errno() == libc::EPERM,
            libc::personality(0xffff_ffff) >= 0,
        ];
        checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 1)
    });
    assert_eq!(got, Ok(0), "the first check that failed, counting from 1");
}

#[test]
fn under_w_xor_x_anonymous_code_mappings_reach_the_supervisor_too() {
    let s = spec(crate::confine::syscalls::code_map_rules(false));
    let got = under(&s, || unsafe {
        let rx = libc::PROT_READ | libc::PROT_EXEC;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let p = libc::mmap(std::ptr::null_mut(), 4096, rx, anon, -1, 0);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let q = libc::mmap(std::ptr::null_mut(), 4096, rw, anon, -1, 0);
        let shm = libc::shmat(-1, std::ptr::null(), 0o100000);
        let checks = [
            p == libc::MAP_FAILED && errno() == libc::ENOSYS,
            q != libc::MAP_FAILED,
            shm as isize == -1 && errno() == libc::ENOSYS,
            libc::shmat(-1, std::ptr::null(), 0) as isize == -1 && errno() == libc::EINVAL,
        ];
        checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 1)
    });
    assert_eq!(got, Ok(0), "the first check that failed, counting from 1");
}

#[test]
fn two_rules_for_one_syscall_are_merged_so_the_second_is_reached() {
    // The ptrace pid guard and the W^X poke rule both name ptrace; unmerged, the first rule's
    // "otherwise allow" would answer every poke.
    let guard = SyscallRule {
        nr: libc::SYS_ptrace as u32,
        arms: vec![Arm {
            conds: vec![Cond::eq(1, 999_999)],
            verdict: Verdict::Errno(libc::EPERM as u16),
        }],
        otherwise: Verdict::Allow,
    };
    let poke = SyscallRule {
        nr: libc::SYS_ptrace as u32,
        arms: vec![Arm {
            conds: vec![Cond::eq(0, crate::confine::syscalls::PTRACE_POKEDATA)],
            verdict: Verdict::Errno(libc::EACCES as u16),
        }],
        otherwise: Verdict::Allow,
    };
    let merged = crate::confine::syscalls::merge_same_nr(vec![guard, poke]);
    assert_eq!(merged.len(), 1);
    let got = under(&spec(merged), || unsafe {
        let ptrace = |req: libc::c_uint, pid: libc::pid_t| {
            libc::ptrace(req, pid, std::ptr::null_mut::<libc::c_void>(), 0) == -1
        };
        let parent = libc::getppid();
        let checks = [
            ptrace(libc::PTRACE_POKEDATA, parent) && errno() == libc::EACCES,
            ptrace(libc::PTRACE_ATTACH, 999_999) && errno() == libc::EPERM,
            // Anything else is the kernel's answer: the parent is not traced by us.
            ptrace(libc::PTRACE_PEEKDATA, parent) && errno() == libc::ESRCH,
        ];
        checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 1)
    });
    assert_eq!(got, Ok(0), "the first check that failed, counting from 1");
}
