//! Landlock filesystem access rights as one bit mask (the kernel's `LANDLOCK_ACCESS_FS_*` bits),
//! so the rule compiler can do set arithmetic without caring which ABI named which right.

/// A set of `LANDLOCK_ACCESS_FS_*` bits.
pub type Rights = u64;

pub const EXECUTE: Rights = 1 << 0;
pub const WRITE_FILE: Rights = 1 << 1;
pub const READ_FILE: Rights = 1 << 2;
pub const READ_DIR: Rights = 1 << 3;
pub const REMOVE_DIR: Rights = 1 << 4;
pub const REMOVE_FILE: Rights = 1 << 5;
pub const MAKE_CHAR: Rights = 1 << 6;
pub const MAKE_DIR: Rights = 1 << 7;
pub const MAKE_REG: Rights = 1 << 8;
pub const MAKE_SOCK: Rights = 1 << 9;
pub const MAKE_FIFO: Rights = 1 << 10;
pub const MAKE_BLOCK: Rights = 1 << 11;
pub const MAKE_SYM: Rights = 1 << 12;
/// Since ABI 2. Denied by every ruleset unless granted, handled or not.
pub const REFER: Rights = 1 << 13;
/// Since ABI 3.
pub const TRUNCATE: Rights = 1 << 14;

/// Rights a rule on a non-directory may carry (ioctl is never handled here).
pub const FILE_RIGHTS: Rights = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE;
/// Creating any kind of entry in a directory.
pub const MAKE_ANY: Rights =
    MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM;
/// Removing entries from a directory (also needed to rename over one).
pub const REMOVE_ANY: Rights = REMOVE_DIR | REMOVE_FILE;
/// Everything that changes a file or a directory's entries.
pub const WRITE_ANY: Rights = WRITE_FILE | TRUNCATE | MAKE_ANY | REMOVE_ANY | REFER;
/// Reading file contents and listing directories.
pub const READ_ANY: Rights = READ_FILE | READ_DIR;

/// The rights a Landlock ABI version knows (ioctl_dev left out on purpose).
pub fn known_by_abi(abi: i32) -> Rights {
    let v1 = EXECUTE | WRITE_FILE | READ_ANY | REMOVE_ANY | MAKE_ANY;
    match abi {
        i32::MIN..=0 => 0,
        1 => v1,
        2 => v1 | REFER,
        _ => v1 | REFER | TRUNCATE,
    }
}
