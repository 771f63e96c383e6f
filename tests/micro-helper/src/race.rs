//! Two threads racing the supervisor's check of a code mapping: one swaps what the check looked
//! at (the file behind an fd, or the file mapped at an address), the other asks for the
//! executable mapping and, when it gets one, calls it. The code files are raw x86_64 functions
//! (tests/micro/code_race.rs writes them): the image's returns 1, the dropped one prints
//! `DROPPED-CODE-RAN` with a raw write and returns 2.

use crate::*;

const PAGE: usize = 4096;

unsafe fn open_ro(path: &str) -> i64 {
    let p = cstr(path);
    let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY);
    if fd < 0 {
        println!("open {path}: {}", name(errno()));
        std::process::exit(3);
    }
    fd
}

/// Calls the function at `addr`: 1 from the image's code, 2 from the dropped code.
unsafe fn call(addr: usize) -> i32 {
    let f: extern "C" fn() -> i32 = std::mem::transmute(addr);
    f()
}

/// Counts of what the mapping thread saw.
#[derive(Default)]
struct Tally {
    image: usize,
    dropped: usize,
    refused: usize,
    other: usize,
}

impl Tally {
    fn add(&mut self, ran: i32) {
        match ran {
            1 => self.image += 1,
            2 => self.dropped += 1,
            _ => self.other += 1,
        }
    }
    fn print(&self, op: &str) {
        println!(
            "{op}: image={} dropped={} refused={} other={}",
            self.image, self.dropped, self.refused, self.other
        );
    }
}

/// race-map IMAGE DROPPED SECONDS: fd N holds IMAGE; a second thread keeps `dup2`ing DROPPED
/// and IMAGE onto N while the first maps N `PROT_READ|PROT_EXEC` and calls what it got.
pub unsafe fn race_map(image: &str, dropped: &str, secs: &str) {
    let (img, drp) = (open_ro(image), open_ro(dropped));
    let n = libc::syscall(libc::SYS_dup, img);
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let swapper = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            libc::syscall(libc::SYS_dup2, drp, n);
            libc::syscall(libc::SYS_dup2, img, n);
        }
    });
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let mut t = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    while Instant::now() < deadline {
        let r = libc::syscall(
            libc::SYS_mmap,
            0usize,
            PAGE,
            rx,
            libc::MAP_PRIVATE,
            n,
            0usize,
        );
        if r < 0 {
            t.refused += 1;
            continue;
        }
        // The swapper changes the fd table, not this mapping: calling it is safe.
        t.add(call(r as usize));
        libc::syscall(libc::SYS_munmap, r, PAGE);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    t.print("race-map");
}

/// race-protect IMAGE DROPPED SECONDS: the first thread maps IMAGE readable at a fixed address
/// and asks `mprotect(PROT_READ|PROT_EXEC)` for it, while a second keeps mapping DROPPED and
/// IMAGE readable over that address (`MAP_FIXED`). After each mprotect the first thread pauses
/// the second, then calls the address if it is executable.
pub unsafe fn race_protect(image: &str, dropped: &str, secs: &str) {
    let (img, drp) = (open_ro(image), open_ro(dropped));
    let ro = libc::PROT_READ as u64;
    let fixed = (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64;
    let base = libc::syscall(
        libc::SYS_mmap,
        0usize,
        PAGE,
        ro,
        libc::MAP_PRIVATE,
        img,
        0usize,
    );
    if base < 0 {
        println!("race-protect: mmap {}", name(errno()));
        return;
    }
    let addr = base as usize;
    let stop = Arc::new(AtomicBool::new(false));
    // 1: the swapper should pause; 2: it has.
    let pause = Arc::new(AtomicUsize::new(0));
    let (s, p) = (stop.clone(), pause.clone());
    let swapper = std::thread::spawn(move || {
        let mut flip = false;
        while !s.load(Ordering::Relaxed) {
            if p.load(Ordering::Acquire) != 0 {
                p.store(2, Ordering::Release);
                while p.load(Ordering::Acquire) != 0 && !s.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                continue;
            }
            let fd = if flip { img } else { drp };
            libc::syscall(libc::SYS_mmap, addr, PAGE, ro, fixed, fd, 0usize);
            flip = !flip;
        }
    });
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let mut t = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    while Instant::now() < deadline {
        let r = libc::syscall(libc::SYS_mprotect, addr, PAGE, rx);
        pause.store(1, Ordering::Release);
        while pause.load(Ordering::Acquire) != 2 {
            std::hint::spin_loop();
        }
        if r < 0 {
            t.refused += 1;
        } else if executable(addr) {
            t.add(call(addr));
        } else {
            // The swapper mapped over it again before pausing.
            t.other += 1;
        }
        // Back to the image, readable only, for the next round.
        libc::syscall(libc::SYS_mmap, addr, PAGE, ro, fixed, img, 0usize);
        pause.store(0, Ordering::Release);
    }
    stop.store(true, Ordering::Relaxed);
    pause.store(0, Ordering::Release);
    let _ = swapper.join();
    t.print("race-protect");
}

/// Whether `/proc/self/maps` shows `addr` executable.
fn executable(addr: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().any(|l| {
        let mut f = l.split(' ');
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            return false;
        };
        let Some((s, e)) = range.split_once('-') else {
            return false;
        };
        let s = usize::from_str_radix(s, 16).unwrap_or(usize::MAX);
        let e = usize::from_str_radix(e, 16).unwrap_or(0);
        s <= addr && addr < e && perms.as_bytes().get(2) == Some(&b'x')
    })
}
