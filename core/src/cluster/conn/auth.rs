//! Authentication: the HMAC-SHA256 challenge-response of the handshake.
//!
//! Both sides send HELLO at once, each with a fresh 32-byte nonce. On the
//! peer's HELLO each side sends
//!
//! ```text
//! AUTH.mac = HMAC-SHA256(secret, "HCNT-AUTH-v1" || role || dialer_hello || acceptor_hello)
//! ```
//!
//! where `role` is one byte naming the *sender* of this AUTH (`'D'` for the
//! side that opened the TCP connection, `'A'` for the side that accepted it)
//! and `*_hello` are the HELLO bodies exactly as encoded on the wire (the
//! codec is strict, so re-encoding a decoded HELLO yields the sent bytes).
//! Each MAC therefore covers both nonces, the cluster name, both node ids and
//! incarnations, names and listen addresses; the role byte makes the two
//! directions' MACs differ, so a response reflected back to its author (on
//! the same or another connection) fails. MACs are checked with
//! `Mac::verify_slice`, in constant time. docs/PROTOCOL.md section 6 is the
//! specification.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::super::wire::{self, Frame, Hello, MAC_LEN};
use super::Role;

/// Domain-separation label at the start of every AUTH MAC input.
pub const AUTH_LABEL: &[u8; 12] = b"HCNT-AUTH-v1";
/// Role byte of an AUTH sent by the side that opened the connection.
pub const ROLE_DIALER: u8 = b'D';
/// Role byte of an AUTH sent by the side that accepted the connection.
pub const ROLE_ACCEPTOR: u8 = b'A';

/// The shared cluster secret, keyed into HMAC-SHA256 once.
///
/// Its `Debug` never prints the secret.
#[derive(Clone)]
pub struct AuthKey(Hmac<Sha256>);

impl AuthKey {
    /// Keys HMAC-SHA256 with `secret` (any length; HMAC hashes long keys).
    pub fn new(secret: &[u8]) -> AuthKey {
        // HMAC accepts keys of every length, so this cannot fail; fall back to
        // an empty key rather than panic should the crate ever change that.
        let mac =
            Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        AuthKey(mac)
    }

    fn mac_state(&self, role: u8, dialer: &Hello, acceptor: &Hello) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        m.update(AUTH_LABEL);
        m.update(&[role]);
        let mut body = Vec::with_capacity(128);
        // HELLOs built or accepted by `Conn` always encode (they were checked
        // when built or decoded); an impossible failure yields an input no
        // honest peer produces, so authentication just fails.
        let _ = wire::encode_body(&Frame::Hello(dialer.clone()), &mut body);
        m.update(&body);
        body.clear();
        let _ = wire::encode_body(&Frame::Hello(acceptor.clone()), &mut body);
        m.update(&body);
        m
    }

    /// The AUTH MAC sent by the side with `role` on a connection whose
    /// dialer sent `dialer` and acceptor sent `acceptor`.
    pub fn mac(&self, role: u8, dialer: &Hello, acceptor: &Hello) -> [u8; MAC_LEN] {
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&self.mac_state(role, dialer, acceptor).finalize().into_bytes());
        out
    }

    /// Constant-time check of a received AUTH MAC.
    pub fn verify(&self, role: u8, dialer: &Hello, acceptor: &Hello, mac: &[u8]) -> bool {
        self.mac_state(role, dialer, acceptor).verify_slice(mac).is_ok()
    }

    /// The AUTH we send as `role`, having sent `me` and received `peer`.
    pub(super) fn our_mac(&self, role: Role, me: &Hello, peer: &Hello) -> [u8; MAC_LEN] {
        let (dialer, acceptor) = order(role, me, peer);
        self.mac(role_byte(role), dialer, acceptor)
    }

    /// Whether `mac` is the AUTH the peer of a `role` side must send.
    pub(super) fn verify_peer(&self, role: Role, me: &Hello, peer: &Hello, mac: &[u8]) -> bool {
        let (dialer, acceptor) = order(role, me, peer);
        self.verify(role_byte(role.other()), dialer, acceptor, mac)
    }
}

/// The role byte of an AUTH sent by the side with `role`.
fn role_byte(role: Role) -> u8 {
    match role {
        Role::Dialer => ROLE_DIALER,
        Role::Acceptor => ROLE_ACCEPTOR,
    }
}

/// (dialer's HELLO, acceptor's HELLO) as seen by the side with `role`.
fn order<'a>(role: Role, me: &'a Hello, peer: &'a Hello) -> (&'a Hello, &'a Hello) {
    match role {
        Role::Dialer => (me, peer),
        Role::Acceptor => (peer, me),
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_covers_every_hello_field_and_role() {
        let key = AuthKey::new(b"k");
        let d = Hello {
            version: 1,
            cluster: "c".into(),
            node_name: "d".into(),
            node_id: 1,
            incarnation: 2,
            listen: "l".into(),
            nonce: [1; 32],
        };
        let a = Hello { node_name: "a".into(), node_id: 3, nonce: [2; 32], ..d.clone() };
        let base = key.mac(ROLE_DIALER, &d, &a);
        assert!(key.verify(ROLE_DIALER, &d, &a, &base));
        assert_ne!(base, key.mac(ROLE_ACCEPTOR, &d, &a));
        assert_ne!(base, key.mac(ROLE_DIALER, &a, &d));
        assert_ne!(base, AuthKey::new(b"k2").mac(ROLE_DIALER, &d, &a));
        for v in [
            Hello { cluster: "c2".into(), ..d.clone() },
            Hello { node_name: "d2".into(), ..d.clone() },
            Hello { node_id: 9, ..d.clone() },
            Hello { incarnation: 9, ..d.clone() },
            Hello { listen: "l2".into(), ..d.clone() },
            Hello { nonce: [9; 32], ..d.clone() },
        ] {
            assert_ne!(base, key.mac(ROLE_DIALER, &v, &a), "{v:?}");
            assert_ne!(base, key.mac(ROLE_DIALER, &d, &Hello { node_id: 3, ..v }));
        }
        // Truncated MACs never verify.
        assert!(!key.verify(ROLE_DIALER, &d, &a, &base[..31]));
        assert!(!key.verify(ROLE_DIALER, &d, &a, &[]));
        assert!(!format!("{key:?}").contains('k'));
    }
}
