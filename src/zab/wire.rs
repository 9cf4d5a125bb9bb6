//! Peer frames: what travels between members, as bytes. The runtime frames
//! each message with a 4-byte big-endian length; the payload is MessagePack.
//! Positional encoding (`to_vec`, not `to_vec_named`): proposals are the hot
//! path, and both ends are checked to speak the same version in `Hello`.

use super::{Message, ServerId, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

/// The dialer's first frame on a link.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub server_id: ServerId,
}

pub fn encode(msg: &Message) -> Vec<u8> {
    rmp_serde::to_vec(msg).expect("peer messages always encode")
}

pub fn decode(frame: &[u8]) -> Result<Message, String> {
    rmp_serde::from_slice(frame).map_err(|e| format!("undecodable peer frame: {e}"))
}

pub fn encode_hello(server_id: ServerId) -> Vec<u8> {
    rmp_serde::to_vec(&Hello { version: PROTOCOL_VERSION, server_id }).expect("hello encodes")
}

/// The Hello of a dialing peer, refused if undecodable or of another version.
pub fn decode_hello(frame: &[u8]) -> Result<Hello, String> {
    let hello: Hello = rmp_serde::from_slice(frame).map_err(|e| format!("undecodable hello: {e}"))?;
    if hello.version != PROTOCOL_VERSION {
        return Err(format!("peer speaks protocol version {}, this server {}", hello.version, PROTOCOL_VERSION));
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_errors() {
        let msg = Message::Commit { zxid: 42 };
        assert_eq!(decode(&encode(&msg)).unwrap(), msg);
        assert!(decode(&[0xc1, 0x00]).is_err(), "reserved MessagePack byte");
        assert!(decode(&[]).is_err());
        assert_eq!(decode_hello(&encode_hello(7)).unwrap().server_id, 7);
        let other = rmp_serde::to_vec(&Hello { version: PROTOCOL_VERSION + 1, server_id: 7 }).unwrap();
        assert!(decode_hello(&other).unwrap_err().contains("version"));
    }
}
