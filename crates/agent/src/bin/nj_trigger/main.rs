//! nj-trigger: does exactly one security-relevant thing, so kernel tests can assert the exact
//! event it causes (in the spirit of Tetragon's tester-progs). Exits 0 when the syscall was
//! made, whatever it returned; prints the return value.
//!
//! Usage: nj-trigger <action> [args...]

mod phantom;

use std::ffi::CString;
use std::process::ExitCode;

fn cstr(s: &str) -> CString {
    CString::new(s).expect("argument without NUL")
}

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| {
        eprintln!("nj-trigger: missing argument {i}");
        std::process::exit(2)
    })
}

fn num(args: &[String], i: usize) -> i64 {
    let text = arg(args, i);
    let parsed = match text.strip_prefix("0o") {
        Some(octal) => i64::from_str_radix(octal, 8),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| {
        eprintln!("nj-trigger: {text:?} is not a number");
        std::process::exit(2)
    })
}

/// Connects a stream socket to `addr` (`1.2.3.4:80`, `[::1]:80`) and closes it.
fn connect(addr: &str) -> i64 {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => 0,
        Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
    }
}

fn tcp_serve(addr: &str, count: usize) -> i64 {
    use std::io::Read;
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    let mut total = 0;
    for _ in 0..count {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut sink = Vec::new();
        total += stream.read_to_end(&mut sink).expect("read") as i64;
    }
    total
}

fn unaccepted(addr: &str) -> i64 {
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    let listening = listener.local_addr().expect("listener address");
    // connect() returns once the handshake is done: the connection waits in the queue.
    let client = std::net::TcpStream::connect(listening).expect("connect");
    drop(listener);
    drop(client);
    i64::from(listening.port())
}

/// Two processes on one CPU taking turns (over pipes) to create `count` files each, relative
/// to their own directory: the parent in `parent_dir`, a forked child in `child_dir`. Each
/// open is the first syscall exit on that CPU since the other process's, so an agent that
/// remembered the wrong task across a switch would resolve it against the other's files.
/// Prints the child's pid; returns the opens that succeeded in the parent.
fn pingpong_open(count: usize, parent_dir: &str, child_dir: &str) -> i64 {
    // The baton: one byte over a pipe; whoever holds it creates its next file.
    fn pass(fd: i32) -> bool {
        // SAFETY: one byte to a pipe end this process owns.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) == 1 }
    }
    fn wait(fd: i32) -> bool {
        let mut byte = [0u8];
        // SAFETY: one byte from a pipe end this process owns.
        unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) == 1 }
    }
    fn create(i: usize) -> bool {
        let name = cstr(&format!("pingpong-{i}"));
        // SAFETY: a valid C string; the descriptor is closed at once.
        unsafe {
            let fd = libc::open(name.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            fd >= 0 && libc::close(fd) == 0
        }
    }
    let (mut to_child, mut to_parent) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipe, fork, sched_setaffinity and chdir on this process and its own child; the
    // child only makes syscalls and leaves with _exit.
    unsafe {
        let mut cpu0: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut cpu0);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpu0) != 0
            || libc::pipe(to_child.as_mut_ptr()) != 0
            || libc::pipe(to_parent.as_mut_ptr()) != 0
        {
            return -1;
        }
        let child = libc::fork();
        if child == 0 {
            let ok = libc::chdir(cstr(child_dir).as_ptr()) == 0
                && (0..count).all(|i| wait(to_child[0]) && create(i) && pass(to_parent[1]));
            libc::_exit(i32::from(!ok));
        }
        if child < 0 || libc::chdir(cstr(parent_dir).as_ptr()) != 0 {
            return -1;
        }
        println!("{child}");
        let mut created = 0;
        for i in 0..count {
            created += i64::from(create(i));
            if !(pass(to_child[1]) && wait(to_parent[0])) {
                break;
            }
        }
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
        if status != 0 {
            return -1;
        }
        created
    }
}

fn tcp_send(addr: &str, count: usize, size: usize) -> i64 {
    use std::io::{Read, Write};
    let payload = vec![0x6bu8; size];
    let mut done = 0;
    for _ in 0..count {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            continue;
        };
        let mut rest = Vec::new();
        if stream.write_all(&payload).is_ok()
            && stream.shutdown(std::net::Shutdown::Write).is_ok()
            && stream.read_to_end(&mut rest).is_ok()
        {
            done += 1;
        }
    }
    done
}

/// A syscall with up to three arguments through the 32-bit syscall ABI (`int 0x80`, ia32
/// numbers), as a 32-bit program or an evasive 64-bit one would make it. Pointers passed
/// must lie below 4 GiB.
fn ia32_syscall(nr: u32, a: u32, b: u32, c: u32) -> i64 {
    let ret: i32;
    // SAFETY: int 0x80 reads eax, ebx, ecx and edx and clobbers r8-r11, all declared to the
    // compiler; the syscalls made here only touch this process or the memory passed.
    unsafe {
        // rbx is reserved by the compiler: swap the first argument into it around the call.
        std::arch::asm!(
            "xchg {a:r}, rbx",
            "int 0x80",
            "xchg {a:r}, rbx",
            a = inout(reg) u64::from(a) => _,
            inlateout("eax") nr as i32 => ret,
            in("ecx") b,
            in("edx") c,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    i64::from(ret)
}

/// A private page below 2 GiB (MAP_32BIT), where 32-bit syscalls can point; None if refused.
fn low_page() -> Option<*mut u8> {
    // SAFETY: a fresh anonymous private mapping; callers unmap it.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    (page != libc::MAP_FAILED).then_some(page.cast())
}

/// connect(fd, 127.0.0.1:port) through ia32's socketcall (102, SYS_CONNECT 3): the argument
/// words and the address both in low memory, as a 32-bit program passes them.
fn ia32_socketcall_connect(port: u16) -> i64 {
    const IA32_SOCKETCALL: u32 = 102;
    const SYS_CONNECT: u32 = 3;
    let Some(page) = low_page() else { return -1 };
    // SAFETY: the page is ours and 4096 bytes long; the socket is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        std::ptr::write(page.cast::<libc::sockaddr_in>(), addr);
        let words = page.add(64).cast::<u32>();
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        std::ptr::copy_nonoverlapping([fd as u32, page as u32, len].as_ptr(), words, 3);
        let ret = ia32_syscall(IA32_SOCKETCALL, SYS_CONNECT, words as u32, 0);
        libc::close(fd);
        libc::munmap(page.cast(), 4096);
        ret
    }
}

/// open(path, flags, mode) through the 32-bit ABI (ia32 number 5).
fn ia32_open(path: &str, flags: i32, mode: u32) -> i64 {
    const IA32_OPEN: u32 = 5;
    let bytes = cstr(path);
    let bytes = bytes.as_bytes_with_nul();
    let Some(page) = low_page().filter(|_| bytes.len() <= 4096) else {
        return -1;
    };
    // SAFETY: the page is ours, 4096 bytes long, and the path fits.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), page, bytes.len());
        let ret = ia32_syscall(IA32_OPEN, page as u32, flags as u32, mode);
        libc::munmap(page.cast(), 4096);
        ret
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // SAFETY (for every libc call below): arguments are valid C strings or plain integers,
    // and each call only affects this process or objects the test created for it.
    let ret: i64 = unsafe {
        match arg(&args, 0) {
            "open" => libc::open(cstr(arg(&args, 1)).as_ptr(), libc::O_RDONLY) as i64,
            "create" => libc::open(
                cstr(arg(&args, 1)).as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o640,
            ) as i64,
            "unlink" => libc::unlink(cstr(arg(&args, 1)).as_ptr()) as i64,
            // setresuid16(-1, -1, -1): the first, 16-bit-id setresuid (ia32 164); changes nothing.
            "ia32-setresuid16-keep" => ia32_syscall(164, 0xffff, 0xffff, 0xffff),
            // getitimer(ITIMER_REAL, NULL) through int 0x80 (ia32 105): x86-64's 105 is setuid,
            // which is traced; this must not be reported as one.
            "ia32-getitimer" => ia32_syscall(105, 0, 0, 0),
            // create PATH as seen from ROOT (chroot): the walk to a file's top directory
            // stops at the task's root, not the machine's.
            "chroot-create" => {
                if libc::chroot(cstr(arg(&args, 1)).as_ptr()) != 0
                    || libc::chdir(c"/".as_ptr()) != 0
                {
                    -1
                } else {
                    libc::open(
                        cstr(arg(&args, 2)).as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                        0o640,
                    ) as i64
                }
            }
            "ia32-create" => ia32_open(
                arg(&args, 1),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o640,
            ),
            // unlinkat-in DIR NAME: unlinkat on a descriptor of DIR, NAME relative to it.
            "unlinkat-in" => {
                let dir = libc::open(
                    cstr(arg(&args, 1)).as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY,
                );
                let ret = libc::unlinkat(dir, cstr(arg(&args, 2)).as_ptr(), 0) as i64;
                libc::close(dir);
                ret
            }
            "rename" => {
                libc::rename(cstr(arg(&args, 1)).as_ptr(), cstr(arg(&args, 2)).as_ptr()) as i64
            }
            "chmod" => libc::chmod(cstr(arg(&args, 1)).as_ptr(), num(&args, 2) as u32) as i64,
            "chown" => libc::chown(
                cstr(arg(&args, 1)).as_ptr(),
                num(&args, 2) as u32,
                num(&args, 3) as u32,
            ) as i64,
            "setuid" => libc::setuid(num(&args, 1) as u32) as i64,
            "setgid" => libc::setgid(num(&args, 1) as u32) as i64,
            "ptrace-attach" => {
                let pid = num(&args, 1) as i32;
                let r = libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0);
                if r == 0 {
                    // Detach only from the attach's own SIGSTOP. An attach that lands while
                    // the target is still finishing execve stops first with the exec SIGTRAP;
                    // detaching then would leave the SIGSTOP pending and the target stopped
                    // for good (a stopped process ignores SIGTERM until continued).
                    loop {
                        let mut status = 0;
                        if libc::waitpid(pid, &mut status, libc::__WALL) != pid {
                            break;
                        }
                        if libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGSTOP {
                            libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                            break;
                        }
                        if !libc::WIFSTOPPED(status) {
                            break;
                        }
                        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
                    }
                }
                r
            }
            "kill" => libc::kill(num(&args, 1) as i32, num(&args, 2) as i32) as i64,
            "mount-tmpfs" => libc::mount(
                cstr("nightjar-test").as_ptr(),
                cstr(arg(&args, 1)).as_ptr(),
                cstr("tmpfs").as_ptr(),
                0,
                std::ptr::null(),
            ) as i64,
            "umount" => libc::umount2(cstr(arg(&args, 1)).as_ptr(), 0) as i64,
            // An invalid descriptor: the call is made and fails with EBADF, loading nothing.
            "finit-module" => libc::syscall(libc::SYS_finit_module, -1, cstr("").as_ptr(), 0),
            "bpf-next-id" => {
                let mut attr = [0u8; 128];
                libc::syscall(libc::SYS_bpf, 11, attr.as_mut_ptr(), attr.len())
            }
            "memfd" => libc::memfd_create(cstr(arg(&args, 1)).as_ptr(), 0) as i64,
            // openat2-flipping COUNT PATH: prints "fd access-mode" lines before the count.
            "openat2-flipping" => phantom::openat2(num(&args, 1) as usize, arg(&args, 2)),
            // capset-flipping COUNT: prints "result effective-set" lines before the count.
            "capset-flipping" => phantom::capset(num(&args, 1) as usize),
            // memfd-flipping COUNT A B: prints "fd kernel-name" lines before the count.
            "memfd-flipping" => {
                phantom::memfd(num(&args, 1) as usize, arg(&args, 2), arg(&args, 3))
            }
            "unshare-uts" => libc::unshare(libc::CLONE_NEWUTS) as i64,
            "connect" => connect(arg(&args, 1)),
            "ia32-socketcall-connect" => ia32_socketcall_connect(num(&args, 1) as u16),
            // connect with the address buffer rewritten while the call blocks: TARGET DECOY.
            "connect-rewritten" => phantom::tcp(arg(&args, 1), arg(&args, 2)),
            "connect-unix-rewritten" => phantom::unix(arg(&args, 1), arg(&args, 2)),
            "connect-unix" => match std::os::unix::net::UnixStream::connect(arg(&args, 1)) {
                Ok(_) => 0,
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            },
            // bind + listen + accept one connection, then close.
            "serve-once" => match std::net::TcpListener::bind(arg(&args, 1)) {
                Ok(listener) => match listener.accept() {
                    Ok(_) => 0,
                    Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
                },
                Err(e) => -i64::from(e.raw_os_error().unwrap_or(0)),
            },
            // unaccepted ADDR: a connection queued on a listener that closes without accepting
            // it (the kernel resets it); prints the listener's port.
            "unaccepted" => unaccepted(arg(&args, 1)),
            // pingpong-open COUNT PARENT_DIR CHILD_DIR: see pingpong_open; prints the child's pid.
            "pingpong-open" => pingpong_open(num(&args, 1) as usize, arg(&args, 2), arg(&args, 3)),
            // udp-send ADDR COUNT SIZE: COUNT datagrams of SIZE payload bytes.
            "udp-send" => {
                let socket = std::net::UdpSocket::bind(if arg(&args, 1).starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .expect("bind UDP socket");
                let payload = vec![0x5au8; num(&args, 3) as usize];
                let mut sent = 0;
                for _ in 0..num(&args, 2) {
                    if socket.send_to(&payload, arg(&args, 1)).is_ok() {
                        sent += 1;
                    }
                }
                sent
            }
            // tcp-serve ADDR COUNT: accepts COUNT connections one by one, reads each to EOF,
            // closes it; prints the bytes read.
            "tcp-serve" => tcp_serve(arg(&args, 1), num(&args, 2) as usize),
            // tcp-send ADDR COUNT SIZE: COUNT connections, each sends SIZE bytes, shuts down
            // its side and waits for the server's close; prints the connections completed.
            "tcp-send" => tcp_send(
                arg(&args, 1),
                num(&args, 2) as usize,
                num(&args, 3) as usize,
            ),
            // udp-ports IP BASE COUNT: one 1-byte datagram to each of COUNT ports from BASE,
            // from one socket: COUNT distinct flows.
            "udp-ports" => {
                let ip: std::net::IpAddr = arg(&args, 1).parse().expect("IP address");
                let socket = std::net::UdpSocket::bind((
                    if ip.is_ipv4() {
                        std::net::IpAddr::from([0u8; 4])
                    } else {
                        std::net::IpAddr::from([0u16; 8])
                    },
                    0,
                ))
                .expect("bind UDP socket");
                let base = num(&args, 2) as u16;
                let mut sent = 0;
                for i in 0..num(&args, 3) as u16 {
                    if socket.send_to(b"x", (ip, base + i)).is_ok() {
                        sent += 1;
                    }
                }
                sent
            }
            // spin MS MIB: keeps a CPU busy for MS milliseconds holding MIB MiB of touched memory.
            "spin" => {
                let memory = vec![1u8; (num(&args, 2) as usize) << 20];
                let until = std::time::Instant::now()
                    + std::time::Duration::from_millis(num(&args, 1) as u64);
                let mut x = 0u64;
                while std::time::Instant::now() < until {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box((x, &memory));
                memory.len() as i64
            }
            "exit" => std::process::exit(num(&args, 1) as i32),
            "sleep-ms" => {
                std::thread::sleep(std::time::Duration::from_millis(num(&args, 1) as u64));
                0
            }
            other => {
                eprintln!("nj-trigger: unknown action {other:?}");
                return ExitCode::from(2);
            }
        }
    };
    let ret = if ret < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        ret
    };
    println!("{ret}");
    ExitCode::SUCCESS
}
