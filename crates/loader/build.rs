//! Builds the BPF C programs under bpf/ with clang and links them into one object.
//!
//! Each hook family (bpf/<family>/<hook>.bpf.c) compiles on its own; `bpftool gen object`
//! then links them so they share one ring buffer and one set of counters. The linked objects
//! are embedded in the binary and also copied to `target/bpf/` for inspection (docs/bpf.md).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Hook families linked into nightjar.bpf.o, in link order.
const FAMILIES: &[&str] = &[
    "process/process",
    "process/cgroup",
    "file/file",
    "sys/privilege",
    "sys/system",
    "sys/dispatch",
    "net/socket",
    "net/tc_flow",
    "net/connect_policy",
    "net/tcp_life",
    "net/xdp_guard",
];

/// Standalone objects: loaded one by one (feature probes may fail to load on some kernels).
const STANDALONE: &[&str] = &["probe/features", "bench/drain"];

fn main() {
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf = root.join("bpf");
    println!("cargo:rerun-if-changed={}", bpf.display());

    // The programs read syscall arguments in x86-64's register layout and compile against an
    // x86-64 vmlinux.h: on another architecture they would load and misread, so refuse here.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" {
        fail(&format!(
            "Nightjar's BPF programs support x86_64 only, not {arch}: another architecture needs \
             its own bpf/include/vmlinux/<arch>/vmlinux.h and syscall register mapping \
             (bpf/lib/syscall.bpf.h)"
        ));
    }
    let clang = find_clang();
    let bpftool = find_tool(&["bpftool", "/usr/sbin/bpftool"])
        .unwrap_or_else(|| fail("bpftool not found: apt-get install -y bpftool"));

    // Two builds of the hook families: kernel structs read through bpf_rdonly_cast'ed BTF
    // pointers (bpf/lib/kread.bpf.h), and with probe reads for kernels without that kfunc.
    for (linked, kcast) in [
        ("nightjar.bpf.o", true),
        ("nightjar-probe-read.bpf.o", false),
    ] {
        let mut inputs = Vec::new();
        for family in FAMILIES {
            // "process/cgroup" -> "cgroup": the family's last component names its object.
            let name = family.rsplit('/').next().unwrap_or(family);
            let obj = out.join(format!("{name}.{}.unlinked.o", u8::from(kcast)));
            compile(
                &clang,
                &bpf,
                &bpf.join(format!("{family}.bpf.c")),
                &obj,
                kcast,
            );
            inputs.push(obj);
        }
        link(&bpftool, &out.join(linked), &inputs);
    }
    for family in STANDALONE {
        let name = family.rsplit('/').next().unwrap_or(family);
        let obj = out.join(format!("{name}.unlinked.o"));
        compile(
            &clang,
            &bpf,
            &bpf.join(format!("{family}.bpf.c")),
            &obj,
            true,
        );
        link(&bpftool, &out.join(format!("{name}.bpf.o")), &[obj]);
    }

    // A copy where people can find it: target/bpf/*.bpf.o.
    let target_dir = env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let inspect = target_dir.join("bpf");
    let _ = std::fs::create_dir_all(&inspect);
    for name in [
        "nightjar.bpf.o",
        "nightjar-probe-read.bpf.o",
        "features.bpf.o",
        "drain.bpf.o",
    ] {
        let _ = std::fs::copy(out.join(name), inspect.join(name));
    }
}

fn compile(clang: &str, bpf: &Path, src: &Path, obj: &Path, kcast: bool) {
    let status = Command::new(clang)
        .args([
            "-target", "bpf", "-O2", "-g", "-mcpu=v3", "-Wall", "-Werror",
        ])
        .arg("-D__TARGET_ARCH_x86")
        .arg(format!("-DNJ_KCAST={}", u8::from(kcast)))
        .arg(format!("-I{}", bpf.join("include/vmlinux/x86").display()))
        .arg(format!("-I{}", bpf.join("include").display()))
        .arg(format!("-I{}", bpf.join("lib").display()))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .status()
        .unwrap_or_else(|e| fail(&format!("running {clang}: {e}")));
    if !status.success() {
        fail(&format!("{clang} failed on {}", src.display()));
    }
}

fn link(bpftool: &str, out: &Path, inputs: &[PathBuf]) {
    let _ = std::fs::remove_file(out);
    let status = Command::new(bpftool)
        .args(["gen", "object"])
        .arg(out)
        .args(inputs)
        .status()
        .unwrap_or_else(|e| fail(&format!("running {bpftool}: {e}")));
    if !status.success() {
        fail(&format!("bpftool gen object failed for {}", out.display()));
    }
}

/// clang-19 if present, else the newest clang >= 14, else a clear message naming the packages.
fn find_clang() -> String {
    if let Ok(clang) = env::var("NIGHTJAR_CLANG") {
        return clang;
    }
    let mut candidates: Vec<String> = vec!["clang-19".into()];
    candidates.extend((14..=30).rev().map(|v| format!("clang-{v}")));
    candidates.push("clang".into());
    for candidate in candidates {
        if let Some(version) = clang_major(&candidate) {
            if version >= 14 {
                return candidate;
            }
        }
    }
    fail("no clang >= 14 found to build the BPF programs: apt-get install -y clang-19 llvm-19 libbpf-dev bpftool")
}

fn clang_major(clang: &str) -> Option<u32> {
    let output = Command::new(clang).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let after = text.split("version ").nth(1)?;
    after.split('.').next()?.trim().parse().ok()
}

fn find_tool(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|c| c.to_string())
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("{message}");
}
