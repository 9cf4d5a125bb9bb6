//! Jute, ZooKeeper's binary record encoding: big-endian ints, length-prefixed
//! buffers and strings (length -1 = null), count-prefixed vectors, records as
//! fields in order with no tags.

use std::fmt;

/// Why a record could not be decoded. Every variant names what was wrong so the
/// connection that sent it can be closed with a useful log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended in the middle of a field.
    Truncated { needed: usize, left: usize },
    /// A length or count field was negative (other than -1) or larger than the input.
    BadLength(i64),
    /// A ustring field held invalid UTF-8.
    BadUtf8,
    /// Bytes were left over after a record that must fill its frame.
    Trailing(usize),
    /// A field held a value the protocol does not define.
    BadValue(&'static str, i64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { needed, left } => {
                write!(f, "truncated record: needed {needed} bytes, {left} left")
            }
            DecodeError::BadLength(n) => write!(f, "bad length or count {n}"),
            DecodeError::BadUtf8 => write!(f, "string is not valid UTF-8"),
            DecodeError::Trailing(n) => write!(f, "{n} unexpected bytes after record"),
            DecodeError::BadValue(what, v) => write!(f, "bad {what}: {v}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// A cursor over one frame's payload. Lengths are checked against what is left,
/// so a hostile length field can never make us allocate more than the frame.
#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes consumed so far (an offset for error messages).
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn finish(&self) -> DecodeResult<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { needed: n, left: self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    pub fn bool(&mut self) -> DecodeResult<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    pub fn byte(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    /// A length field: -1 means null, anything else must fit in what is left.
    fn len(&mut self, unit_bytes: usize) -> DecodeResult<Option<usize>> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        if n < 0 || (n as usize).saturating_mul(unit_bytes) > self.remaining() {
            return Err(DecodeError::BadLength(n as i64));
        }
        Ok(Some(n as usize))
    }

    pub fn buffer(&mut self) -> DecodeResult<Option<Vec<u8>>> {
        match self.len(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// A ustring; null decodes as the empty string (no field we read treats them apart).
    pub fn string(&mut self) -> DecodeResult<String> {
        self.str().map(str::to_owned)
    }

    /// [`Reader::string`], borrowed from the frame.
    pub fn str(&mut self) -> DecodeResult<&'a str> {
        match self.len(1)? {
            None => Ok(""),
            Some(n) => std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::BadUtf8),
        }
    }

    /// A vector; each element is at least `min_item_bytes` long, which bounds the count.
    pub fn vec<T>(&mut self, min_item_bytes: usize, mut item: impl FnMut(&mut Self) -> DecodeResult<T>) -> DecodeResult<Vec<T>> {
        match self.len(min_item_bytes.max(1))? {
            None => Ok(Vec::new()),
            Some(n) => (0..n).map(|_| item(self)).collect(),
        }
    }

    pub fn strings(&mut self) -> DecodeResult<Vec<String>> {
        self.vec(4, Reader::string)
    }
}

/// Appends jute fields to a byte buffer.
pub trait Writer {
    fn put_i32(&mut self, v: i32);
    fn put_i64(&mut self, v: i64);
    fn put_bool(&mut self, v: bool);
    fn put_bytes(&mut self, v: &[u8]);
    fn put_buffer(&mut self, v: Option<&[u8]>);
    fn put_string(&mut self, v: &str);
    fn put_strings<S: AsRef<str>>(&mut self, v: &[S]);
}

impl Writer for Vec<u8> {
    fn put_i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bool(&mut self, v: bool) {
        self.push(v as u8);
    }
    fn put_bytes(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
    fn put_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.put_i32(-1),
            Some(b) => {
                self.put_i32(b.len() as i32);
                self.put_bytes(b);
            }
        }
    }
    fn put_string(&mut self, v: &str) {
        self.put_buffer(Some(v.as_bytes()));
    }
    fn put_strings<S: AsRef<str>>(&mut self, v: &[S]) {
        self.put_i32(v.len() as i32);
        for s in v {
            self.put_string(s.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = Vec::new();
        w.put_i32(-7);
        w.put_i64(1 << 40);
        w.put_bool(true);
        w.put_buffer(None);
        w.put_buffer(Some(b"abc"));
        w.put_string("päth");
        w.put_strings(&["a", "bc"]);
        let mut r = Reader::new(&w);
        assert_eq!(r.i32().unwrap(), -7);
        assert_eq!(r.i64().unwrap(), 1 << 40);
        assert!(r.bool().unwrap());
        assert_eq!(r.buffer().unwrap(), None);
        assert_eq!(r.buffer().unwrap(), Some(b"abc".to_vec()));
        assert_eq!(r.string().unwrap(), "päth");
        assert_eq!(r.strings().unwrap(), vec!["a".to_string(), "bc".to_string()]);
        r.finish().unwrap();
    }

    #[test]
    fn hostile_lengths_are_rejected_without_allocating() {
        let mut w = Vec::new();
        w.put_i32(i32::MAX);
        assert_eq!(Reader::new(&w).buffer(), Err(DecodeError::BadLength(i32::MAX as i64)));
        assert_eq!(Reader::new(&w).strings(), Err(DecodeError::BadLength(i32::MAX as i64)));
        let mut w = Vec::new();
        w.put_i32(-2);
        assert_eq!(Reader::new(&w).buffer(), Err(DecodeError::BadLength(-2)));
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        assert!(matches!(Reader::new(&[0, 0]).i32(), Err(DecodeError::Truncated { .. })));
        let r = Reader::new(&[1]);
        assert_eq!(r.finish(), Err(DecodeError::Trailing(1)));
        assert_eq!(Reader::new(&[0, 0, 0, 1, 0xff]).string(), Err(DecodeError::BadUtf8));
    }
}
