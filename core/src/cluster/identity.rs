//! Who this node is on the wire: its node id, its incarnation, and the
//! secure random source behind them and behind every handshake nonce.
//!
//! PROTOCOL.md section 1: a node id is fixed for the life of the process and
//! an incarnation is new on every start. When `node_name` is configured the
//! id is derived from the cluster and node names (SHA-256), so a restarted
//! node is recognised as a new incarnation of the *same* node and its old
//! counts are replaced rather than summed twice; without a name it is random.

use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::error::{Error, Result};

/// Fills `buf` from the OS's secure random source.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Io(std::io::Error::other(format!("no secure random source: {e}"))))
}

/// A u64 from the OS's secure random source (incarnations, unnamed node ids).
pub(crate) fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    random_bytes(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// The node id: derived from cluster and node name when the name is
/// configured (stable across restarts), random otherwise. Never 0.
pub(crate) fn node_id_for(s: &Settings) -> Result<u64> {
    let id = if let Some(name) = &s.node_name {
        let mut h = Sha256::new();
        h.update(b"headcount node id\0");
        h.update(s.cluster.as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b)
    } else {
        random_u64()?
    };
    Ok(id.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_for_a_name_and_random_without() {
        let s = |name: &str, named: bool| {
            let b = crate::Config::builder().cluster("c");
            let b = if named { b.node_name(name) } else { b };
            b.build().unwrap().settings().clone()
        };
        assert_eq!(node_id_for(&s("a", true)).unwrap(), node_id_for(&s("a", true)).unwrap());
        assert_ne!(node_id_for(&s("a", true)).unwrap(), node_id_for(&s("b", true)).unwrap());
        assert_ne!(node_id_for(&s("a", false)).unwrap(), node_id_for(&s("a", false)).unwrap());
    }
}
