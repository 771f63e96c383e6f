//! Sockets with raw syscalls: connects, datagrams, binds, raw and packet sockets, and threads
//! racing the address buffer or the fd behind a send.

use crate::*;

/// A sockaddr for `ip:port` as bytes (sockaddr_in or sockaddr_in6).
fn sockaddr(ip: IpAddr, port: u16) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[4..8].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => {
            let mut b = vec![0u8; 28];
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[8..24].copy_from_slice(&v6.octets());
            b
        }
    }
}

fn family(ip: IpAddr) -> i32 {
    if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

unsafe fn raw_socket(fam: i32, ty: i32, proto: i32) -> Result<i64, i32> {
    sys(libc::syscall(libc::SYS_socket, fam, ty, proto))
}

unsafe fn raw_connect(fd: i64, addr: &[u8]) -> Result<i64, i32> {
    sys(libc::syscall(
        libc::SYS_connect,
        fd,
        addr.as_ptr(),
        addr.len(),
    ))
}

pub fn parse_sa(ip: &str, port: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), port.parse().expect("port"))
}

/// connect IP PORT [v6]: TCP connect with raw syscalls; on success says hello and closes.
/// With `v6`, an AF_INET6 socket is used (for IPv4-mapped addresses).
pub unsafe fn connect(ip: &str, port: &str) {
    let sa = parse_sa(ip, port);
    let fd = match report("socket", raw_socket(family(sa.ip()), libc::SOCK_STREAM, 0)) {
        Ok(fd) => fd,
        Err(_) => return,
    };
    if report("connect", raw_connect(fd, &sockaddr(sa.ip(), sa.port()))).is_ok() {
        let msg = b"hello from the tree\n";
        let _ = sys(libc::syscall(libc::SYS_write, fd, msg.as_ptr(), msg.len()));
    }
    libc::syscall(libc::SYS_close, fd);
}

/// udp IP PORT: one datagram by sendto, one by sendmsg, one by sendmmsg.
pub unsafe fn udp(ip: &str, port: &str) {
    let sa = parse_sa(ip, port);
    let Ok(fd) = report("socket", raw_socket(family(sa.ip()), libc::SOCK_DGRAM, 0)) else {
        return;
    };
    let mut addr = sockaddr(sa.ip(), sa.port());
    let mut data = *b"sendto\n";
    report(
        "sendto",
        sys(libc::syscall(
            libc::SYS_sendto,
            fd,
            data.as_ptr(),
            data.len(),
            0,
            addr.as_ptr(),
            addr.len(),
        )),
    )
    .ok();
    data.copy_from_slice(b"sendms\n");
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut h: libc::msghdr = std::mem::zeroed();
    h.msg_name = addr.as_mut_ptr().cast();
    h.msg_namelen = addr.len() as u32;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    report("sendmsg", sys(libc::syscall(libc::SYS_sendmsg, fd, &h, 0))).ok();
    let mut mm: [libc::mmsghdr; 1] = std::mem::zeroed();
    mm[0].msg_hdr = h;
    report(
        "sendmmsg",
        sys(libc::syscall(libc::SYS_sendmmsg, fd, mm.as_mut_ptr(), 1, 0)),
    )
    .ok();
}

/// race-connect ALLOWED_IP PORT DENIED_IP PORT SECONDS: one thread flips the sockaddr buffer
/// between two addresses while others connect through it as fast as they can.
pub unsafe fn race_connect(allowed: SocketAddr, denied: SocketAddr, secs: &str) {
    let a = sockaddr(allowed.ip(), allowed.port());
    let d = sockaddr(denied.ip(), denied.port());
    let buf: &'static mut [u8] = Box::leak(a.clone().into_boxed_slice());
    let addr = buf.as_mut_ptr() as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let flipper = std::thread::spawn(move || {
        let p = addr as *mut u8;
        let mut flip = false;
        while !s.load(Ordering::Relaxed) {
            let src = if flip { &d } else { &a };
            std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len());
            flip = !flip;
        }
    });
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (ok, refused) = (ok.clone(), refused.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let Ok(fd) = raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0) else {
                        continue;
                    };
                    match sys(libc::syscall(libc::SYS_connect, fd, addr as *const u8, 16)) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                    };
                    libc::syscall(libc::SYS_close, fd);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    println!(
        "race-connect: ok={} refused={}",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

/// race-sendmsg IP PORT SECONDS: one thread swaps fd N between a unix datagram socket and a
/// UDP socket (dup2) while another sends a datagram to IP:PORT through N.
pub unsafe fn race_sendmsg(ip: &str, port: &str, secs: &str) {
    let mut pair = [0i32; 2];
    let Ok(_) = sys(libc::syscall(
        libc::SYS_socketpair,
        libc::AF_UNIX,
        libc::SOCK_DGRAM,
        0,
        pair.as_mut_ptr(),
    ) as i64) else {
        println!("race-sendmsg: socketpair {}", name(errno()));
        return;
    };
    let udp = match raw_socket(libc::AF_INET, libc::SOCK_DGRAM, 0) {
        Ok(fd) => fd as i32,
        Err(e) => {
            println!("race-sendmsg: socket {}", name(e));
            return;
        }
    };
    let target = 100i32;
    libc::syscall(libc::SYS_dup2, pair[0], target);
    let addr = sockaddr(ip.parse().unwrap(), port.parse().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let (unix, u) = (pair[0], udp);
    let swapper = std::thread::spawn(move || {
        let mut flip = false;
        while !s.load(Ordering::Relaxed) {
            libc::syscall(libc::SYS_dup2, if flip { u } else { unix }, target);
            flip = !flip;
        }
    });
    let (mut ok, mut refused) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(secs.parse().unwrap());
    let data = b"raced\n";
    while Instant::now() < deadline {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_name = addr.as_ptr() as *mut _;
        h.msg_namelen = addr.len() as u32;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        match sys(libc::syscall(libc::SYS_sendmsg, target, &h, 0)) {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    println!("race-sendmsg: ok={ok} refused={refused}");
}

/// raw-socket: packet and raw sockets, each way they can be asked for.
pub unsafe fn raw_sockets() {
    report(
        "socket(AF_PACKET)",
        raw_socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
    )
    .ok();
    report(
        "socket(AF_INET, SOCK_RAW)",
        raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
    )
    .ok();
    // High garbage in the int register: the kernel reads the low half.
    report(
        "socket(SOCK_RAW, high bits)",
        sys(libc::syscall(
            libc::SYS_socket,
            0x7777_0000_0000_0002u64,
            0x5555_0000_0000_0003u64,
            1,
        )),
    )
    .ok();
}

/// bind PORT: a TCP socket bound to 127.0.0.1:PORT and listening.
pub unsafe fn bind(port: &str) {
    let Ok(fd) = report("socket", raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0)) else {
        return;
    };
    let addr = sockaddr("127.0.0.1".parse().unwrap(), port.parse().unwrap());
    if report(
        "bind",
        sys(libc::syscall(libc::SYS_bind, fd, addr.as_ptr(), addr.len())),
    )
    .is_ok()
    {
        report("listen", sys(libc::syscall(libc::SYS_listen, fd, 1))).ok();
    }
}

/// wait-connect FILE IP PORT: waits (up to 20 s) until FILE exists, then connects.
pub unsafe fn wait_connect(file: &str, ip: &str, port: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(file).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    connect(ip, port);
}
