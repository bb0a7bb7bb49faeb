//! The demo workload: a few things an attacker (or a busy service) does, each producing
//! events of a different kind. Runs as `nightjar demo-workload` inside the demo's cgroup.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use anyhow::{Context, Result};

pub fn run() -> Result<()> {
    step("read the shadow password file", || {
        let mut s = String::new();
        std::fs::File::open("/etc/shadow")?.read_to_string(&mut s)?;
        Ok(())
    })?;
    step("run a shell command", || {
        Command::new("/bin/sh")
            .args(["-c", "ls /etc > /dev/null"])
            .status()?;
        Ok(())
    })?;
    step("create, chmod, rename and delete a file", || {
        let dir = std::env::temp_dir().join(format!("nightjar-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let a = dir.join("payload.sh");
        std::fs::write(&a, b"#!/bin/sh\necho hi\n")?;
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755))?;
        let b = dir.join("renamed.sh");
        std::fs::rename(&a, &b)?;
        std::fs::remove_file(&b)?;
        std::fs::remove_dir(&dir)?;
        Ok(())
    })?;
    step("open a TCP connection on loopback", || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut client = TcpStream::connect(addr)?;
        let (mut server, _) = listener.accept()?;
        client.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf)?;
        Ok(())
    })?;
    step("kill another process", || {
        let mut child = Command::new("/bin/sleep").arg("30").spawn()?;
        // SAFETY: plain syscall on a pid we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait()?;
        Ok(())
    })?;
    step("create an anonymous in-memory file", || {
        let name = std::ffi::CString::new("nightjar-demo")?;
        // SAFETY: valid NUL-terminated name; the fd is closed right away.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
        if fd >= 0 {
            unsafe { libc::close(fd) };
        }
        Ok(())
    })?;
    step("drop privileges and try to read /etc/shadow", || {
        Command::new("/bin/sh")
            .args([
                "-c",
                "exec setpriv --reuid=65534 --regid=65534 --clear-groups cat /etc/shadow",
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .context("setpriv")?;
        Ok(())
    })?;
    Ok(())
}

fn step(what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("nightjar demo: {what}");
    f().with_context(|| what.to_string())
}
