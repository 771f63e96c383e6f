//! Seawall's kernel programs. One module per hook family; policy *data* only comes from maps
//! (filled by the agent's profile compiler), never from code.
#![no_std]
#![no_main]
// Kernel memory is read through raw pointers at offsets resolved from BTF; every read goes
// through `bpf_probe_read_kernel`, which the verifier accepts for any address.
#![allow(clippy::missing_safety_doc)]

mod accept;
mod assurance;
mod cgroup;
mod container;
mod emit;
mod env;
mod exec;
mod injection;
mod intel;
mod intel_egress;
mod kernel;
mod listen;
mod lsm;
mod maps;
mod net;
mod process;
mod root;
mod syscalls;
mod walk;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
