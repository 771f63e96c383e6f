//! The seccomp filter a plan asks for: which syscalls the supervisor sees, which ones are
//! refused outright, and the ABI and namespace doors that are shut whatever the profile.

use libc::{c_long, SYS_bind, SYS_connect, SYS_execve, SYS_execveat, SYS_sendmmsg, SYS_sendmsg};

use super::bpf::{Arm, Cond, FilterSpec, SyscallRule, Verdict};
use crate::plan::{FileWatch, Plan};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// x32 syscalls run on the x86_64 architecture with this bit set in the number.
#[cfg(target_arch = "x86_64")]
const FOREIGN_NR_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const FOREIGN_NR_BIT: Option<u32> = None;

const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u32;

const WRITE_INTENT: u32 = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u32;

/// ptrace(2) requests that write a word of the tracee's memory (the same on every libc; its
/// constants differ in type between glibc and musl).
pub const PTRACE_POKETEXT: u32 = 4;
pub const PTRACE_POKEDATA: u32 = 5;

const EPERM: Verdict = Verdict::Errno(libc::EPERM as u16);
const ENOSYS: Verdict = Verdict::Errno(libc::ENOSYS as u16);

/// Where the supervisor sits, for the pid guard used when Landlock cannot scope signals.
#[derive(Debug, Clone, Copy)]
pub struct SupervisorIds {
    pub pid: u32,
    pub pgid: u32,
}

/// The syscalls the file watch looks at, with the index of their `open` flags argument when
/// they have one.
fn file_syscalls() -> Vec<(c_long, Option<u8>)> {
    let mut v: Vec<(c_long, Option<u8>)> = vec![
        (libc::SYS_openat, Some(2)),
        (libc::SYS_openat2, None),
        (libc::SYS_truncate, None),
        (libc::SYS_unlinkat, None),
        (libc::SYS_renameat, None),
        (libc::SYS_renameat2, None),
        (libc::SYS_linkat, None),
        (libc::SYS_symlinkat, None),
        (libc::SYS_mkdirat, None),
        (libc::SYS_mknodat, None),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_open, Some(1)),
        (libc::SYS_creat, None),
        (libc::SYS_unlink, None),
        (libc::SYS_rmdir, None),
        (libc::SYS_rename, None),
        (libc::SYS_link, None),
        (libc::SYS_symlink, None),
        (libc::SYS_mkdir, None),
        (libc::SYS_mknod, None),
    ]);
    v
}

/// Syscalls whose `arg` is a pid the tree must not aim at the supervisor.
fn pid_guarded() -> Vec<(c_long, u8)> {
    vec![
        (libc::SYS_kill, 0),
        (libc::SYS_tkill, 0),
        (libc::SYS_tgkill, 0),
        (libc::SYS_rt_sigqueueinfo, 0),
        (libc::SYS_rt_tgsigqueueinfo, 0),
        (libc::SYS_pidfd_open, 0),
        (libc::SYS_ptrace, 1),
        (libc::SYS_process_vm_readv, 0),
        (libc::SYS_process_vm_writev, 0),
    ]
}

/// Code mappings the supervisor judges (drift), decided here on the registers: everything
/// without PROT_EXEC stays in the kernel, and so do anonymous mappings when the profile lets
/// code be written into memory (`allow_anonymous_exec`, JITs); under W^X they are notified too,
/// and so is `shmat` with `SHM_EXEC`.
pub(crate) fn code_map_rules(anonymous_exec: bool) -> Vec<SyscallRule> {
    let exec = Cond::any_bit(2, libc::PROT_EXEC as u32);
    let mut mmap = vec![exec];
    if anonymous_exec {
        mmap.push(Cond::MaskedEq {
            arg: 3,
            mask: libc::MAP_ANONYMOUS as u32,
            value: 0,
        });
    }
    let mut rules = vec![SyscallRule {
        nr: libc::SYS_mmap as u32,
        arms: vec![Arm {
            conds: mmap,
            verdict: Verdict::Notify,
        }],
        otherwise: Verdict::Allow,
    }];
    if !anonymous_exec {
        rules.push(SyscallRule {
            nr: libc::SYS_shmat as u32,
            arms: vec![Arm {
                conds: vec![Cond::any_bit(2, SHM_EXEC)],
                verdict: Verdict::Notify,
            }],
            otherwise: Verdict::Allow,
        });
    }
    for nr in [libc::SYS_mprotect, libc::SYS_pkey_mprotect] {
        rules.push(SyscallRule {
            nr: nr as u32,
            arms: vec![Arm {
                conds: vec![exec],
                verdict: Verdict::Notify,
            }],
            otherwise: Verdict::Allow,
        });
    }
    // READ_IMPLIES_EXEC would make every PROT_READ mapping executable without PROT_EXEC in
    // the arguments; 0xffffffff only asks for the current persona.
    rules.push(SyscallRule {
        nr: libc::SYS_personality as u32,
        arms: vec![Arm {
            conds: vec![
                Cond::MaskedNe {
                    arg: 0,
                    mask: u32::MAX,
                    value: u32::MAX,
                },
                Cond::any_bit(0, READ_IMPLIES_EXEC),
            ],
            verdict: EPERM,
        }],
        otherwise: Verdict::Allow,
    });
    rules
}

/// `shmat(2)`'s flag for an executable attachment.
pub const SHM_EXEC: u32 = 0o100000;

/// `personality(2)`'s flag that adds PROT_EXEC to every readable mapping.
pub const READ_IMPLIES_EXEC: u32 = 0x0040_0000;

pub fn filter_spec(plan: &Plan, sup: SupervisorIds) -> FilterSpec {
    let notify_ok = plan.features.user_notif;
    let mut rules: Vec<SyscallRule> = Vec::new();

    // Doors that stay shut: io_uring would do every other call below without a syscall;
    // clone3 hides its flags in memory (ENOSYS makes libc fall back to clone); namespaces
    // would give the tree a world the supervisor does not see.
    for nr in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_clone3,
    ] {
        rules.push(SyscallRule::always(nr, ENOSYS));
    }
    #[cfg(target_arch = "x86_64")]
    rules.push(SyscallRule::always(libc::SYS_uselib, ENOSYS));
    rules.push(SyscallRule::always(libc::SYS_setns, EPERM));
    rules.push(SyscallRule {
        nr: libc::SYS_unshare as u32,
        arms: vec![Arm {
            conds: vec![Cond::any_bit(0, NAMESPACE_FLAGS)],
            verdict: EPERM,
        }],
        otherwise: Verdict::Allow,
    });
    rules.push(SyscallRule {
        nr: libc::SYS_clone as u32,
        arms: vec![
            Arm {
                conds: vec![Cond::any_bit(0, NAMESPACE_FLAGS)],
                verdict: EPERM,
            },
            // Two processes sharing one address space would let one remap what the supervisor
            // just checked for the other's mprotect (vfork shares it with a parent that waits).
            Arm {
                conds: vec![Cond::MaskedEq {
                    arg: 0,
                    mask: (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_VFORK) as u32,
                    value: libc::CLONE_VM as u32,
                }],
                verdict: EPERM,
            },
            // Two processes sharing one fd table would let one swap the socket behind a
            // number the supervisor just checked for the other.
            Arm {
                conds: vec![
                    Cond::any_bit(0, libc::CLONE_FILES as u32),
                    Cond::MaskedEq {
                        arg: 0,
                        mask: libc::CLONE_THREAD as u32,
                        value: 0,
                    },
                ],
                verdict: EPERM,
            },
        ],
        otherwise: Verdict::Allow,
    });
    if notify_ok {
        // The supervisor reads the tree's memory and fds: a process may not hide them.
        rules.push(SyscallRule {
            nr: libc::SYS_prctl as u32,
            arms: vec![Arm {
                conds: vec![Cond::eq(0, libc::PR_SET_DUMPABLE as u32), Cond::eq(1, 0)],
                verdict: EPERM,
            }],
            otherwise: Verdict::Allow,
        });
    }
    if plan.guard_pid_in_filter {
        for (nr, arg) in pid_guarded() {
            let mut arms = vec![Arm {
                conds: vec![Cond::eq(arg, sup.pid)],
                verdict: EPERM,
            }];
            if nr == libc::SYS_kill {
                for target in [u32::MAX /* -1 */, sup.pgid.wrapping_neg()] {
                    arms.push(Arm {
                        conds: vec![Cond::eq(0, target)],
                        verdict: EPERM,
                    });
                }
            }
            rules.push(SyscallRule {
                nr: nr as u32,
                arms,
                otherwise: Verdict::Allow,
            });
        }
        rules.push(SyscallRule {
            nr: libc::SYS_setpgid as u32,
            arms: vec![Arm {
                conds: vec![Cond::eq(1, sup.pgid)],
                verdict: EPERM,
            }],
            otherwise: Verdict::Allow,
        });
    }

    if plan.watch_exec {
        rules.push(SyscallRule::always(SYS_execve, Verdict::Notify));
        rules.push(SyscallRule::always(SYS_execveat, Verdict::Notify));
    }
    if plan.memfd_noexec {
        rules.push(SyscallRule::always(libc::SYS_memfd_create, Verdict::Notify));
    }
    if plan.watch_code_maps {
        rules.extend(code_map_rules(plan.anonymous_exec));
    }
    // W^X: a ptrace write ignores page protections, so it could put code onto another
    // process's code pages (the supervisor reports it; without notification it is refused).
    if plan.drift != seawall_profile::Mode::Off && !plan.anonymous_exec {
        let verdict = match (notify_ok, plan.drift) {
            (true, _) => Some(Verdict::Notify),
            (false, seawall_profile::Mode::Enforce) => Some(EPERM),
            _ => None,
        };
        if let Some(verdict) = verdict {
            rules.push(SyscallRule {
                nr: libc::SYS_ptrace as u32,
                arms: [PTRACE_POKETEXT, PTRACE_POKEDATA]
                    .map(|r| Arm {
                        conds: vec![Cond::eq(0, r)],
                        verdict,
                    })
                    .to_vec(),
                otherwise: Verdict::Allow,
            });
        }
    }

    let net = plan.net_on_behalf || plan.net_watch;
    if plan.net_on_behalf {
        rules.push(SyscallRule::always(libc::SYS_socket, Verdict::Notify));
    } else if plan.raw_sockets != seawall_profile::Mode::Off {
        let raw = if notify_ok { Verdict::Notify } else { EPERM };
        let ty = |t: i32| Cond::MaskedEq {
            arg: 1,
            mask: 0xf,
            value: t as u32,
        };
        rules.push(SyscallRule {
            nr: libc::SYS_socket as u32,
            arms: vec![
                Arm {
                    conds: vec![Cond::eq(0, libc::AF_PACKET as u32)],
                    verdict: raw,
                },
                Arm {
                    conds: vec![ty(libc::SOCK_RAW)],
                    verdict: raw,
                },
                Arm {
                    conds: vec![ty(crate::notify::SOCK_PACKET)],
                    verdict: raw,
                },
            ],
            otherwise: Verdict::Allow,
        });
    }
    if net {
        rules.push(SyscallRule::always(SYS_connect, Verdict::Notify));
        if plan.listen_rules {
            rules.push(SyscallRule::always(SYS_bind, Verdict::Notify));
        }
        if plan.egress_rules {
            rules.push(SyscallRule {
                nr: libc::SYS_sendto as u32,
                arms: vec![Arm {
                    conds: vec![Cond::NonZero { arg: 4 }],
                    verdict: Verdict::Notify,
                }],
                otherwise: Verdict::Allow,
            });
            rules.push(SyscallRule::always(SYS_sendmsg, Verdict::Notify));
            rules.push(SyscallRule::always(SYS_sendmmsg, Verdict::Notify));
        }
    }

    if plan.watch_files != FileWatch::None {
        for (nr, flags) in file_syscalls() {
            let rule = match (flags, plan.watch_files) {
                (Some(arg), FileWatch::Changes) => SyscallRule {
                    nr: nr as u32,
                    arms: vec![Arm {
                        conds: vec![Cond::any_bit(arg, WRITE_INTENT)],
                        verdict: Verdict::Notify,
                    }],
                    otherwise: Verdict::Allow,
                },
                _ => SyscallRule::always(nr, Verdict::Notify),
            };
            rules.push(rule);
        }
    }

    FilterSpec {
        rules: merge_same_nr(rules),
        arch: AUDIT_ARCH,
        foreign_nr_bit: FOREIGN_NR_BIT,
        // Seen, reported and killed by the supervisor; killed by the kernel without one.
        foreign: if notify_ok {
            Verdict::Notify
        } else {
            Verdict::KillProcess
        },
        default: Verdict::Allow,
    }
}

/// One rule per syscall number: the filter answers with the first rule whose number matches,
/// so a second rule for the same call (the ptrace pid guard and the W^X poke rule) would never
/// be reached. Rules whose `otherwise` lets the call through are merged arm by arm.
pub(crate) fn merge_same_nr(rules: Vec<SyscallRule>) -> Vec<SyscallRule> {
    let mut out: Vec<SyscallRule> = Vec::with_capacity(rules.len());
    for r in rules {
        match out
            .iter_mut()
            .find(|o| o.nr == r.nr && o.otherwise == Verdict::Allow)
        {
            Some(o) if r.otherwise == Verdict::Allow => o.arms.extend(r.arms),
            _ => out.push(r),
        }
    }
    out
}
