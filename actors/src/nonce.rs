//! Nonces for SASL DIGEST-MD5, for clients (connections) and quorum peers.

/// A fresh DIGEST-MD5 nonce: 16 random bytes, hex.
pub(crate) fn nonce() -> String {
    let mut b = [0u8; 16];
    // Without the OS's random source no nonce is safe: the handler fails
    // (its supervision closes this connection) rather than guess.
    getrandom::fill(&mut b).expect("the OS random source for a SASL nonce");
    b.iter().map(|x| format!("{x:02x}")).collect()
}
