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
    /// The dialer authenticates with SASL next (quorum.auth.enableSasl).
    #[serde(default)]
    pub sasl: bool,
}

/// Quorum SASL (DIGEST-MD5) right after a Hello that asked for it: the
/// listener challenges, the dialer responds, the listener answers.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum SaslFrame {
    Challenge(#[serde(with = "serde_bytes")] Vec<u8>),
    Response(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Authenticated; carries rspauth, which proves the listener knew the password too.
    Success(#[serde(with = "serde_bytes")] Vec<u8>),
    Failure,
    /// The listener does not do quorum SASL.
    Skipped,
}

pub fn encode_sasl(frame: &SaslFrame) -> Vec<u8> {
    rmp_serde::to_vec(frame).expect("sasl frames encode")
}

pub fn decode_sasl(frame: &[u8]) -> Result<SaslFrame, String> {
    check_msgpack(frame).map_err(|e| format!("malformed SASL frame: {e}"))?;
    rmp_serde::from_slice(frame).map_err(|e| format!("undecodable SASL frame: {e}"))
}

pub fn encode(msg: &Message) -> Vec<u8> {
    rmp_serde::to_vec(msg).expect("peer messages always encode")
}

pub fn decode(frame: &[u8]) -> Result<Message, String> {
    check_msgpack(frame).map_err(|e| format!("malformed peer frame: {e}"))?;
    rmp_serde::from_slice(frame).map_err(|e| format!("undecodable peer frame: {e}"))
}

/// Nesting a legitimate message needs (a forwarded multi is about 13 deep).
pub const MAX_DEPTH: usize = 64;

/// Checks that `frame` is exactly one well-formed MessagePack value whose
/// every declared length fits in the bytes that follow, nested at most
/// `MAX_DEPTH` deep. rmp-serde trusts a declared element count for serde's
/// pre-allocation (up to 1 MiB per vector): a 5-byte array header claiming
/// 2^32 elements, repeated in nested vectors, would cost gigabytes before
/// the decoder noticed the input was short. Once the structure is known to
/// be complete, every vector's claim is backed by real elements, so decoding
/// allocates in proportion to the frame. Recursive types (a multi inside a
/// multi) also cannot exhaust the stack this way.
pub fn check_msgpack(frame: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    // Values still to read at each open nesting level.
    let mut pending: Vec<u64> = vec![1];
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        let at = pos;
        let Some(&marker) = frame.get(pos) else {
            return Err(format!("frame ends at byte {at} where a value was expected"));
        };
        pos += 1;
        let left = (frame.len() - pos) as u64;
        let be = |n: usize, pos: usize| -> Result<u64, String> {
            let b = frame.get(pos..pos + n).ok_or_else(|| format!("frame ends inside the length at byte {at}"))?;
            Ok(b.iter().fold(0u64, |acc, x| (acc << 8) | *x as u64))
        };
        // (bytes of payload to skip, nested values to read)
        let (skip, nested): (u64, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * (marker & 0x0f) as u64),
            0x90..=0x9f => (0, (marker & 0x0f) as u64),
            0xa0..=0xbf => ((marker & 0x1f) as u64, 0),
            0xc1 => return Err(format!("reserved MessagePack marker 0xc1 at byte {at}")),
            0xc4 | 0xd9 => (be(1, pos)? + 1, 0),
            0xc5 | 0xda => (be(2, pos)? + 2, 0),
            0xc6 | 0xdb => (be(4, pos)? + 4, 0),
            0xc7 => (be(1, pos)? + 2, 0),
            0xc8 => (be(2, pos)? + 3, 0),
            0xc9 => (be(4, pos)? + 5, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => {
                pos += 2;
                (0, be(2, pos - 2)?)
            }
            0xdd => {
                pos += 4;
                (0, be(4, pos - 4)?)
            }
            0xde => {
                pos += 2;
                (0, 2 * be(2, pos - 2)?)
            }
            0xdf => {
                pos += 4;
                (0, 2 * be(4, pos - 4)?)
            }
        };
        let left = left.min((frame.len() - pos.min(frame.len())) as u64);
        if skip > left {
            return Err(format!("value at byte {at} claims {skip} bytes, only {left} follow"));
        }
        pos += skip as usize;
        if nested > 0 {
            // Every element takes at least one byte.
            if nested > left {
                return Err(format!("container at byte {at} claims {nested} elements, only {left} bytes follow"));
            }
            if pending.len() >= MAX_DEPTH {
                return Err(format!("values nested deeper than {MAX_DEPTH} levels at byte {at}"));
            }
            pending.push(nested);
        }
    }
    if pos != frame.len() {
        return Err(format!("{} trailing bytes after the message", frame.len() - pos));
    }
    Ok(())
}

pub fn encode_hello(server_id: ServerId, sasl: bool) -> Vec<u8> {
    rmp_serde::to_vec(&Hello { version: PROTOCOL_VERSION, server_id, sasl }).expect("hello encodes")
}

/// The Hello of a dialing peer, refused if undecodable or of another version.
pub fn decode_hello(frame: &[u8]) -> Result<Hello, String> {
    check_msgpack(frame).map_err(|e| format!("malformed hello: {e}"))?;
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
        assert_eq!(decode_hello(&encode_hello(7, false)).unwrap().server_id, 7);
        assert!(decode_hello(&encode_hello(7, true)).unwrap().sasl);
        for f in [SaslFrame::Challenge(b"c".to_vec()), SaslFrame::Skipped] {
            assert_eq!(decode_sasl(&encode_sasl(&f)).unwrap(), f);
        }
        assert!(decode_sasl(b"\xff\xff").is_err());
        let other = rmp_serde::to_vec(&Hello { version: PROTOCOL_VERSION + 1, server_id: 7, sasl: false }).unwrap();
        assert!(decode_hello(&other).unwrap_err().contains("version"));
    }
}
