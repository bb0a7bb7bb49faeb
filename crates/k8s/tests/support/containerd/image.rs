//! The test image, built in memory: an OCI image archive (oci-layout, index.json, blobs) with
//! one uncompressed layer holding busybox-static and its links, for `ctr images import`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::IMAGE;

/// A statically linked busybox (no ELF interpreter), as busybox-static installs it.
pub(super) fn static_busybox() -> Result<PathBuf, String> {
    for candidate in ["/bin/busybox", "/usr/bin/busybox"] {
        if let Ok(elf) = fs::read(candidate) {
            if is_static_elf64(&elf) {
                return Ok(PathBuf::from(candidate));
            }
            return Err(format!("{candidate} is not a static 64-bit ELF"));
        }
    }
    Err("no /bin/busybox".into())
}

/// A little-endian ELF64 file without a PT_INTERP program header.
fn is_static_elf64(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != PT_INTERP)
    })
}

/// An OCI image archive (oci-layout, index.json, blobs) with one uncompressed layer holding
/// busybox and its links, named [`IMAGE`] for `ctr images import`.
pub(super) fn image_archive(busybox: &Path) -> Vec<u8> {
    let mut layer = Tar::default();
    for dir in ["bin/", "dev/", "etc/", "proc/", "sys/"] {
        layer.entry(dir, 0o755, b'5', "", &[]);
    }
    layer.entry("tmp/", 0o1777, b'5', "", &[]);
    let binary = fs::read(busybox).expect("containerd harness: read busybox");
    layer.entry("bin/busybox", 0o755, b'0', "", &binary);
    for applet in ["sh", "sleep"] {
        layer.entry(&format!("bin/{applet}"), 0o777, b'2', "busybox", &[]);
    }
    let layer = layer.finish();
    let layer_digest = digest(&layer);

    let (os, arch) = ("linux", go_arch());
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": {
            "Cmd": ["/bin/sleep", "1000000"],
            "Env": ["PATH=/bin"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap();
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let manifest_digest = digest(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": arch, "os": os },
            "annotations": {
                "io.containerd.image.name": IMAGE,
                "org.opencontainers.image.ref.name": IMAGE.rsplit(':').next().unwrap(),
            },
        }],
    }))
    .unwrap();

    let mut archive = Tar::default();
    archive.entry(
        "oci-layout",
        0o644,
        b'0',
        "",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    archive.entry("index.json", 0o644, b'0', "", &index);
    archive.entry("blobs/", 0o755, b'5', "", &[]);
    archive.entry("blobs/sha256/", 0o755, b'5', "", &[]);
    for (blob_digest, blob) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let name = format!("blobs/sha256/{}", &blob_digest["sha256:".len()..]);
        archive.entry(&name, 0o644, b'0', "", blob);
    }
    archive.finish()
}

/// The OCI architecture name of this machine.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `sha256:<hex>` of `data`.
fn digest(data: &[u8]) -> String {
    let hex = sha256_hex(data).expect("containerd harness: sha256sum (coreutils) failed");
    format!("sha256:{hex}")
}

/// SHA-256 in hex, by coreutils' sha256sum (no hashing crate in the dependency tree).
pub(super) fn sha256_hex(data: &[u8]) -> Option<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(data).ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let hex = text.split_whitespace().next()?;
    (out.status.success() && hex.len() == 64).then(|| hex.to_owned())
}

/// A minimal ustar writer: directories, regular files and symlinks, owned by root, mtime 0.
#[derive(Debug, Default)]
struct Tar {
    out: Vec<u8>,
}

impl Tar {
    /// `kind` is the ustar typeflag: `b'0'` file, `b'2'` symlink, `b'5'` directory.
    fn entry(&mut self, name: &str, mode: u32, kind: u8, link: &str, data: &[u8]) {
        assert!(
            name.len() < 100 && link.len() < 100,
            "tar name too long: {name}"
        );
        let mut header = [0u8; 512];
        let mut put = |offset: usize, bytes: &[u8]| {
            header[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        put(0, name.as_bytes());
        put(100, format!("{mode:07o}\0").as_bytes());
        put(108, b"0000000\0");
        put(116, b"0000000\0");
        put(124, format!("{:011o}\0", data.len()).as_bytes());
        put(136, b"00000000000\0");
        put(148, b"        ");
        put(156, &[kind]);
        put(157, link.as_bytes());
        put(257, b"ustar\x0000");
        put(265, b"root");
        put(297, b"root");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&header);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.resize(self.out.len() + pad, 0);
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.resize(self.out.len() + 1024, 0);
        self.out
    }
}
