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
    print_context_sources();
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

/// Where container and Kubernetes context would come from on this machine.
fn print_context_sources() {
    println!("context sources:");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match nightjar_enrich::mountinfo::find_cgroup2_mount(&mountinfo) {
        Some(root) => println!(
            "  yes  cgroup2         {} (container attribution)",
            root.display()
        ),
        None => println!("  no   cgroup2         no cgroup v2 mount: no container attribution"),
    }
    let socket = std::path::Path::new(nightjar_k8s::cri::DEFAULT_SOCKET);
    if socket.exists() {
        println!(
            "  yes  cri             {} (pod names from the runtime)",
            socket.display()
        );
    } else {
        println!(
            "  no   cri             {} absent (--cri-socket to name another)",
            socket.display()
        );
    }
    match std::env::var("KUBERNETES_SERVICE_HOST") {
        Ok(host) => println!("  yes  kubernetes-api  in cluster ({host}); --kubeconfig otherwise"),
        Err(_) => println!(
            "  no   kubernetes-api  not in a pod; --kubeconfig or --kube-metadata to add context"
        ),
    }
}
