//! Client frame decoding: a 4-byte big-endian length then the payload; the
//! first four bytes of a connection may instead be a four-letter word.

use bytes::{Buf, BytesMut};
use std::fmt;
use tokio_util::codec::Decoder;

pub enum Inbound {
    FourLetter(&'static str),
    Frame(BytesMut),
}

#[derive(Debug)]
pub enum FrameError {
    /// The length prefix is negative or above jute.maxbuffer ("Len error").
    BadLength(i64),
    Io(std::io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength(n) => write!(f, "Len error {n}: frame length outside 0..=jute.maxbuffer"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

pub struct ClientCodec {
    max_frame_bytes: usize,
    first: bool,
}

impl ClientCodec {
    pub fn new(max_frame_bytes: usize) -> ClientCodec {
        ClientCodec { max_frame_bytes, first: true }
    }
}

impl Decoder for ClientCodec {
    type Item = Inbound;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let word: [u8; 4] = src[..4].try_into().unwrap();
        if std::mem::take(&mut self.first) {
            if let Some(cmd) = warden_core::fourlw::parse(&word) {
                src.advance(4);
                return Ok(Some(Inbound::FourLetter(cmd)));
            }
        }
        let len = i32::from_be_bytes(word);
        if len < 0 || len as usize > self.max_frame_bytes {
            return Err(FrameError::BadLength(len as i64));
        }
        let len = len as usize;
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(Inbound::Frame(src.split_to(len))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut c = ClientCodec::new(100);
        let mut b = BytesMut::from(&[0, 0, 0, 2, 7, 8, 0, 0, 0, 3, 1][..]);
        match c.decode(&mut b).unwrap() {
            Some(Inbound::Frame(f)) => assert_eq!(&f[..], &[7, 8]),
            _ => panic!("expected a frame"),
        }
        assert!(c.decode(&mut b).unwrap().is_none());
        b.extend_from_slice(&[2, 3]);
        assert!(matches!(c.decode(&mut b).unwrap(), Some(Inbound::Frame(f)) if f.len() == 3));
    }

    #[test]
    fn four_letter_words_only_first() {
        let mut c = ClientCodec::new(100);
        let mut b = BytesMut::from(&b"ruok"[..]);
        assert!(matches!(c.decode(&mut b).unwrap(), Some(Inbound::FourLetter("ruok"))));
        let mut c = ClientCodec::new(usize::MAX);
        let mut b = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(matches!(c.decode(&mut b).unwrap(), Some(Inbound::Frame(f)) if f.is_empty()));
        let mut b = BytesMut::from(&b"ruok"[..]);
        assert!(matches!(c.decode(&mut b), Ok(None)), "later frames are plain lengths");
    }

    #[test]
    fn oversized_and_negative_lengths_are_errors() {
        let mut c = ClientCodec::new(10);
        let mut b = BytesMut::from(&[0, 0, 0, 11][..]);
        assert!(matches!(c.decode(&mut b), Err(FrameError::BadLength(11))));
        let mut c = ClientCodec::new(10);
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(matches!(c.decode(&mut b), Err(FrameError::BadLength(-2))));
    }
}
