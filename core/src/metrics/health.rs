//! `GET /readyz`: whether a node is ready to answer with cluster-wide
//! counts (docs/OPERATIONS.md, "Health").
//!
//! Ready means: the node runs, it listens (when `listen` is set; always
//! true once the metrics server answers, because `Node::start` binds the
//! peer listener first or fails), and, when `seeds` is set, at least one
//! peer is `up` now: connected, authenticated, and its first snapshot
//! received (the first sync with it is done). A peer that is `syncing`,
//! `down` (even within `down_grace_ms`) or `left` does not make the node
//! ready. A node without seeds (the first node of a cluster, or one whose
//! peers are added with `add_peer`) is ready as soon as it runs.

use crate::config::Settings;
use crate::stats::{PeerState, Stats};

/// The most peers named in a not-ready answer.
const PEERS_SHOWN: usize = 5;

/// `Ok` when ready; otherwise why not, in one short line.
pub(super) fn readiness(stats: &Stats, settings: &Settings) -> Result<(), String> {
    if settings.seeds.is_empty() || stats.peers.iter().any(|p| p.state == PeerState::Up) {
        return Ok(());
    }
    let mut peers: Vec<String> =
        stats.peers.iter().take(PEERS_SHOWN).map(|p| format!("{} {}", p.name, p.state.as_str())).collect();
    if stats.peers.len() > PEERS_SHOWN {
        peers.push(format!("{} more", stats.peers.len() - PEERS_SHOWN));
    }
    let peers = if peers.is_empty() { "none known".to_owned() } else { peers.join(", ") };
    Err(format!("no peer is up (seeds {}; peers: {peers})", settings.seeds.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{FlushStats, PeerStats, Traffic};

    fn stats(states: &[PeerState]) -> Stats {
        let peer = |(i, &state): (usize, &PeerState)| PeerStats {
            name: format!("p{i}"),
            node_id: i as u64,
            incarnation: 1,
            address: String::new(),
            state,
            counted: state == PeerState::Up,
            last_frame_age_ms: None,
            state_age_ms: 0,
            topics: 0,
            total: 0,
            traffic: Traffic::default(),
            outbox_pending: 0,
            outbox_overflows: 0,
            snapshots_sent: 0,
            connects: 0,
        };
        Stats {
            node: "n".into(),
            topics: 0,
            tracked_pairs: 0,
            connections: 0,
            total_local: 0,
            stripes: 1,
            flush: FlushStats::default(),
            watches: 0,
            watch_backlog: 0,
            cluster: None,
            peers: states.iter().enumerate().map(peer).collect(),
            metrics_listen: None,
        }
    }

    fn seeded() -> Settings {
        crate::Config::builder()
            .seeds(vec!["127.0.0.1:7401".to_owned()])
            .secret("s")
            .build()
            .unwrap()
            .settings()
            .clone()
    }

    #[test]
    fn without_seeds_a_running_node_is_ready() {
        assert_eq!(readiness(&stats(&[]), &Settings::default()), Ok(()));
        assert_eq!(readiness(&stats(&[PeerState::Down]), &Settings::default()), Ok(()));
    }

    #[test]
    fn with_seeds_one_peer_up_is_needed() {
        use PeerState::*;
        assert_eq!(readiness(&stats(&[Down, Up]), &seeded()), Ok(()));
        let why = readiness(&stats(&[]), &seeded()).unwrap_err();
        assert_eq!(why, "no peer is up (seeds 127.0.0.1:7401; peers: none known)");
        let why = readiness(&stats(&[Syncing, Down, Left]), &seeded()).unwrap_err();
        assert_eq!(why, "no peer is up (seeds 127.0.0.1:7401; peers: p0 syncing, p1 down, p2 left)");
        // The answer stays short however many peers there are.
        let why = readiness(&stats(&[Down; 40]), &seeded()).unwrap_err();
        assert!(why.ends_with("p4 down, 35 more)"), "{why}");
    }
}
