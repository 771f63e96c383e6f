//! What the running kernel (and the container runtime's own seccomp profile) lets an
//! unprivileged process install on itself. Probed once at start; the control plan follows.

use std::fmt;

/// Kernel features the controls are built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Landlock ABI version (0 when Landlock is missing, disabled, or its syscalls are blocked).
    pub landlock_abi: i32,
    /// `SECCOMP_RET_USER_NOTIF` is available.
    pub user_notif: bool,
    /// `SECCOMP_ADDFD_FLAG_SEND` (5.14): put an fd in the caller and answer in one step.
    pub addfd_send: bool,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (5.19): once a notification is taken, only a
    /// fatal signal interrupts the caller, so an operation done on its behalf is not repeated.
    pub wait_killable: bool,
    /// `MFD_NOEXEC_SEAL` (6.3): memfds that can never be executed.
    pub memfd_noexec: bool,
}

impl Features {
    pub fn probe() -> Features {
        let release = kernel_release();
        let at_least = |maj: u32, min: u32| release >= (maj, min);
        Features {
            landlock_abi: landlock_abi(),
            user_notif: user_notif(),
            addfd_send: at_least(5, 14),
            wait_killable: at_least(5, 19),
            memfd_noexec: memfd_noexec(),
        }
    }

    /// What supervising on someone's behalf needs: taking the call, answering with an fd,
    /// and not being interrupted half-way.
    pub fn on_behalf(&self) -> bool {
        self.user_notif && self.addfd_send && self.wait_killable
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "landlock ABI {}, seccomp user notification {}, addfd+send {}, killable wait {}, memfd noexec {}",
            self.landlock_abi,
            yes(self.user_notif),
            yes(self.addfd_send),
            yes(self.wait_killable),
            yes(self.memfd_noexec)
        )
    }
}

fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: no attribute, size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

fn user_notif() -> bool {
    let action: u32 = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        ) == 0
    }
}

fn memfd_noexec() -> bool {
    // SAFETY: a valid name; the fd is closed right away.
    unsafe {
        let fd = libc::memfd_create(c"seawall-probe".as_ptr(), libc::MFD_NOEXEC_SEAL);
        if fd < 0 {
            return false;
        }
        libc::close(fd);
        true
    }
}

/// `(major, minor)` of the running kernel, `(0, 0)` when unreadable.
fn kernel_release() -> (u32, u32) {
    // SAFETY: uname fills the struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return (0, 0);
    }
    let rel: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    parse_release(&rel)
}

fn parse_release(rel: &str) -> (u32, u32) {
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let maj = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let min = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (maj, min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v857"), (6, 18));
        assert_eq!(parse_release("5.4.0"), (5, 4));
        assert_eq!(parse_release("garbage"), (0, 0));
    }

    #[test]
    fn probe_runs() {
        let f = Features::probe();
        assert!(f.to_string().contains("landlock ABI"));
    }
}
