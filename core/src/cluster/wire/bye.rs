//! BYE codes: the one table of them (docs/PROTOCOL.md section 5.8, checked
//! against it by a test).

/// Declares the BYE codes: `/// doc` `CONST = code, "log name";` per row.
macro_rules! bye_codes {
    ($($(#[$doc:meta])* $konst:ident = $code:literal, $name:literal;)*) => {
        impl ByeCode {
            $($(#[$doc])* pub const $konst: ByeCode = ByeCode($code);)*

            /// Every code v1 defines, in code order, with its upper-case
            /// name as in docs/PROTOCOL.md.
            pub const ALL: &'static [(ByeCode, &'static str)] = &[$((ByeCode::$konst, stringify!($konst))),*];

            /// Name for logs.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($code => $name,)*
                    _ => "unknown",
                }
            }
        }
    };
}

/// Why a connection is being closed. Codes are open-ended: an unknown code is
/// carried as-is and treated like [`ByeCode::PROTOCOL_ERROR`]'s "connection
/// over, node not leaving".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ByeCode(pub u64);

bye_codes! {
    /// Graceful shutdown: the sender is leaving; drop its counts at once.
    SHUTDOWN = 0, "shutdown";
    /// The sender saw a malformed or out-of-state frame.
    PROTOCOL_ERROR = 1, "protocol error";
    /// The receiver's AUTH did not verify.
    AUTH_FAILED = 2, "auth failed";
    /// The receiver's HELLO version is not spoken by the sender.
    VERSION_UNSUPPORTED = 3, "version unsupported";
    /// The receiver's HELLO names another cluster.
    CLUSTER_MISMATCH = 4, "cluster mismatch";
    /// Another connection between the same two nodes is kept instead.
    DUPLICATE = 5, "duplicate connection";
    /// The receiver is the sender itself (same node id).
    SELF_CONNECTION = 6, "self connection";
    /// The handshake took too long, or the receiver was silent too long.
    TIMEOUT = 7, "timeout";
    /// The receiver defined more topics, or longer or more bytes of topic
    /// names, than the sender accepts from one peer; its counts are dropped.
    PEER_TOO_LARGE = 8, "peer too large";
}
