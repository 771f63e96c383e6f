//! Network rules for every way out: the denied 127.0.0.1 port by its other names, packet and
//! raw sockets, ICMP datagram sends to a denied address, and listeners on ports the kernel
//! picks (bind to port 0, or listen unbound) when `listen_allow` names only 8080.

use std::net::{SocketAddr, TcpStream};

use crate::{
    run::{eperm, errno, line, worked},
    Ports,
};

fn connect(addr: &str, port: u16) -> Result<(), i32> {
    let a: SocketAddr = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
    .parse()
    .map_err(|_| -1)?;
    TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2))
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn expect_connect_eperm(addr: &str, port: u16) -> Result<(), String> {
    match connect(addr, port) {
        Err(libc::EPERM) => Ok(()),
        Err(e) => Err(format!("connect {addr} port {port}: errno {e}, not EPERM")),
        Ok(()) => Err(format!("connected to {addr} port {port}")),
    }
}

fn socket(domain: i32, ty: i32, protocol: i32) -> i64 {
    // SAFETY: plain syscall; the descriptor is closed at once.
    unsafe {
        let s = libc::socket(domain, ty, protocol);
        if s >= 0 {
            libc::close(s);
        }
        s as i64
    }
}

/// One ICMP echo request to `dst` from an unconnected ping socket: the `sendto` result.
pub(crate) fn ping(dst: [u8; 4]) -> i64 {
    // SAFETY: plain syscalls on a socket this function owns.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
        if s < 0 {
            return -1;
        }
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst),
            },
            sin_zero: [0; 8],
        };
        let echo: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0];
        let r = libc::sendto(
            s,
            echo.as_ptr().cast(),
            echo.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        let e = errno();
        libc::close(s);
        *libc::__errno_location() = e;
        r as i64
    }
}

/// A TCP listener on 127.0.0.1:`port` (`None`: no bind at all): the `listen` result.
fn listen(port: Option<u16>) -> i64 {
    // SAFETY: plain syscalls on a socket this function owns.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if s < 0 {
            return -1;
        }
        if let Some(port) = port {
            let a = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
                },
                sin_zero: [0; 8],
            };
            if libc::bind(
                s,
                (&a as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) != 0
            {
                let e = errno();
                libc::close(s);
                *libc::__errno_location() = e;
                return -2;
            }
        }
        let r = libc::listen(s, 4);
        let e = errno();
        libc::close(s);
        *libc::__errno_location() = e;
        r as i64
    }
}

/// The aliases of the denied 127.0.0.1 port.
pub const ALIASES: &[&str] = &["127.0.0.2", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"];

pub fn checks(ports: &Ports) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, r: Result<(), String>| out.push(line(name, r));
    check(
        "net_connect_denied_eperm",
        expect_connect_eperm("127.0.0.1", ports.denied),
    );
    check(
        "net_connect_allowed",
        connect("127.0.0.1", ports.allowed).map_err(|e| format!("errno {e}")),
    );
    for (i, a) in ALIASES.iter().enumerate() {
        check(
            &format!("net_alias_{i}_eperm"),
            expect_connect_eperm(a, ports.denied),
        );
    }
    check(
        "net_packet_socket_eperm",
        eperm(
            "socket(AF_PACKET)",
            socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
        ),
    );
    check(
        "net_raw_socket_eperm",
        eperm(
            "socket(SOCK_RAW)",
            socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        ),
    );
    check(
        "net_icmp_send_denied_eperm",
        eperm("sendto", ping([127, 0, 0, 3])),
    );
    check(
        "net_icmp_send_allowed",
        worked("sendto", ping([127, 0, 0, 1])),
    );
    check(
        "net_listen_port_zero_eperm",
        eperm("listen", listen(Some(0))),
    );
    check("net_listen_unbound_eperm", eperm("listen", listen(None)));
    check(
        "net_listen_allowed_port",
        worked("listen", listen(Some(8080))),
    );
    out
}

pub fn scope_checks(ports: &Ports) -> Vec<String> {
    vec![
        line(
            "scope_net_outside_allowed",
            connect("127.0.0.1", ports.denied).map_err(|e| format!("errno {e}")),
        ),
        line(
            "scope_packet_socket_outside_allowed",
            worked(
                "socket(AF_PACKET)",
                socket(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
            ),
        ),
        line(
            "scope_listen_port_zero_outside_allowed",
            worked("listen", listen(Some(0))),
        ),
    ]
}
