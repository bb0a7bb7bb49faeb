//! `nightjar doctor`: what this kernel supports, and what Nightjar will use instead.

use nightjar_loader::probes::check_privileges;
use nightjar_loader::KernelFeatures;

pub fn run() -> i32 {
    if let Err(err) = check_privileges() {
        eprintln!("nightjar doctor: {err}");
        return 1;
    }
    if let Err(err) = nightjar_loader::features::ensure_kernel_filesystems() {
        eprintln!("nightjar doctor: {err}");
    }
    let features = KernelFeatures::probe();
    print!("{features}");
    let required = ["btf", "ringbuf", "tracepoint", "raw_tracepoint", "tracefs"];
    let missing: Vec<_> = required
        .iter()
        .filter(|name| !features.has(name))
        .copied()
        .collect();
    if missing.is_empty() {
        println!("ready: everything the agent requires is available");
        0
    } else {
        println!("not ready: missing {}", missing.join(", "));
        1
    }
}
