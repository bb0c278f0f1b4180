//! The SSRF guard: which destination addresses a webhook may be delivered to.
//!
//! A webhook URL is chosen by whoever registers it, and the sender then makes a request
//! from *inside* its own network. The Standard Webhooks spec ("Server side request forgery
//! (SSRF)") names the danger: reading "AWS metadata", reaching "internal services like http
//! enabled databases". So every address is checked right before connecting, after name
//! resolution (an IP literal at registration too), which also defeats DNS rebinding.
//!
//! [`classify`] sorts an address into an [`AddrClass`] using the IANA special-purpose
//! address registries (RFC 6890 and its updates):
//!
//! | class | IPv4 | IPv6 |
//! |---|---|---|
//! | Unspecified | `0.0.0.0` | `::` |
//! | Loopback | `127.0.0.0/8` | `::1` |
//! | Private | `10/8`, `172.16/12`, `192.168/16` (RFC 1918) | |
//! | Cgnat | `100.64.0.0/10` (RFC 6598) | |
//! | LinkLocal | `169.254.0.0/16` (RFC 3927, cloud metadata) | `fe80::/10` |
//! | UniqueLocal | | `fc00::/7` (RFC 4193) |
//! | Multicast | `224.0.0.0/4` | `ff00::/8` |
//! | Broadcast | `255.255.255.255` | |
//! | Reserved | `0/8`, `192.0.0/24`, `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `198.18/15`, `192.88.99/24`, `240/4` | `100::/64`, `2001::/32` (Teredo), `2001:2::/48`, `2001:db8::/32`, `3fff::/20`, `5f00::/16`, `fec0::/10`, `64:ff9b:1::/48`, and everything outside `2000::/3` |
//!
//! IPv6 forms that carry an IPv4 address are classified by that address, since packets to
//! them end up there: IPv4-mapped `::ffff:a.b.c.d`, the deprecated IPv4-compatible
//! `::a.b.c.d`, SIIT's `::ffff:0:a.b.c.d`, NAT64's well-known prefix `64:ff9b::/96`
//! (RFC 6052) and 6to4's `2002:AABB:CCDD::/48` (RFC 3056).
//!
//! [`check()`] applies a [`Policy`]: public addresses pass; loopback, private, CGNAT and
//! unique-local pass only with `allow_private`; link-local, multicast, broadcast,
//! unspecified and reserved never pass, except an exact `SocketAddr` in the allow list (the
//! hub's own listening address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of address an IP is, for the SSRF guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// Globally routable: deliverable.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// Carrier-grade NAT shared space, `100.64.0.0/10` (RFC 6598).
    Cgnat,
    /// `169.254.0.0/16` (including the 169.254.169.254 metadata service), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// IPv6 unique local addresses, `fc00::/7` (RFC 4193).
    UniqueLocal,
    /// Documentation, benchmarking, protocol-assignment, "this network", future-use and
    /// other special-purpose ranges that no webhook receiver lives at.
    Reserved,
}

impl AddrClass {
    /// A short human description, as used in [`Refused`]'s message.
    pub fn description(self) -> &'static str {
        match self {
            AddrClass::Public => "public address",
            AddrClass::Loopback => "loopback address",
            AddrClass::Private => "private address (RFC 1918)",
            AddrClass::Cgnat => "carrier-grade NAT address (RFC 6598)",
            AddrClass::LinkLocal => "link-local address",
            AddrClass::Multicast => "multicast address",
            AddrClass::Broadcast => "broadcast address",
            AddrClass::Unspecified => "unspecified address",
            AddrClass::UniqueLocal => "unique local address (RFC 4193)",
            AddrClass::Reserved => "reserved special-purpose address",
        }
    }

    /// True for the classes that [`Policy::allow_private`] opens: loopback, private, CGNAT
    /// and unique local.
    pub fn is_private_like(self) -> bool {
        matches!(
            self,
            AddrClass::Loopback | AddrClass::Private | AddrClass::Cgnat | AddrClass::UniqueLocal
        )
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Classifies an address; IPv6 forms embedding an IPv4 address are classified by it.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let [a, b, _, _] = ip.octets();
    if ip.is_unspecified() {
        AddrClass::Unspecified
    } else if ip.is_broadcast() {
        AddrClass::Broadcast
    } else if a == 127 {
        AddrClass::Loopback
    } else if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        AddrClass::Private
    } else if a == 100 && (64..128).contains(&b) {
        AddrClass::Cgnat
    } else if a == 169 && b == 254 {
        AddrClass::LinkLocal
    } else if (224..240).contains(&a) {
        AddrClass::Multicast
    } else if RESERVED_V4.iter().any(|&(net, len)| in_v4(ip, net, len)) {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

/// IPv4 special-purpose blocks that are neither private nor deliverable.
const RESERVED_V4: [(Ipv4Addr, u8); 8] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network" (RFC 791)
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments (RFC 6890)
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // TEST-NET-1 (RFC 5737)
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // deprecated 6to4 relay anycast (RFC 7526)
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking (RFC 2544)
    (Ipv4Addr::new(198, 51, 100, 0), 24), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // TEST-NET-3
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // future use (RFC 1112)
];

/// IPv6 special-purpose blocks inside global unicast `2000::/3` that are not deliverable
/// (everything outside `2000::/3` that is not classified otherwise is reserved too).
const RESERVED_V6: [(Ipv6Addr, u8); 4] = [
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32), // Teredo (RFC 4380)
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48), // benchmarking (RFC 5180)
    (Ipv6Addr::new(0x2001, 0xDB8, 0, 0, 0, 0, 0, 0), 32), // documentation (RFC 3849)
    (Ipv6Addr::new(0x3FFF, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net)
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    let embedded = || Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32);
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    match s {
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), ::ffff:0:a.b.c.d (SIIT)
        [0, 0, 0, 0, 0, 0xFFFF, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0, 0, 0, 0, 0xFFFF, 0, _, _] => return classify_v4(embedded()),
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052)
        [0x64, 0xFF9B, 0, 0, 0, 0, _, _] => return classify_v4(embedded()),
        // 6to4 2002:V4ADDR::/48 (RFC 3056): the relay sends it to the embedded address
        [0x2002, hi, lo, ..] => {
            return classify_v4(Ipv4Addr::from(((hi as u32) << 16) | lo as u32));
        }
        _ => {}
    }
    let first = s[0];
    if first & 0xFF00 == 0xFF00 {
        AddrClass::Multicast
    } else if first & 0xFFC0 == 0xFE80 {
        AddrClass::LinkLocal
    } else if first & 0xFE00 == 0xFC00 {
        AddrClass::UniqueLocal
    } else if first & 0xE000 != 0x2000 || RESERVED_V6.iter().any(|&(n, l)| in_v6(ip, n, l)) {
        // Outside 2000::/3 this covers 100::/64 (discard-only), fec0::/10 (deprecated
        // site-local), 64:ff9b:1::/48 (local-use NAT64), 5f00::/16 (SRv6) and the
        // unallocated space.
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

/// Which destinations [`check()`] lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Also allow loopback, private (RFC 1918), CGNAT and IPv6 unique-local destinations.
    pub allow_private: bool,
    /// Exact destinations that are always allowed, whatever their class (the hub's own
    /// listening address). An IPv4-mapped IPv6 address matches its IPv4 form.
    pub allow: Vec<SocketAddr>,
}

/// A destination refused by the SSRF guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The refused destination.
    pub addr: SocketAddr,
    /// Why: its class.
    pub class: AddrClass,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to deliver to {}: {}",
            self.addr.ip(),
            self.class.description()
        )
    }
}

impl std::error::Error for Refused {}

/// Checks one resolved destination against the policy.
pub fn check(addr: SocketAddr, policy: &Policy) -> Result<(), Refused> {
    let wanted = canonical(addr);
    if policy.allow.iter().any(|a| canonical(*a) == wanted) {
        return Ok(());
    }
    let class = classify(addr.ip());
    let ok = match class {
        AddrClass::Public => true,
        c if c.is_private_like() => policy.allow_private,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        log::debug!("ssrf: refusing {addr}: {class}");
        Err(Refused { addr, class })
    }
}

/// `[::ffff:a.b.c.d]:p` -> `a.b.c.d:p`, for allow-list comparison.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddrClass::*;

    #[test]
    fn classify_table() {
        let table: &[(&str, AddrClass)] = &[
            // IPv4, each range at its edges
            ("0.0.0.0", Unspecified),
            ("0.0.0.1", Reserved),
            ("0.255.255.255", Reserved),
            ("1.1.1.1", Public),
            ("8.8.8.8", Public),
            ("9.255.255.255", Public),
            ("10.0.0.0", Private),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("11.0.0.0", Public),
            ("100.63.255.255", Public),
            ("100.64.0.0", Cgnat),
            ("100.127.255.255", Cgnat),
            ("100.128.0.0", Public),
            ("126.255.255.255", Public),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("128.0.0.0", Public),
            ("169.253.255.255", Public),
            ("169.254.0.0", LinkLocal),
            ("169.254.169.254", LinkLocal),
            ("169.254.255.255", LinkLocal),
            ("169.255.0.0", Public),
            ("172.15.255.255", Public),
            ("172.16.0.0", Private),
            ("172.31.255.255", Private),
            ("172.32.0.0", Public),
            ("192.0.0.8", Reserved),
            ("192.0.1.1", Public),
            ("192.0.2.1", Reserved),
            ("192.88.99.1", Reserved),
            ("192.167.255.255", Public),
            ("192.168.0.0", Private),
            ("192.168.255.255", Private),
            ("192.169.0.0", Public),
            ("198.17.255.255", Public),
            ("198.18.0.0", Reserved),
            ("198.19.255.255", Reserved),
            ("198.20.0.0", Public),
            ("198.51.100.7", Reserved),
            ("203.0.113.9", Reserved),
            ("203.0.114.0", Public),
            ("223.255.255.255", Public),
            ("224.0.0.0", Multicast),
            ("239.255.255.255", Multicast),
            ("240.0.0.0", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
            // IPv6
            ("::", Unspecified),
            ("::1", Loopback),
            ("::2", Reserved), // IPv4-compatible 0.0.0.2
            ("2606:4700::1111", Public),
            ("2001:4860:4860::8888", Public),
            ("2001::1", Reserved),
            ("2001:2::1", Reserved),
            ("2001:2:1::1", Public),
            ("2001:db8::1", Reserved),
            ("3fff::1", Reserved),
            ("3fff:1000::1", Public),
            ("5f00::1", Reserved),
            ("100::1", Reserved),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fdff:ffff::1", UniqueLocal),
            ("fe00::1", Reserved),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("ff0e::1", Multicast),
            ("4000::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            // IPv6 forms embedding IPv4
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:172.16.5.4", Private),
            ("::ffff:192.168.1.1", Private),
            ("::ffff:100.64.0.1", Cgnat),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:224.0.0.1", Multicast),
            ("::ffff:255.255.255.255", Broadcast),
            ("::ffff:240.0.0.1", Reserved),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("::10.1.2.3", Private),
            ("::8.8.8.8", Public),
            ("::ffff:0:10.0.0.1", Private),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::169.254.169.254", LinkLocal),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::8.8.8.8", Public),
            ("2002:a00:1::1", Private),       // 6to4 of 10.0.0.1
            ("2002:7f00:1::", Loopback),      // 6to4 of 127.0.0.1
            ("2002:a9fe:a9fe::1", LinkLocal), // 6to4 of 169.254.169.254
            ("2002:808:808::1", Public),      // 6to4 of 8.8.8.8
        ];
        for (text, want) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), *want, "{text}");
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn policy_table() {
        let strict = Policy::default();
        let private = Policy {
            allow_private: true,
            allow: vec![],
        };
        let own = Policy {
            allow_private: false,
            allow: vec![
                sa("127.0.0.1:8080"),
                sa("[fe80::1]:9000"),
                sa("0.0.0.0:7000"),
            ],
        };
        // (addr, strict, private, own)
        let table: &[(&str, bool, bool, bool)] = &[
            ("93.184.216.34:80", true, true, true),
            ("[2606:4700::1111]:80", true, true, true),
            ("127.0.0.1:8080", false, true, true),
            ("127.0.0.1:8081", false, true, false),
            ("[::ffff:127.0.0.1]:8080", false, true, true),
            ("[::1]:8080", false, true, false),
            ("10.0.0.1:80", false, true, false),
            ("172.20.0.1:80", false, true, false),
            ("192.168.1.1:80", false, true, false),
            ("100.64.0.1:80", false, true, false),
            ("[fd00::1]:80", false, true, false),
            ("[::ffff:10.0.0.1]:80", false, true, false),
            ("169.254.169.254:80", false, false, false),
            ("[::ffff:169.254.169.254]:80", false, false, false),
            ("[fe80::1]:80", false, false, false),
            ("[fe80::1]:9000", false, false, true),
            ("224.0.0.1:80", false, false, false),
            ("[ff02::1]:80", false, false, false),
            ("255.255.255.255:80", false, false, false),
            ("0.0.0.0:80", false, false, false),
            ("0.0.0.0:7000", false, false, true),
            ("[::]:80", false, false, false),
            ("192.0.2.1:80", false, false, false),
            ("240.0.0.1:80", false, false, false),
        ];
        for (addr, s, p, o) in table {
            let a = sa(addr);
            assert_eq!(check(a, &strict).is_ok(), *s, "strict {addr}");
            assert_eq!(check(a, &private).is_ok(), *p, "private {addr}");
            assert_eq!(check(a, &own).is_ok(), *o, "own {addr}");
        }
    }

    #[test]
    fn refused_messages() {
        let p = Policy::default();
        let msg = |a: &str| check(sa(a), &p).unwrap_err().to_string();
        assert_eq!(
            msg("10.0.0.1:80"),
            "refusing to deliver to 10.0.0.1: private address (RFC 1918)"
        );
        assert_eq!(
            msg("169.254.169.254:80"),
            "refusing to deliver to 169.254.169.254: link-local address"
        );
        assert_eq!(
            msg("[::ffff:127.0.0.1]:80"),
            "refusing to deliver to ::ffff:127.0.0.1: loopback address"
        );
        assert_eq!(
            check(sa("[fd00::1]:1"), &p).unwrap_err().class,
            AddrClass::UniqueLocal
        );
    }
}
