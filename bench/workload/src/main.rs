//! `swload serve`: reads one command per line on stdin, runs it, and answers `ok <ns>` (its own
//! wall time, measured inside) or `err <why>`. The same binary runs in the container and on the
//! host, so both sides execute exactly the same loop.
//!
//! Commands:
//! - `open N PATH`: open and close PATH N times (openat + close)
//! - `exec N PATH`: fork+exec PATH N times and wait for each
//! - `tcp N PORT`: N TCP connect/accept pairs on 127.0.0.1:PORT (listener in a thread)
//! - `sh N SCRIPT ARGS...`: run `busybox sh SCRIPT ARGS...` N times (the mixed job)
//! - `udp RATE SECS PORT [THREADS]`: paced UDP connect() calls to 127.0.0.1:PORT, RATE per
//!   second for SECS seconds, shared by THREADS threads (default 1; no datagram is sent);
//!   answers `ok <ns> <calls>`

use std::{
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let start = Instant::now();
        let reply = match run(&words) {
            Ok(extra) => format!("ok {}{extra}", start.elapsed().as_nanos()),
            Err(e) => format!("err {e}"),
        };
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
    }
}

fn num(words: &[&str], i: usize) -> Result<u64, String> {
    words
        .get(i)
        .ok_or_else(|| format!("missing argument {i}"))?
        .parse()
        .map_err(|e| format!("argument {i}: {e}"))
}

fn run(words: &[&str]) -> Result<String, String> {
    match words[0] {
        "open" => {
            let path = words.get(2).ok_or("open N PATH")?;
            for _ in 0..num(words, 1)? {
                std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
            }
            Ok(String::new())
        }
        "exec" => {
            let path = words.get(2).ok_or("exec N PATH")?;
            for _ in 0..num(words, 1)? {
                let st = Command::new(path)
                    .status()
                    .map_err(|e| format!("exec {path}: {e}"))?;
                if !st.success() {
                    return Err(format!("{path}: {st}"));
                }
            }
            Ok(String::new())
        }
        "tcp" => {
            let n = num(words, 1)?;
            let port = num(words, 2)? as u16;
            let l =
                TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind {port}: {e}"))?;
            // The server side closes first, so TIME_WAIT stays on the listening port and the
            // client's ephemeral ports are not used up across runs.
            let acceptor = std::thread::spawn(move || {
                for _ in 0..n {
                    if l.accept().is_err() {
                        break;
                    }
                }
            });
            let mut buf = [0u8; 1];
            for _ in 0..n {
                let mut c = TcpStream::connect(("127.0.0.1", port))
                    .map_err(|e| format!("connect {port}: {e}"))?;
                let _ = c.read(&mut buf);
            }
            acceptor.join().map_err(|_| "acceptor panicked")?;
            Ok(String::new())
        }
        "sh" => {
            let n = num(words, 1)?;
            let script = words.get(2).ok_or("sh N SCRIPT ARGS")?;
            for _ in 0..n {
                let st = Command::new("busybox")
                    .arg("sh")
                    .arg(script)
                    .args(&words[3..])
                    .status()
                    .map_err(|e| format!("busybox sh {script}: {e}"))?;
                if !st.success() {
                    return Err(format!("{script}: {st}"));
                }
            }
            Ok(String::new())
        }
        "udp" => {
            let rate = num(words, 1)?;
            let secs = num(words, 2)?;
            let port = num(words, 3)? as u16;
            // Optional: generator threads sharing the rate (one thread tops out near 200,000/s).
            let threads = if words.len() > 4 {
                num(words, 4)?.max(1)
            } else {
                1
            };
            let results: Vec<Result<u64, String>> = std::thread::scope(|sc| {
                let handles: Vec<_> = (0..threads)
                    .map(|i| {
                        // The first thread takes the remainder, so the rates add up.
                        let share = rate / threads + if i == 0 { rate % threads } else { 0 };
                        sc.spawn(move || udp_paced(share, secs, port))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("generator thread panicked".into()))
                    })
                    .collect()
            });
            let mut calls = 0;
            for r in results {
                calls += r?;
            }
            Ok(format!(" {calls}"))
        }
        other => Err(format!("unknown command {other}")),
    }
}

/// Paced UDP `connect()` calls to 127.0.0.1:`port`, `rate` per second for `secs` seconds;
/// returns how many were made.
fn udp_paced(rate: u64, secs: u64, port: u16) -> Result<u64, String> {
    let s = UdpSocket::bind(("127.0.0.1", 0)).map_err(|e| format!("udp bind: {e}"))?;
    // Pace in 1 ms slices: each slice makes the calls that are due by its end.
    let start = Instant::now();
    let end = Duration::from_secs(secs);
    let mut calls: u64 = 0;
    loop {
        let el = start.elapsed();
        if el >= end {
            break;
        }
        let due = (el.as_nanos() as u64 + 1_000_000) * rate / 1_000_000_000;
        while calls < due {
            s.connect(("127.0.0.1", port))
                .map_err(|e| format!("udp connect: {e}"))?;
            calls += 1;
        }
        let next = Duration::from_nanos((calls * 1_000_000_000) / rate.max(1));
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
    }
    Ok(calls)
}
