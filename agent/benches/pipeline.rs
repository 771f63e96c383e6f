//! The userspace hot path, per event: decode the kernel record → enrich it with the container
//! and process tables → serialize the JSON line into the output's buffer, as `Sinks::emit`
//! does when nobody subscribes to the local API (a buffer reused across events, no `String`
//! per event). `cargo xtask bench` runs this and reports events/s (target: above 1,000,000
//! on one core).

use std::hint::black_box;

use agent_common::{
    EventHeader, ExecEvent, NetEvent, ARGS_BUF, EVENT_EXEC, EVENT_NET, FAMILY_INET, NET_OP_CONNECT,
    PATH_BUF, PROTO_TCP,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use seawall::{
    kernel::decode::decode,
    output::event::Enricher,
    runtime::{
        procs::{ProcessInfo, ProcessTable},
        table::{ContainerInfo, ContainerTable},
    },
};

const CGROUP: u64 = 77;
const PID: u32 = 4242;

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: the ABI types are repr(C) with explicit padding; reading their bytes is what the
    // ring buffer does.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

fn header(kind: u32) -> EventHeader {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"wget");
    EventHeader {
        kind,
        control: 0,
        action: 0,
        tgid: PID,
        ppid: 1,
        uid: 0,
        ktime_ns: 123_456_789,
        cgroup_id: CGROUP,
        container_cgroup_id: CGROUP,
        comm,
        seq: 1,
    }
}

/// An exec record as the kernel sends it: path and a NUL-separated argv.
fn exec_record() -> Vec<u8> {
    let path = "/usr/local/bin/wget";
    let args: &[&str] = &[
        "wget",
        "-q",
        "-O",
        "/tmp/index.html",
        "http://127.0.0.1:8080/",
    ];
    let mut e = ExecEvent {
        header: header(EVENT_EXEC),
        flags: 0,
        path_len: path.len() as u32,
        args_len: 0,
        target_tgid: 0,
        path: [0; PATH_BUF],
        args: [0; ARGS_BUF],
    };
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    let joined: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    e.args[..joined.len()].copy_from_slice(&joined);
    e.args_len = joined.len() as u32;
    bytes_of(&e)
}

/// A connect record (what the throughput run generates).
fn net_record() -> Vec<u8> {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    bytes_of(&NetEvent {
        header: header(EVENT_NET),
        op: NET_OP_CONNECT,
        family: FAMILY_INET,
        protocol: PROTO_TCP,
        port: 8080,
        _pad: 0,
        addr,
    })
}

fn tables() -> (ContainerTable, ProcessTable) {
    let mut containers = ContainerTable::default();
    containers.upsert(
        CGROUP,
        ContainerInfo {
            id: "c0ffee".repeat(10) + "c0ff",
            name: "web-1".into(),
            image: "seawall-test/busybox:latest".into(),
            image_id: format!("sha256:{}", "ab".repeat(32)),
            labels: [("com.docker.compose.service".to_string(), "web".to_string())].into(),
            profile: "bench".into(),
            ..Default::default()
        },
    );
    let mut procs = ProcessTable::new(65_536);
    procs.insert(
        PID,
        ProcessInfo {
            ppid: 1,
            uid: 0,
            comm: "sh".into(),
            exe: "/bin/busybox".into(),
            args: vec!["sh".into(), "-c".into(), "wget …".into()],
        },
    );
    (containers, procs)
}

fn pipeline(c: &mut Criterion) {
    let (containers, procs) = tables();
    let mut enricher = Enricher::new("node-1".into(), 1);
    let mut out = Vec::with_capacity(64 << 10);
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    for (name, raw) in [("exec", exec_record()), ("connect", net_record())] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let ev = decode(black_box(&raw)).expect("valid record");
                let event = enricher
                    .kernel_event(&ev, &containers, &procs)
                    .expect("a reported event");
                // The output's BufWriter writes its 64 KiB out when full; here it is emptied.
                if out.len() > 60 << 10 {
                    out.clear();
                }
                event
                    .write_json_line(&mut out)
                    .expect("a Vec takes any write");
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
