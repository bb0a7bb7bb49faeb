//! Network links as they come and go, from rtnetlink (RTMGRP_LINK multicast), so TC programs
//! follow pod veths without polling.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const RTMGRP_LINK: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

/// A link appeared (or changed) or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    Up {
        index: u32,
        name: String,
        /// The rtnetlink kind (`veth`, `bridge`...); `None` for physical devices.
        kind: Option<String>,
    },
    Gone {
        index: u32,
        name: String,
    },
}

/// An rtnetlink socket subscribed to link changes.
#[derive(Debug)]
pub struct LinkWatcher {
    fd: AsyncFd<OwnedFd>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks rtattrs in `b`, calling `f(type, payload)`.
fn attrs(mut b: &[u8], mut f: impl FnMut(u16, &[u8])) {
    while b.len() >= 4 {
        let (Some(len), Some(ty)) = (u16_at(b, 0), u16_at(b, 2)) else {
            return;
        };
        let len = len as usize;
        if len < 4 || len > b.len() {
            return;
        }
        f(ty & 0x3fff, &b[4..len]);
        b = &b[align4(len).min(b.len())..];
    }
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses a buffer of netlink messages into link changes; malformed parts are skipped.
pub fn parse(mut buf: &[u8]) -> Vec<LinkChange> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let (Some(len), Some(ty)) = (u32_at(buf, 0), u16_at(buf, 4)) else {
            break;
        };
        let len = len as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let msg = &buf[16..len];
        if (ty == RTM_NEWLINK || ty == RTM_DELLINK) && msg.len() >= 16 {
            let index = u32_at(msg, 4).unwrap_or(0);
            let (mut name, mut kind) = (None, None);
            attrs(&msg[16..], |t, payload| match t {
                IFLA_IFNAME => name = Some(c_string(payload)),
                IFLA_LINKINFO => attrs(payload, |t, p| {
                    if t == IFLA_INFO_KIND {
                        kind = Some(c_string(p));
                    }
                }),
                _ => {}
            });
            if let Some(name) = name {
                out.push(if ty == RTM_NEWLINK {
                    LinkChange::Up { index, name, kind }
                } else {
                    LinkChange::Gone { index, name }
                });
            }
        }
        if ty == NLMSG_DONE || ty == NLMSG_ERROR {
            break;
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

impl LinkWatcher {
    /// Opens the socket, subscribes to link changes and asks for a dump of the current links,
    /// which arrive as `Up` changes first. Needs a tokio runtime.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let raw: RawFd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: a zeroed sockaddr_nl with family and groups set is valid for bind.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // RTM_GETLINK dump: nlmsghdr (16) + ifinfomsg (16).
        let mut req = [0u8; 32];
        req[0..4].copy_from_slice(&32u32.to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&1u32.to_ne_bytes());
        // SAFETY: sending our own buffer on our own socket (to the kernel: default address).
        let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd takes ownership of the OwnedFd and keeps it open while registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd })
    }

    /// The next batch of changes.
    pub async fn next(&mut self) -> io::Result<Vec<LinkChange>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut guard = self.fd.readable_mut().await?;
            // SAFETY: reading into our own buffer from our own socket.
            let n = unsafe {
                libc::recv(
                    guard.get_inner().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    continue;
                }
                return Err(err);
            }
            return Ok(parse(&buf[..n as usize]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn message(ty: u16, index: u32, name: &str, kind: Option<&str>) -> Vec<u8> {
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        if let Some(kind) = kind {
            body.extend(attr(
                IFLA_LINKINFO,
                &attr(IFLA_INFO_KIND, format!("{kind}\0").as_bytes()),
            ));
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 10]);
        msg.extend(body);
        msg
    }

    #[test]
    fn parses_new_and_removed_links() {
        let mut buf = message(RTM_NEWLINK, 7, "veth1", Some("veth"));
        buf.extend(message(RTM_DELLINK, 5, "eth9", None));
        assert_eq!(
            parse(&buf),
            vec![
                LinkChange::Up {
                    index: 7,
                    name: "veth1".into(),
                    kind: Some("veth".into())
                },
                LinkChange::Gone {
                    index: 5,
                    name: "eth9".into()
                },
            ]
        );
    }

    #[test]
    fn malformed_input_is_skipped_not_a_panic() {
        let good = message(RTM_NEWLINK, 7, "veth1", Some("veth"));
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        let mut bad = good.clone();
        bad[0] = 0xff;
        let _ = parse(&bad);
    }
}
