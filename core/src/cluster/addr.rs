//! Peer addresses as the node compares them: `host:port` parsed and written
//! in one canonical spelling.
//!
//! Addresses arrive as text (seeds, `add_peer`, PEERS gossip, a HELLO's
//! `listen`), and the system resolver takes many spellings of one address:
//! inet_aton's forms of IPv4 (`0x7f.0.0.1`, `0177.0.0.1`, `127.1`,
//! `2130706433`), ports with leading zeros, IPv6 with or without brackets
//! and as IPv4-mapped, host names in any case or with a final dot. Compared
//! as strings, each would be a new address to dial. [`canonical`] maps every
//! spelling that names one address to one string, and refuses anything the
//! node would not dial (text a resolver might still accept, such as trailing
//! garbage after an IPv4 address, is refused rather than guessed at):
//!
//! | given | canonical |
//! |---|---|
//! | IPv4 in any inet_aton form: 1 to 4 parts, each decimal, octal (`0` prefix) or hex (`0x`), the last filling the remaining bytes | `a.b.c.d:port` |
//! | IPv6, `[v6]:port` or bare `v6:port`; IPv4-mapped IPv6 | `[v6]:port` as std writes it (RFC 5952); mapped ones as IPv4 |
//! | a host name: letters, digits, `-`, `_`, dot-separated labels of 1 to 63 bytes, whose last label does not start with a digit | lowercase, without a final dot |
//! | a port: decimal digits, 1 to 65535, leading zeros allowed | without leading zeros |
//!
//! A host whose last label starts with a digit is numeric: it is IPv4 or
//! refused (no top-level domain starts with a digit, so no name is lost).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Longest host name (RFC 1035).
const MAX_HOST_LEN: usize = 253;
/// Longest label of a host name.
const MAX_LABEL_LEN: usize = 63;

/// The canonical spelling of `addr` (`host:port`), or `None` if it is not
/// an address the node dials. See the module docs.
pub(super) fn canonical(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port_number(port)?;
    let host = match host.strip_prefix('[') {
        Some(h) => Host::Ip(IpAddr::V6(h.strip_suffix(']')?.parse().ok()?)),
        None if host.contains(':') => Host::Ip(IpAddr::V6(host.parse().ok()?)),
        None => host_name_or_ipv4(host)?,
    };
    Some(match host {
        Host::Ip(ip) => SocketAddr::new(unmapped(ip), port).to_string(),
        Host::Name(name) => format!("{name}:{port}"),
    })
}

/// The address to dial for a peer's advertised `listen`: its canonical
/// form, with the connection's source IP for an unspecified host
/// (PROTOCOL.md section 9.3). `None` if it is not an address we dial.
pub(super) fn dialable(listen: &str, remote: SocketAddr) -> Option<String> {
    let c = canonical(listen)?;
    match c.parse::<SocketAddr>() {
        Ok(mut a) if a.ip().is_unspecified() => {
            a.set_ip(unmapped(remote.ip()));
            Some(a.to_string())
        }
        _ => Some(c),
    }
}

/// Whether a dial of `target` reaches a listener bound to `listen`: the
/// same address, or, for a listener on all addresses, our port on a
/// loopback or unspecified address (other local addresses are found out by
/// the HELLO's node id).
pub(super) fn listener_reaches(listen: SocketAddr, target: SocketAddr) -> bool {
    let ip = unmapped(target.ip());
    listen.port() == target.port()
        && (unmapped(listen.ip()) == ip || (listen.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
}

enum Host {
    Ip(IpAddr),
    Name(String),
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn port_number(port: &str) -> Option<u16> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = port.trim_start_matches('0');
    if digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|p| *p != 0)
}

fn host_name_or_ipv4(host: &str) -> Option<Host> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next()?;
    if last.bytes().next()?.is_ascii_digit() {
        return inet_aton(host).map(|a| Host::Ip(IpAddr::V4(a)));
    }
    if host.len() > MAX_HOST_LEN {
        return None;
    }
    let label_ok = |l: &str| {
        (1..=MAX_LABEL_LEN).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !host.split('.').all(label_ok) {
        return None;
    }
    Some(Host::Name(host.to_ascii_lowercase()))
}

/// IPv4 as inet_aton(3) reads it: `a.b.c.d`, `a.b.c` (c: 16 bits), `a.b`
/// (b: 24 bits) or `a` (32 bits); each part decimal, octal after a leading
/// `0`, or hex after `0x`/`0X`.
fn inet_aton(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = host.split('.').map(aton_part).collect::<Option<_>>()?;
    let (last, init) = parts.split_last()?;
    if init.len() > 3 || init.iter().any(|p| *p > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - init.len() as u32);
    if last_bits < 32 && *last >> last_bits != 0 {
        return None;
    }
    let high = init.iter().enumerate().fold(0u32, |acc, (i, p)| acc | p << (24 - 8 * i as u32));
    Some(Ipv4Addr::from(high | last))
}

fn aton_part(p: &str) -> Option<u32> {
    let (digits, radix) = match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if p.len() > 1 && p.starts_with('0') => (&p[1..], 8),
        None => (p, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Leading zeros are free (`0x0000007f`); the value must fit 32 bits.
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    u32::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_aliases_are_one_address() {
        // core/tests/admission.rs floods a node with 1,024 of these.
        for a in [
            "127.0.0.1:7000",
            "0177.0.0.1:7000",
            "0x7f.0.0.1:7000",
            "0X7F.00.0x0.01:7000",
            "0x0000007f.0.0.1:7000",
            "127.1:7000",
            "127.0.1:7000",
            "0177.0x1:7000",
            "2130706433:7000",
            "0x7f000001:7000",
            "017700000001:7000",
            "127.0.0.1:07000",
            "[::ffff:127.0.0.1]:7000",
            "[::ffff:7f00:1]:7000",
        ] {
            assert_eq!(canonical(a).as_deref(), Some("127.0.0.1:7000"), "{a}");
        }
        for (a, c) in [
            ("10.1:80", "10.0.0.1:80"),
            ("10.0.258:80", "10.0.1.2:80"),
            ("0:9", "0.0.0.0:9"),
            ("4294967295:9", "255.255.255.255:9"),
            ("0xffffffff:9", "255.255.255.255:9"),
            ("[::1]:9", "[::1]:9"),
            ("::1:9", "[::1]:9"),
            ("[0:0:0:0:0:0:0:1]:9", "[::1]:9"),
            ("[2001:DB8::1]:9", "[2001:db8::1]:9"),
            ("LocalHost.:0080", "localhost:80"),
            ("db-1.Example_x.COM:7", "db-1.example_x.com:7"),
            ("1e100.net:443", "1e100.net:443"),
        ] {
            assert_eq!(canonical(a).as_deref(), Some(c), "{a}");
        }
    }

    #[test]
    fn what_is_not_an_address_is_refused() {
        for a in [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+80",
            "127.0.0.1: 80",
            "127.0.0.1 x:80",
            "127.0.0.256:80",
            "256.0.0.1:80",
            "1.2.3.4.5:80",
            "1.2.3.0x:80",
            "08.0.0.1:80",
            "0x1ffffffff:80",
            "10.0.65536:80",
            "1..2:80",
            "127.0.0.1..:80",
            ".:80",
            ":80",
            "[::1:80",
            "[::1%2]:80",
            "[127.0.0.1]:80",
            "host name:80",
            "héllo:80",
            "-.-..x:80",
            "a.1:80",
        ] {
            assert_eq!(canonical(a), None, "{a:?}");
        }
        assert_eq!(canonical(&format!("{}:1", "a".repeat(64))), None);
        assert_eq!(canonical(&format!("{}.b:1", "a.".repeat(127))), None);
    }

    #[test]
    fn a_listener_is_reached_by_its_address_and_on_all_addresses_by_loopback() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let one = sa("127.0.0.1:7000");
        assert!(listener_reaches(one, one));
        assert!(listener_reaches(one, sa("[::ffff:127.0.0.1]:7000")));
        assert!(!listener_reaches(one, sa("127.0.0.2:7000")));
        assert!(!listener_reaches(one, sa("127.0.0.1:7001")));
        for any in [sa("0.0.0.0:7000"), sa("[::]:7000")] {
            for t in ["127.0.0.1:7000", "127.9.8.7:7000", "0.0.0.0:7000", "[::1]:7000", "[::]:7000"] {
                assert!(listener_reaches(any, sa(t)), "{any} {t}");
            }
            assert!(!listener_reaches(any, sa("10.0.0.1:7000")));
            assert!(!listener_reaches(any, sa("127.0.0.1:7001")));
        }
    }

    #[test]
    fn dialable_substitutes_unspecified_hosts() {
        let remote: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(dialable("0.0.0.0:7000", remote).as_deref(), Some("10.1.2.3:7000"));
        assert_eq!(dialable("0:7000", remote).as_deref(), Some("10.1.2.3:7000"));
        assert_eq!(dialable("[::]:7000", remote).as_deref(), Some("10.1.2.3:7000"));
        assert_eq!(dialable("0x7f.1:7000", remote).as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(dialable("DB.local:7000", remote).as_deref(), Some("db.local:7000"));
        assert_eq!(dialable("db.local", remote), None);
    }
}
