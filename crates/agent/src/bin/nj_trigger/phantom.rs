//! Syscalls whose argument memory another thread rewrites while the kernel works on them: the
//! "phantom" attack on syscall monitors. The kernel acts on what it copied at entry; a monitor
//! that reads the caller's buffer when the syscall returns reports whatever is there by then.
//!
//! Connects are made to block by a full accept queue (the listener's backlog is 0 and one
//! connection already waits in it). While one blocks, a second thread writes a decoy address
//! into its buffer, then accepts the waiting connection; the blocked connect then gets in and
//! returns 0. openat2, memfd_create and capset do not block, so their arguments are flipped
//! continuously instead.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How long the connect may block before the kernel gives up (SO_SNDTIMEO).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// When the decoy is written, and then when the waiting connection is accepted.
const REWRITE_AFTER: Duration = Duration::from_millis(100);
const ACCEPT_AFTER: Duration = Duration::from_millis(100);

/// A raw pointer the rewriting thread may write through while `connect` blocks.
struct Buffer<T>(*mut T);
// SAFETY: the pointee outlives the thread (joined before it is freed), and the only other user
// is the kernel, which copied it at syscall entry.
unsafe impl<T> Send for Buffer<T> {}

/// A thread that calls its function with 1, 0, 1, 0... (which of two values to write) until
/// stopped, as fast as it can.
struct Flipper {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Flipper {
    fn start(flip: impl Fn(usize) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut turn = 0;
            while !stopped.load(Ordering::Relaxed) {
                turn ^= 1;
                flip(turn);
            }
        });
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("flipping thread");
    }
}

/// connect(2) to `target` (an IPv4 `addr:port` nobody listens on yet), with the buffer
/// rewritten to `decoy` while it blocks. Returns connect's result.
pub fn tcp(target: &str, decoy: &str) -> i64 {
    let target: SocketAddrV4 = target.parse().expect("target IPv4 address:port");
    let decoy: SocketAddrV4 = decoy.parse().expect("decoy IPv4 address:port");
    let listener = listening_socket(libc::AF_INET, &sockaddr_in(target));
    // Fills the accept queue: the next SYN is dropped until this one is accepted.
    let _waiting = std::net::TcpStream::connect(target).expect("first connection");
    let len = std::mem::size_of::<libc::sockaddr_in>();
    connect_rewritten(
        libc::AF_INET,
        listener,
        sockaddr_in(target),
        len,
        sockaddr_in(decoy),
    )
}

/// The same over a unix stream socket: connect to `path`, rewritten to `decoy` (a path no
/// longer than `path`) while it blocks.
pub fn unix(path: &str, decoy: &str) -> i64 {
    assert!(
        decoy.len() <= path.len(),
        "the decoy must fit where the path is"
    );
    let listener = listening_socket(libc::AF_UNIX, &sockaddr_un(path));
    // Fills the listener's queue: the next connect waits for a free slot.
    let _waiting = std::os::unix::net::UnixStream::connect(path).expect("first connection");
    // The original length: the decoy (NUL-padded) fits in it.
    let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
    let ret = connect_rewritten(
        libc::AF_UNIX,
        listener,
        sockaddr_un(path),
        len,
        sockaddr_un(decoy),
    );
    let _ = std::fs::remove_file(path);
    ret
}

/// Connects a new socket of `family` to `addr` (`len` bytes of it) while a second thread
/// writes `decoy` over the buffer, then frees a slot in `listener`'s full queue so the blocked
/// call gets in. Closes both sockets; returns connect's result.
fn connect_rewritten<T: Send + 'static>(
    family: libc::c_int,
    listener: libc::c_int,
    addr: T,
    len: usize,
    decoy: T,
) -> i64 {
    assert!(
        len <= std::mem::size_of::<T>(),
        "address length past the buffer"
    );
    let fd = blocking_socket(family);
    let mut buffer = Box::new(addr);
    let rewrite = Buffer(&mut *buffer as *mut T);
    let rewriter = thread::spawn(move || {
        let rewrite = rewrite;
        thread::sleep(REWRITE_AFTER);
        // SAFETY: see Buffer; a volatile write, as the kernel is the only other reader.
        unsafe { std::ptr::write_volatile(rewrite.0, decoy) };
        thread::sleep(ACCEPT_AFTER);
        accept_one(listener);
    });
    // SAFETY: fd is our socket, and the buffer holds a sockaddr of at least len bytes.
    let ret = unsafe { libc::connect(fd, (&*buffer as *const T).cast(), len as libc::socklen_t) };
    let ret = result(ret);
    rewriter.join().expect("rewriting thread");
    close(fd);
    close(listener);
    ret
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn sockaddr_un(path: &str) -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(
        path.len() < addr.sun_path.len(),
        "unix socket path too long"
    );
    for (slot, byte) in addr.sun_path.iter_mut().zip(path.bytes()) {
        *slot = byte as libc::c_char;
    }
    addr
}

/// A stream socket bound to `addr`, listening with a backlog of 0 (one waiting connection fills
/// its queue).
fn listening_socket<T>(family: libc::c_int, addr: &T) -> libc::c_int {
    // SAFETY: plain socket calls on a socket this function creates; addr is a sockaddr of
    // size_of::<T>() bytes.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let len = std::mem::size_of::<T>() as libc::socklen_t;
        let bound = libc::bind(fd, (addr as *const T).cast(), len);
        assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(
            libc::listen(fd, 0),
            0,
            "listen: {}",
            std::io::Error::last_os_error()
        );
        fd
    }
}

/// A stream socket whose connect blocks for at most CONNECT_TIMEOUT.
fn blocking_socket(family: libc::c_int) -> libc::c_int {
    let timeout = libc::timeval {
        tv_sec: CONNECT_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: a new socket and a timeval of the size passed.
    unsafe {
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let set = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        assert_eq!(set, 0, "SO_SNDTIMEO: {}", std::io::Error::last_os_error());
        fd
    }
}

fn accept_one(listener: libc::c_int) {
    // SAFETY: accept on our listening socket, without asking for the peer's address.
    let fd = unsafe { libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut()) };
    assert!(fd >= 0, "accept: {}", std::io::Error::last_os_error());
    close(fd);
}

fn close(fd: libc::c_int) {
    // SAFETY: closes a descriptor this module opened and no longer uses.
    unsafe { libc::close(fd) };
}

/// A libc return value as nj-trigger prints it: the value, or -errno.
fn result(ret: impl Into<i64>) -> i64 {
    let ret = ret.into();
    if ret < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        ret
    }
}

/// memfd_create `count` times with a name buffer that a second thread keeps flipping between
/// `a` and `b` (as long as each other). Prints each descriptor and the name the kernel gave
/// its file (from /proc/self/fd: the kernel's copy, a mix of both when the flip caught it
/// half-way), one per line, so a test can hold each event to it. Returns how many were made.
pub fn memfd(count: usize, a: &str, b: &str) -> i64 {
    assert_eq!(a.len(), b.len(), "the names must be as long as each other");
    let names = [a.as_bytes().to_vec(), b.as_bytes().to_vec()];
    // The buffer both threads use: the name's bytes and a NUL.
    let buffer: Arc<Vec<AtomicU8>> = Arc::new((0..=a.len()).map(|_| AtomicU8::new(0)).collect());
    for (slot, &byte) in buffer.iter().zip(&names[0]) {
        slot.store(byte, Ordering::Relaxed);
    }
    let flipper = {
        let buffer = buffer.clone();
        Flipper::start(move |turn| {
            for (slot, &byte) in buffer.iter().zip(&names[turn]) {
                slot.store(byte, Ordering::Relaxed);
            }
        })
    };
    let mut made = Vec::with_capacity(count);
    for _ in 0..count {
        // SAFETY: the buffer is NUL-terminated (its last byte is never written) and outlives
        // the call; AtomicU8 has the layout of u8.
        let fd = unsafe { libc::memfd_create(buffer.as_ptr().cast(), 0) };
        if fd >= 0 {
            made.push(fd);
        }
    }
    flipper.stop();
    for &fd in &made {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("memfd link");
        let link = link.to_string_lossy();
        let name = link
            .strip_prefix("/memfd:")
            .and_then(|rest| rest.strip_suffix(" (deleted)"))
            .unwrap_or_else(|| panic!("not a memfd link: {link}"));
        println!("{fd} {name}");
        close(fd);
    }
    made.len() as i64
}

/// _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_NET_RAW: u32 = 13;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One 32-bit word of each set, as capget(2) and capset(2) take them.
#[repr(C)]
#[derive(Default)]
struct CapData {
    effective: AtomicU32,
    permitted: AtomicU32,
    inheritable: AtomicU32,
}

/// capset `count` times on this thread with a data buffer whose effective set a second thread
/// keeps flipping between the permitted set and the same without CAP_NET_RAW (both valid).
/// Prints each call's result and the effective set the thread then had (CapEff in
/// /proc/thread-self/status, hex), one line per call, in call order. Returns how many succeeded.
pub fn capset(count: usize) -> i64 {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data: Arc<[CapData; 2]> = Arc::new(Default::default());
    // SAFETY: header and data are what capget(2) takes for version 3; data is AtomicU32s,
    // laid out as u32s.
    let got = unsafe { libc::syscall(libc::SYS_capget, &header, data.as_ptr()) };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    let full = data[0].permitted.load(Ordering::Relaxed);
    let variants = [full, full & !(1 << CAP_NET_RAW)];
    let flipper = {
        let data = data.clone();
        Flipper::start(move |turn| data[0].effective.store(variants[turn], Ordering::Relaxed))
    };
    let mut succeeded = 0;
    for _ in 0..count {
        // SAFETY: as for capget; only this thread's credentials change.
        let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
        let ret = result(ret);
        if ret == 0 {
            succeeded += 1;
        }
        println!("{ret} {}", effective_caps());
    }
    flipper.stop();
    succeeded
}

/// This thread's effective capability set, as /proc/thread-self/status shows it (hex).
fn effective_caps() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(|caps| caps.trim().to_string())
        .expect("CapEff line")
}

/// openat2 `count` times on `path` (an existing file we may write), alternating O_RDONLY and
/// O_WRONLY in open_how's flags, which a second thread keeps flipping between the two as well. Prints each descriptor
/// and the access mode the kernel opened it with (the low bits of `flags` in
/// /proc/self/fdinfo), one per line. Returns how many opens succeeded.
pub fn openat2(count: usize, path: &str) -> i64 {
    #[repr(C)]
    struct OpenHow {
        flags: std::sync::atomic::AtomicU64,
        mode: u64,
        resolve: u64,
    }
    let how = Arc::new(OpenHow {
        flags: std::sync::atomic::AtomicU64::new(libc::O_RDONLY as u64),
        mode: 0,
        resolve: 0,
    });
    let modes = [libc::O_RDONLY as u64, libc::O_WRONLY as u64];
    let flipper = {
        let how = how.clone();
        Flipper::start(move |turn| how.flags.store(modes[turn], Ordering::Relaxed))
    };
    let path = std::ffi::CString::new(path).expect("path without NUL");
    let mut opened = Vec::with_capacity(count);
    for turn in 0..count {
        // Both modes get opened even if the flipping thread is starved of CPU.
        how.flags.store(modes[turn % 2], Ordering::Relaxed);
        // SAFETY: openat2(AT_FDCWD, path, how, size): a NUL-terminated path and an open_how of
        // the size passed (AtomicU64 has u64's layout).
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                path.as_ptr(),
                Arc::as_ptr(&how),
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            opened.push(fd as libc::c_int);
        }
    }
    flipper.stop();
    for &fd in &opened {
        println!("{fd} {}", access_mode(fd));
        close(fd);
    }
    opened.len() as i64
}

/// The access mode (0 read, 1 write, 2 both) descriptor `fd` of this process was opened with.
fn access_mode(fd: libc::c_int) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .expect("flags line");
    u32::from_str_radix(flags.trim(), 8).expect("octal flags") & libc::O_ACCMODE as u32
}
