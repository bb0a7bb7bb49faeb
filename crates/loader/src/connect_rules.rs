//! Connect rules: which destinations a connect() is reported for (audit) or refused (deny),
//! enforced by cgroup/connect4 and cgroup/connect6 on the cgroup v2 root.

use std::net::{IpAddr, Ipv6Addr};

use nightjar_abi::{NJ_CONNECT_AUDIT, NJ_CONNECT_DENY};

/// What a matching connect gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectAction {
    /// Allowed, and reported as `connect_policy` with verdict `audited`.
    Audit,
    /// Refused with EPERM, and reported with verdict `denied`.
    Deny,
}

impl ConnectAction {
    pub fn name(self) -> &'static str {
        match self {
            ConnectAction::Audit => "audit",
            ConnectAction::Deny => "deny",
        }
    }

    pub(crate) fn code(self) -> u32 {
        match self {
            ConnectAction::Audit => NJ_CONNECT_AUDIT,
            ConnectAction::Deny => NJ_CONNECT_DENY,
        }
    }
}

/// A destination network and optional port, for every process or for one cgroup subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRule {
    pub network: IpAddr,
    pub prefix_len: u8,
    /// `None` matches every port.
    pub port: Option<u16>,
    pub action: ConnectAction,
    /// A cgroup v2 path (relative to the cgroup2 mount, e.g. `/kubepods.slice/...`): the rule
    /// binds only processes in that cgroup and below. `None`: everywhere.
    pub scope: Option<String>,
}

/// An IPv4 or IPv6 network, as the kernel tries keep it: IPv4 as IPv4-mapped IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (/32 or /128).
    pub fn parse(entry: &str) -> Result<Self, RuleError> {
        let fail = |reason: &str| RuleError {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (addr, len) = match entry.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (entry, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| fail("not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| fail(&format!("prefix length must be 0-{max}")))?,
            None => max,
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }

    /// Bit length and masked address in the IPv4-mapped form.
    pub fn mapped(&self) -> (u32, [u8; 16]) {
        let (addr, bits) = match self.network {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped(), 96 + u32::from(self.prefix_len)),
            IpAddr::V6(v6) => (v6, u32::from(self.prefix_len)),
        };
        (bits, masked(addr, bits))
    }
}

impl std::fmt::Display for ConnectRule {
    /// The destination in canonical form: `10.1.0.0/16:443`, `[fd00::/8]:53`, `10.0.0.0/8`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cidr = Cidr {
            network: self.network,
            prefix_len: self.prefix_len,
        };
        match (self.port, self.network.is_ipv6()) {
            (None, _) => write!(f, "{cidr}")?,
            (Some(port), false) => write!(f, "{cidr}:{port}")?,
            (Some(port), true) => write!(f, "[{cidr}]:{port}")?,
        }
        match &self.scope {
            Some(scope) => write!(f, "@{scope}"),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for Cidr {
    /// The network with host bits cleared: `10.1.2.3/16` shows as `10.1.0.0/16`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bits, addr) = self.mapped();
        let network = match self.network {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::new(
                addr[12], addr[13], addr[14], addr[15],
            )),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(addr)),
        };
        let len = if self.network.is_ipv4() {
            bits - 96
        } else {
            bits
        };
        write!(f, "{network}/{len}")
    }
}

/// Why a rule was not understood; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connect rule {entry:?}: {reason}")]
pub struct RuleError {
    pub entry: String,
    pub reason: String,
}

impl ConnectRule {
    /// Parses `CIDR` or `CIDR:PORT` (IPv6 in brackets: `[fd00::/8]:443`), optionally followed
    /// by `@CGROUP` (a cgroup v2 path) to scope it. A bare address is a /32 or /128.
    pub fn parse(entry: &str, action: ConnectAction) -> Result<Self, RuleError> {
        let fail = |reason: &str| RuleError {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (destination, scope) = match entry.split_once('@') {
            Some((_, scope)) if !scope.starts_with('/') => {
                return Err(fail(
                    "the cgroup after '@' must be a path starting with '/'",
                ))
            }
            Some((d, scope)) => (d, Some(scope.trim_end_matches('/').to_string())),
            None => (entry, None),
        };
        let mut rule = Self::parse_destination(destination, action).map_err(|e| fail(&e.reason))?;
        rule.scope = scope.map(|s| if s.is_empty() { "/".to_string() } else { s });
        Ok(rule)
    }

    fn parse_destination(entry: &str, action: ConnectAction) -> Result<Self, RuleError> {
        let fail = |reason: &str| RuleError {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let (net, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (net, tail) = rest
                .split_once(']')
                .ok_or_else(|| fail("missing ']' after an IPv6 network"))?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| fail("expected ':PORT' after ']'"))?,
                ),
            };
            (net, port)
        } else {
            match entry.rsplit_once(':') {
                Some((net, port)) if !net.contains(':') => (net, Some(port)),
                _ => (entry, None),
            }
        };
        let port = port
            .map(|p| match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(fail("port must be 1-65535")),
                Ok(p) => Ok(p),
            })
            .transpose()?;
        let Cidr {
            network,
            prefix_len,
        } = Cidr::parse(net).map_err(|e| fail(&e.reason))?;
        Ok(Self {
            network,
            prefix_len,
            port,
            action,
            scope: None,
        })
    }

    /// The LPM key for a scope's cgroup id (0: everywhere): bit length and data (scope,
    /// port in network order with 0 for any, IPv4-mapped or IPv6 address, padding).
    pub(crate) fn key(&self, scope_id: u64) -> (u32, [u8; 28]) {
        let (bits, addr) = Cidr {
            network: self.network,
            prefix_len: self.prefix_len,
        }
        .mapped();
        let mut data = [0u8; 28];
        data[..8].copy_from_slice(&scope_id.to_ne_bytes());
        data[8..10].copy_from_slice(&self.port.map_or(0, u16::to_be).to_ne_bytes());
        data[10..26].copy_from_slice(&addr);
        (64 + 16 + bits, data)
    }
}

fn masked(addr: Ipv6Addr, bits: u32) -> [u8; 16] {
    let mut octets = addr.octets();
    for (i, byte) in octets.iter_mut().enumerate() {
        let keep = bits.saturating_sub(8 * i as u32).min(8);
        *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    octets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let r = ConnectRule::parse("10.1.0.0/16:443", ConnectAction::Deny).unwrap();
        assert_eq!(r.network, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!((r.prefix_len, r.port), (16, Some(443)));
        let r = ConnectRule::parse("10.1.2.3", ConnectAction::Audit).unwrap();
        assert_eq!((r.prefix_len, r.port), (32, None));
        let r = ConnectRule::parse("[fd00::/8]:53", ConnectAction::Deny).unwrap();
        assert_eq!((r.prefix_len, r.port), (8, Some(53)));
        let r = ConnectRule::parse("fd00::1", ConnectAction::Deny).unwrap();
        assert_eq!((r.prefix_len, r.port), (128, None));
    }

    #[test]
    fn errors_name_the_entry() {
        for bad in [
            "10.1.0.0/33",
            "10.1.0.0/16:0",
            "10.1.0.0:http",
            "example.com",
            "[fd00::/8",
            "[fd00::]x",
        ] {
            let err = ConnectRule::parse(bad, ConnectAction::Deny).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn cidrs_print_their_network() {
        assert_eq!(
            Cidr::parse("10.1.2.3/16").unwrap().to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(
            Cidr::parse("fd00:1::5/32").unwrap().to_string(),
            "fd00:1::/32"
        );
    }

    #[test]
    fn keys_are_masked_and_mapped() {
        let r = ConnectRule::parse("10.1.2.3/16:80", ConnectAction::Deny).unwrap();
        let (bits, data) = r.key(7);
        assert_eq!(bits, 64 + 16 + 96 + 16);
        assert_eq!(&data[..8], &7u64.to_ne_bytes());
        assert_eq!(&data[8..10], &80u16.to_be().to_ne_bytes());
        assert_eq!(&data[20..26], &[0xff, 0xff, 10, 1, 0, 0]);
    }

    #[test]
    fn scopes_follow_an_at_sign() {
        let r = ConnectRule::parse("10.1.0.0/16:443@/kubepods.slice/pod1/", ConnectAction::Deny)
            .unwrap();
        assert_eq!(r.scope.as_deref(), Some("/kubepods.slice/pod1"));
        assert_eq!(r.port, Some(443));
        assert_eq!(r.to_string(), "10.1.0.0/16:443@/kubepods.slice/pod1");
        let r = ConnectRule::parse("[fd00::/8]:53@/x", ConnectAction::Audit).unwrap();
        assert_eq!((r.port, r.scope.as_deref()), (Some(53), Some("/x")));
        let err = ConnectRule::parse("10.0.0.0/8@kubepods", ConnectAction::Deny).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8@kubepods"), "{err}");
    }
}
