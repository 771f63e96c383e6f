//! The SHA-256 of an executed file, computed once per file version.
//!
//! A version is (device, inode, change time): any write to a file moves its ctime, and a
//! container cannot set ctime back (that takes the clock, CAP_SYS_TIME). So an exec of a file
//! already hashed costs one `fstat`, and only a new or changed file is read. The cache is
//! bounded; when full it is emptied rather than grown (a re-hash is slow, not wrong).
//!
//! Known limit, written down: between the hash (at the exec permission event) and the
//! kernel's `deny_write_access` a writer could still change the file. A file the container can
//! write is in its upper layer or on a volume, which drift prevention refuses anyway.

use std::{collections::HashMap, io, os::fd::BorrowedFd};

use nix::sys::{stat::fstat, uio::pread};
use ring::digest;
use seawall_intel::Sha256;

/// One version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_ctime`, seconds.
    pub ctime: i64,
    /// `st_ctime`, nanoseconds.
    pub ctime_nsec: i64,
}

impl FileVersion {
    /// The version of an open file.
    pub fn of(file: BorrowedFd<'_>) -> io::Result<FileVersion> {
        let m = fstat(file)?;
        Ok(FileVersion {
            dev: m.st_dev,
            ino: m.st_ino,
            ctime: m.st_ctime,
            ctime_nsec: m.st_ctime_nsec,
        })
    }
}

/// Most file versions remembered.
const CAPACITY: usize = 65_536;

/// Hashes of executed files, by version.
#[derive(Default)]
pub struct ExecHashes {
    known: HashMap<FileVersion, Sha256>,
    /// Files read (cache misses), for `seawall status` and tests.
    hashed: u64,
}

impl ExecHashes {
    /// The SHA-256 of `file`'s content, from the cache when this version was hashed before.
    /// Reads from the start whatever the file's offset (the descriptor fanotify hands over is
    /// fresh, but the caller need not know that).
    pub fn sha256(&mut self, file: BorrowedFd<'_>) -> io::Result<Sha256> {
        let version = FileVersion::of(file)?;
        if let Some(h) = self.known.get(&version) {
            return Ok(*h);
        }
        let hash = hash_from_start(file)?;
        // The file may have changed while it was read: cache only a version that held still.
        if FileVersion::of(file)? == version {
            if self.known.len() >= CAPACITY {
                self.known.clear();
            }
            self.known.insert(version, hash);
        }
        self.hashed += 1;
        Ok(hash)
    }

    /// How many times a file had to be read.
    pub fn files_hashed(&self) -> u64 {
        self.hashed
    }
}

fn hash_from_start(file: BorrowedFd<'_>) -> io::Result<Sha256> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = 0i64;
    loop {
        let n = match pread(file, &mut buf, offset) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        ctx.update(&buf[..n]);
        offset += n as i64;
    }
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(Sha256(out))
}

#[cfg(test)]
fn hash_reader(mut r: impl io::Read) -> io::Result<Sha256> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::Context::finish(ctx).as_ref());
    Ok(Sha256(out))
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        io::{Seek, SeekFrom, Write},
        os::fd::AsFd,
    };

    use super::*;

    #[test]
    fn hashes_match_the_published_vectors_and_are_cached_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"abc").unwrap();
        let mut hashes = ExecHashes::default();
        let mut f = File::open(&path).unwrap();
        // Read from the start even when the offset moved.
        f.seek(SeekFrom::End(0)).unwrap();
        let h = hashes.sha256(f.as_fd()).unwrap();
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hashes.sha256(File::open(&path).unwrap().as_fd()).unwrap(),
            h
        );
        assert_eq!(hashes.files_hashed(), 1, "the second exec is a cache hit");

        // A write makes a new version: hashed again, to the new content.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut w = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"d").unwrap();
        drop(w);
        let h2 = hashes.sha256(File::open(&path).unwrap().as_fd()).unwrap();
        assert_eq!(
            h2.to_string(),
            "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"
        );
        assert_eq!(hashes.files_hashed(), 2);
    }

    #[test]
    fn empty_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let mut hashes = ExecHashes::default();
        assert_eq!(
            hashes
                .sha256(File::open(&empty).unwrap().as_fd())
                .unwrap()
                .to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let big = dir.path().join("big");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&big, &bytes).unwrap();
        let streamed = hash_reader(&bytes[..]).unwrap();
        assert_eq!(
            hashes.sha256(File::open(&big).unwrap().as_fd()).unwrap(),
            streamed
        );
    }
}
