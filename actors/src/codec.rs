//! Client frame decoding: a 4-byte big-endian length then the payload; the
//! first four bytes of a connection may instead be a four-letter word.
//! Every whole frame already read comes out as one buffer (one split of the
//! read buffer per read, not one per frame: a reference count touched twice
//! per request was a few per cent of a read's CPU).

use bytes::{Buf, BytesMut};
use std::fmt;
use tokio_util::codec::Decoder;

pub enum Inbound {
    FourLetter(&'static str),
    /// One or more whole frames, each still behind its length (see [`frames`]).
    Frames(BytesMut),
}

/// The payloads of the frames in an [`Inbound::Frames`] buffer, in order.
pub fn frames(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let (word, after) = rest.split_first_chunk::<4>()?;
        let (frame, next) = after.split_at(i32::from_be_bytes(*word) as usize);
        rest = next;
        Some(frame)
    })
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

/// Room left for the next read when the buffer is (almost) empty: a
/// request of up to this size arrives in one recvfrom. Within the 1 KiB the
/// listener gives each connection, so an idle one holds no more than before.
const READ_ROOM: usize = 512;

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
            // The next read goes into what is left of the buffer after the
            // frames split off: down to a few bytes, it would read a request's
            // length alone and need a second recvfrom for the rest. Reclaiming
            // the space in place costs nothing once those frames are dropped.
            if src.capacity() - src.len() < READ_ROOM / 4 {
                src.reserve(READ_ROOM);
            }
            return Ok(None);
        }
        let word: [u8; 4] = src[..4].try_into().unwrap();
        if std::mem::take(&mut self.first) {
            if let Some(cmd) = warden_core::fourlw::parse(&word) {
                src.advance(4);
                return Ok(Some(Inbound::FourLetter(cmd)));
            }
        }
        // Every whole frame in the buffer; a bad length after good frames is
        // an error at the next call, once those frames are handled.
        let mut end = 0;
        while let Some(word) = src.get(end..end + 4) {
            let len = i32::from_be_bytes(word.try_into().unwrap());
            if len < 0 || len as usize > self.max_frame_bytes {
                if end == 0 {
                    return Err(FrameError::BadLength(len as i64));
                }
                break;
            }
            let next = end + 4 + len as usize;
            if src.len() < next {
                if end == 0 {
                    src.reserve(next - src.len());
                    return Ok(None);
                }
                break;
            }
            end = next;
        }
        Ok(Some(Inbound::Frames(src.split_to(end))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(item: Option<Inbound>) -> Vec<Vec<u8>> {
        match item {
            Some(Inbound::Frames(b)) => frames(&b).map(<[u8]>::to_vec).collect(),
            _ => panic!("expected frames"),
        }
    }

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut c = ClientCodec::new(100);
        let mut b = BytesMut::from(&[0, 0, 0, 2, 7, 8, 0, 0, 0, 0, 0, 0, 0, 3, 1][..]);
        assert_eq!(payloads(c.decode(&mut b).unwrap()), [vec![7, 8], vec![]], "every whole frame at once");
        assert!(c.decode(&mut b).unwrap().is_none());
        b.extend_from_slice(&[2, 3, 0]);
        assert_eq!(payloads(c.decode(&mut b).unwrap()), [vec![1, 2, 3]]);
        assert_eq!(&b[..], &[0], "the next frame's partial length stays");
    }

    #[test]
    fn an_emptied_buffer_has_room_for_the_next_request_without_growing() {
        let mut c = ClientCodec::new(100);
        let mut b = BytesMut::with_capacity(1024);
        // Requests read one after another use up the buffer's tail...
        for _ in 0..40 {
            b.extend_from_slice(&[0, 0, 0, 20]);
            b.extend_from_slice(&[9; 20]);
            drop(c.decode(&mut b).unwrap());
            assert!(c.decode(&mut b).unwrap().is_none());
            // ...but before each next read there is room for a whole one.
            assert!(b.capacity() - b.len() >= READ_ROOM / 4, "{} bytes of room", b.capacity() - b.len());
            assert!(b.capacity() <= 1024, "reclaimed in place, not grown: {}", b.capacity());
        }
    }

    #[test]
    fn a_bad_length_after_whole_frames_is_an_error_after_them() {
        let mut c = ClientCodec::new(10);
        let mut b = BytesMut::from(&[0, 0, 0, 1, 9, 0, 0, 0, 11, 0][..]);
        assert_eq!(payloads(c.decode(&mut b).unwrap()), [vec![9]]);
        assert!(matches!(c.decode(&mut b), Err(FrameError::BadLength(11))));
    }

    #[test]
    fn four_letter_words_only_first() {
        let mut c = ClientCodec::new(100);
        let mut b = BytesMut::from(&b"ruok"[..]);
        assert!(matches!(c.decode(&mut b).unwrap(), Some(Inbound::FourLetter("ruok"))));
        let mut c = ClientCodec::new(usize::MAX);
        let mut b = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(payloads(c.decode(&mut b).unwrap()), [Vec::<u8>::new()]);
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
