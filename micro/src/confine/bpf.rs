//! A seccomp filter as data (syscall rules with argument conditions) and its translation into
//! classic BPF. Conditions only ever look at registers, never at memory a thread could change.
//! Integer arguments are compared on their low 32 bits, because that is all the kernel reads of
//! an `int`: a raw-syscall caller may put anything in the upper half.

/// What the filter answers for a syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Fail with this errno without running the syscall.
    Errno(u16),
    /// Ask the supervisor (`SECCOMP_RET_USER_NOTIF`).
    Notify,
    /// Kill the whole process.
    KillProcess,
}

impl Verdict {
    fn ret(self) -> u32 {
        match self {
            Verdict::Allow => libc::SECCOMP_RET_ALLOW,
            Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Verdict::Notify => libc::SECCOMP_RET_USER_NOTIF,
            Verdict::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }
}

/// A test on one syscall argument register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `(arg as u32) & mask == value`.
    MaskedEq { arg: u8, mask: u32, value: u32 },
    /// `(arg as u32) & mask != value`.
    MaskedNe { arg: u8, mask: u32, value: u32 },
    /// The full 64-bit argument is not zero (a pointer was passed).
    NonZero { arg: u8 },
}

impl Cond {
    /// `(arg as u32) == value`.
    pub fn eq(arg: u8, value: u32) -> Cond {
        Cond::MaskedEq {
            arg,
            mask: u32::MAX,
            value,
        }
    }
    /// `(arg as u32) & bits != 0`.
    pub fn any_bit(arg: u8, bits: u32) -> Cond {
        Cond::MaskedNe {
            arg,
            mask: bits,
            value: 0,
        }
    }
}

/// Conditions that must all hold for the verdict to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    pub conds: Vec<Cond>,
    pub verdict: Verdict,
}

/// What one syscall number gets: the first arm whose conditions hold, else `otherwise`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRule {
    pub nr: u32,
    pub arms: Vec<Arm>,
    pub otherwise: Verdict,
}

impl SyscallRule {
    /// The same verdict whatever the arguments.
    pub fn always(nr: i64, verdict: Verdict) -> SyscallRule {
        SyscallRule {
            nr: nr as u32,
            arms: Vec::new(),
            otherwise: verdict,
        }
    }
}

/// A whole filter.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    /// `AUDIT_ARCH_*` of this build; any other architecture gets `foreign`.
    pub arch: u32,
    /// Syscall numbers with this bit set (x32 on x86_64) also get `foreign`.
    pub foreign_nr_bit: Option<u32>,
    pub foreign: Verdict,
    pub rules: Vec<SyscallRule>,
    pub default: Verdict,
}

const LD_W_ABS: u16 = 0x20;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JSET_K: u16 = 0x45;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn off_arg_lo(arg: u8) -> u32 {
    16 + 8 * u32::from(arg)
}
fn off_arg_hi(arg: u8) -> u32 {
    off_arg_lo(arg) + 4
}

#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

enum Ins {
    Stmt(u16, u32),
    Jump(u16, u32, Target, Target),
}

/// Too many instructions between a conditional jump and its target (classic BPF offsets are
/// 8 bits); the filter is built from rules small enough that this is a bug.
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter: a conditional jump spans {0} instructions (at most 255)")]
pub struct JumpTooFar(usize);

#[derive(Default)]
struct Asm {
    ins: Vec<Ins>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.ins.len());
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.ins.push(Ins::Stmt(code, k));
    }
    fn jump(&mut self, code: u16, k: u32, t: Target, f: Target) {
        self.ins.push(Ins::Jump(code, k, t, f));
    }
    fn ret(&mut self, v: Verdict) {
        self.stmt(RET_K, v.ret());
    }
    fn finish(self) -> Result<Vec<libc::sock_filter>, JumpTooFar> {
        let mut out = Vec::with_capacity(self.ins.len());
        for (i, ins) in self.ins.iter().enumerate() {
            out.push(match *ins {
                Ins::Stmt(code, k) => libc::sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Ins::Jump(code, k, t, f) => {
                    let off = |t: Target| -> Result<u8, JumpTooFar> {
                        match t {
                            Target::Next => Ok(0),
                            Target::Label(l) => {
                                let to = self.labels[l].expect("every label is bound");
                                let d = to - (i + 1);
                                u8::try_from(d).map_err(|_| JumpTooFar(d))
                            }
                        }
                    };
                    libc::sock_filter {
                        code,
                        jt: off(t)?,
                        jf: off(f)?,
                        k,
                    }
                }
            });
        }
        Ok(out)
    }

    /// Falls through when `c` holds, jumps to `fail` when it does not.
    fn cond(&mut self, c: Cond, fail: usize) {
        match c {
            Cond::MaskedEq { arg, mask, value } | Cond::MaskedNe { arg, mask, value } => {
                self.stmt(LD_W_ABS, off_arg_lo(arg));
                if mask != u32::MAX {
                    self.stmt(ALU_AND_K, mask);
                }
                let (t, f) = if matches!(c, Cond::MaskedEq { .. }) {
                    (Target::Next, Target::Label(fail))
                } else {
                    (Target::Label(fail), Target::Next)
                };
                self.jump(JMP_JEQ_K, value, t, f);
            }
            Cond::NonZero { arg } => {
                let ok = self.label();
                self.stmt(LD_W_ABS, off_arg_lo(arg));
                self.jump(JMP_JEQ_K, 0, Target::Next, Target::Label(ok));
                self.stmt(LD_W_ABS, off_arg_hi(arg));
                self.jump(JMP_JEQ_K, 0, Target::Label(fail), Target::Next);
                self.bind(ok);
            }
        }
    }
}

impl FilterSpec {
    /// The BPF program.
    pub fn assemble(&self) -> Result<Vec<libc::sock_filter>, JumpTooFar> {
        let mut a = Asm::default();
        let native = a.label();
        a.stmt(LD_W_ABS, OFF_ARCH);
        a.jump(JMP_JEQ_K, self.arch, Target::Label(native), Target::Next);
        a.ret(self.foreign);
        a.bind(native);
        a.stmt(LD_W_ABS, OFF_NR);
        if let Some(bit) = self.foreign_nr_bit {
            let ok = a.label();
            a.jump(JMP_JSET_K, bit, Target::Next, Target::Label(ok));
            a.ret(self.foreign);
            a.bind(ok);
        }
        for rule in &self.rules {
            let next_rule = a.label();
            // The accumulator holds the number at the top of every rule: arms load arguments,
            // so each rule reloads it.
            a.stmt(LD_W_ABS, OFF_NR);
            a.jump(JMP_JEQ_K, rule.nr, Target::Next, Target::Label(next_rule));
            for arm in &rule.arms {
                let next_arm = a.label();
                for &c in &arm.conds {
                    a.cond(c, next_arm);
                }
                a.ret(arm.verdict);
                a.bind(next_arm);
            }
            a.ret(rule.otherwise);
            a.bind(next_rule);
        }
        a.ret(self.default);
        a.finish()
    }
}

#[cfg(test)]
mod tests;
