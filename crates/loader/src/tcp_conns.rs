//! The TCP connections Nightjar follows, joined here rather than in a kernel map.
//!
//! The kernel names every TCP record by its socket cookie and keeps nothing per connection
//! (abi/flow.h): the hash-map updates, deletes and lookups that did this in the kernel were a
//! fifth to a third of a connection's BPF time (BENCHMARKS.md, "Connection owners joined in the
//! agent"). So the owner, start and establishment times live here, keyed by cookie:
//!
//! - `tcp_follow` (never an event) starts a connection: from the connect hook, with its
//!   owner; or at passive establishment, ownerless, with the listener's cgroup;
//! - `tcp_established` (active) takes the owner and start from the entry; (passive, at
//!   accept) gives the entry its owner, the accepting task;
//! - `tcp_close` takes everything from the entry and ends it.
//!
//! A record whose cookie has no entry is not reported: the agent's own connections (their
//! connects are never announced; their accepts are dropped here), connections that began
//! before the agent, and ones evicted when the table was full (counted as lost). The ring
//! buffer keeps the records of one socket in the order the kernel wrote them, so a
//! connection's announcement always comes first.

use std::num::NonZeroUsize;

use lru::LruCache;
use nightjar_abi::*;

/// Most connections followed at once; past it the least recently seen one is forgotten.
pub const TCP_CONNS_MAX: usize = 131_072;

/// What the agent knows of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn {
    start_ns: u64,
    established_ns: u64,
    cgroup_id: u64,
    tgid: u32,
    pid: u32,
    direction: u8,
    owner: u8,
}

/// What to do with a TCP record once joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// Complete now: report it.
    Report,
    /// An announcement, or a connection not followed: no event.
    Skip,
}

/// The followed connections, bounded, by cookie.
#[derive(Debug)]
pub struct TcpConns {
    conns: LruCache<u64, Conn>,
    /// The agent's own process: its accepted connections are not reported.
    own_tgid: u32,
    /// Connections forgotten to make room, since the last [`TcpConns::take_evicted`].
    evicted: u64,
}

impl TcpConns {
    pub fn new(capacity: usize, own_tgid: u32) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            conns: LruCache::new(capacity),
            own_tgid,
            evicted: 0,
        }
    }

    /// Connections followed now.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections forgotten for room since the last call (each a lost lifecycle).
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// A connect() of `cookie` returned `ret`. One that failed before the handshake could
    /// start (no route, no local port...) leaves a socket sock_ops never closes, so it is
    /// forgotten here; a refused or timed-out connect was closed before its syscall returned.
    pub fn connect_returned(&mut self, cookie: u64, ret: i64) {
        const GOES_ON: [i32; 4] = [
            libc::EINTR,
            libc::EALREADY,
            libc::EISCONN,
            libc::EINPROGRESS,
        ];
        if ret < 0 && !GOES_ON.iter().any(|&errno| i64::from(errno) == -ret) {
            self.conns.pop(&cookie);
        }
    }

    /// Joins `ev` to its connection, completing its owner, direction and times in place.
    pub fn join(&mut self, ev: &mut nj_tcp_event) -> Joined {
        match u32::from(ev.hdr.kind) {
            NJ_KIND_TCP_FOLLOW => {
                self.follow(ev);
                Joined::Skip
            }
            NJ_KIND_TCP_ESTABLISHED if u32::from(ev.direction) == NJ_TCP_PASSIVE => {
                self.accepted(ev)
            }
            NJ_KIND_TCP_ESTABLISHED => self.established(ev),
            NJ_KIND_TCP_CLOSE => match self.conns.pop(&ev.cookie) {
                Some(conn) => {
                    complete(ev, &conn);
                    Joined::Report
                }
                None => Joined::Skip,
            },
            _ => Joined::Skip,
        }
    }

    fn follow(&mut self, ev: &nj_tcp_event) {
        let conn = Conn {
            start_ns: ev.start_ns,
            established_ns: ev.established_ns,
            cgroup_id: ev.hdr.cgroup_id,
            tgid: ev.hdr.tgid,
            pid: ev.hdr.pid,
            direction: ev.direction,
            owner: ev.owner,
        };
        // A full table forgets its least recently seen connection; a socket announced again
        // (connect() once more after a failed one) replaces its own entry and loses nothing.
        if let Some((cookie, _)) = self.conns.push(ev.cookie, conn) {
            if cookie != ev.cookie {
                self.evicted += 1;
            }
        }
    }

    fn established(&mut self, ev: &mut nj_tcp_event) -> Joined {
        let Some(conn) = self.conns.get_mut(&ev.cookie) else {
            return Joined::Skip;
        };
        conn.established_ns = ev.established_ns;
        complete(ev, conn);
        Joined::Report
    }

    /// A passive connection's accept: the accepting task (the record's header) owns it.
    fn accepted(&mut self, ev: &mut nj_tcp_event) -> Joined {
        if ev.hdr.tgid == self.own_tgid {
            self.conns.pop(&ev.cookie);
            return Joined::Skip;
        }
        let Some(conn) = self.conns.get_mut(&ev.cookie) else {
            return Joined::Skip;
        };
        conn.tgid = ev.hdr.tgid;
        conn.pid = ev.hdr.pid;
        conn.cgroup_id = ev.hdr.cgroup_id;
        conn.owner = NJ_TCP_OWNER_ACCEPT as u8;
        complete(ev, conn);
        Joined::Report
    }
}

/// Fills what the kernel left to the agent: the owner and the connection's times.
fn complete(ev: &mut nj_tcp_event, conn: &Conn) {
    ev.hdr.tgid = conn.tgid;
    ev.hdr.pid = conn.pid;
    ev.hdr.cgroup_id = conn.cgroup_id;
    ev.start_ns = conn.start_ns;
    ev.established_ns = conn.established_ns;
    ev.direction = conn.direction;
    ev.owner = conn.owner;
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: u32 = 999;

    fn record(kind: u32, cookie: u64, ktime_ns: u64) -> nj_tcp_event {
        let mut ev = nj_tcp_event::default();
        ev.hdr.kind = kind as u16;
        ev.hdr.size = core::mem::size_of::<nj_tcp_event>() as u16;
        ev.hdr.ktime_ns = ktime_ns;
        ev.cookie = cookie;
        ev
    }

    /// The connect hook's announcement: the connecting task owns it.
    fn connect(cookie: u64, tgid: u32, at: u64) -> nj_tcp_event {
        let mut ev = record(NJ_KIND_TCP_FOLLOW, cookie, at);
        (ev.hdr.tgid, ev.hdr.pid, ev.hdr.cgroup_id) = (tgid, tgid + 1, 77);
        ev.start_ns = at;
        ev.direction = NJ_TCP_ACTIVE as u8;
        ev.owner = NJ_TCP_OWNER_CONNECT as u8;
        ev
    }

    /// sock_ops at passive establishment: no owner yet, the listener's cgroup.
    fn passive(cookie: u64, at: u64) -> nj_tcp_event {
        let mut ev = record(NJ_KIND_TCP_FOLLOW, cookie, at);
        ev.hdr.cgroup_id = 55;
        (ev.start_ns, ev.established_ns) = (at, at);
        ev.direction = NJ_TCP_PASSIVE as u8;
        ev
    }

    fn accept(cookie: u64, tgid: u32, at: u64) -> nj_tcp_event {
        let mut ev = record(NJ_KIND_TCP_ESTABLISHED, cookie, at);
        (ev.hdr.tgid, ev.hdr.pid, ev.hdr.cgroup_id) = (tgid, tgid, 66);
        ev.direction = NJ_TCP_PASSIVE as u8;
        ev.owner = NJ_TCP_OWNER_ACCEPT as u8;
        ev
    }

    fn established(cookie: u64, at: u64) -> nj_tcp_event {
        let mut ev = record(NJ_KIND_TCP_ESTABLISHED, cookie, at);
        ev.established_ns = at;
        ev.direction = NJ_TCP_ACTIVE as u8;
        ev
    }

    fn close(cookie: u64, at: u64) -> nj_tcp_event {
        record(NJ_KIND_TCP_CLOSE, cookie, at)
    }

    #[test]
    fn outbound_connection_takes_its_owner_and_times_from_the_connect() {
        let mut conns = TcpConns::new(16, AGENT);
        assert_eq!(conns.join(&mut connect(1, 40, 1_000)), Joined::Skip);
        let mut up = established(1, 1_250);
        assert_eq!(conns.join(&mut up), Joined::Report);
        assert_eq!((up.hdr.tgid, up.hdr.pid, up.hdr.cgroup_id), (40, 41, 77));
        assert_eq!((up.start_ns, up.established_ns), (1_000, 1_250));
        assert_eq!(u32::from(up.owner), NJ_TCP_OWNER_CONNECT);
        assert_eq!(u32::from(up.direction), NJ_TCP_ACTIVE);
        let mut down = close(1, 9_000);
        assert_eq!(conns.join(&mut down), Joined::Report);
        assert_eq!(
            (down.hdr.tgid, down.start_ns, down.established_ns),
            (40, 1_000, 1_250)
        );
        assert_eq!(u32::from(down.direction), NJ_TCP_ACTIVE);
        assert_eq!(down.hdr.ktime_ns, 9_000, "the close keeps its own time");
        assert!(conns.is_empty(), "a close ends the connection");
        assert_eq!(conns.join(&mut close(1, 9_500)), Joined::Skip);
    }

    #[test]
    fn refused_connect_is_reported_at_close_with_its_owner() {
        let mut conns = TcpConns::new(16, AGENT);
        conns.join(&mut connect(2, 40, 1_000));
        let mut down = close(2, 2_000);
        assert_eq!(conns.join(&mut down), Joined::Report);
        assert_eq!((down.hdr.tgid, down.established_ns), (40, 0));
    }

    #[test]
    fn inbound_connection_is_owned_by_whoever_accepts_it() {
        let mut conns = TcpConns::new(16, AGENT);
        assert_eq!(conns.join(&mut passive(3, 1_000)), Joined::Skip);
        let mut up = accept(3, 50, 1_400);
        assert_eq!(conns.join(&mut up), Joined::Report);
        assert_eq!((up.hdr.tgid, up.hdr.cgroup_id), (50, 66));
        assert_eq!((up.start_ns, up.established_ns), (1_000, 1_000));
        assert_eq!(u32::from(up.owner), NJ_TCP_OWNER_ACCEPT);
        let mut down = close(3, 5_000);
        assert_eq!(conns.join(&mut down), Joined::Report);
        assert_eq!((down.hdr.tgid, down.hdr.cgroup_id), (50, 66));
        assert_eq!(u32::from(down.direction), NJ_TCP_PASSIVE);
        assert_eq!(u32::from(down.owner), NJ_TCP_OWNER_ACCEPT);
    }

    #[test]
    fn inbound_connection_closed_before_accept_keeps_the_listener_cgroup() {
        let mut conns = TcpConns::new(16, AGENT);
        conns.join(&mut passive(4, 1_000));
        let mut down = close(4, 3_000);
        assert_eq!(conns.join(&mut down), Joined::Report);
        assert_eq!((down.hdr.tgid, down.hdr.cgroup_id), (0, 55));
        assert_eq!(u32::from(down.owner), NJ_TCP_OWNER_NONE);
    }

    #[test]
    fn the_agents_own_and_unannounced_connections_are_not_reported() {
        let mut conns = TcpConns::new(16, AGENT);
        conns.join(&mut passive(5, 1_000));
        assert_eq!(conns.join(&mut accept(5, AGENT, 1_100)), Joined::Skip);
        assert_eq!(conns.join(&mut close(5, 1_200)), Joined::Skip);
        // Never announced: the agent's own connect, or one older than the agent.
        assert_eq!(conns.join(&mut established(6, 1_000)), Joined::Skip);
        assert_eq!(conns.join(&mut accept(7, 50, 1_000)), Joined::Skip);
        assert_eq!(conns.join(&mut close(6, 2_000)), Joined::Skip);
        assert!(conns.is_empty());
    }

    #[test]
    fn a_connect_that_failed_before_the_handshake_is_forgotten() {
        let mut conns = TcpConns::new(16, AGENT);
        for (cookie, ret) in [(1, -101), (2, -99), (3, -115), (4, -4), (5, 0)] {
            conns.join(&mut connect(cookie, 40, 1));
            conns.connect_returned(cookie, ret);
        }
        // ENETUNREACH and EADDRNOTAVAIL are gone; in progress, interrupted and done stay.
        assert_eq!(conns.len(), 3);
        assert_eq!(conns.join(&mut close(1, 2)), Joined::Skip);
        for cookie in [3, 4, 5] {
            assert_eq!(
                conns.join(&mut close(cookie, 2)),
                Joined::Report,
                "{cookie}"
            );
        }
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_seen_and_counts_it() {
        let mut conns = TcpConns::new(2, AGENT);
        conns.join(&mut connect(1, 40, 1));
        conns.join(&mut connect(2, 40, 2));
        conns.join(&mut established(1, 3)); // 1 is now the more recently seen
        conns.join(&mut connect(3, 40, 4));
        assert_eq!(conns.take_evicted(), 1);
        assert_eq!(conns.take_evicted(), 0, "taken once");
        assert_eq!(
            conns.join(&mut close(2, 5)),
            Joined::Skip,
            "2 was forgotten"
        );
        assert_eq!(conns.join(&mut close(1, 5)), Joined::Report);
        assert_eq!(conns.join(&mut close(3, 5)), Joined::Report);
    }
}
