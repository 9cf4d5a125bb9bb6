//! Checksummed record framing shared by the transaction log and snapshots:
//! `[u32 length][u32 crc32c(payload)][payload]`, big-endian. A zero length
//! marks the end of written data (log files are preallocated with zeros).

pub const HEADER_BYTES: usize = 8;

pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    assert!(!payload.is_empty(), "empty payloads would read as end-of-data");
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Why reading stopped before the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub offset: usize,
    pub reason: String,
    /// Only zeros follow the bad record: the signature of a write torn by a
    /// crash (never acknowledged), as opposed to damage inside written data.
    pub torn: bool,
}

/// Iterates records from `start`; yields `(offset, payload)`.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Records<'a> {
    pub fn new(buf: &'a [u8], start: usize) -> Records<'a> {
        Records { buf, pos: start, done: false }
    }

    /// Where the next record would start (after the last good one).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn bad(&mut self, reason: String, claimed_end: usize) -> Option<Result<(usize, &'a [u8]), BadRecord>> {
        self.done = true;
        let after = claimed_end.min(self.buf.len());
        let torn = self.buf[after..].iter().all(|b| *b == 0);
        Some(Err(BadRecord { offset: self.pos, reason, torn }))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(usize, &'a [u8]), BadRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let left = self.buf.len() - self.pos;
        if left == 0 {
            return None;
        }
        if left < HEADER_BYTES {
            let end = self.buf.len();
            return if self.buf[self.pos..].iter().all(|b| *b == 0) {
                None
            } else {
                self.bad(format!("{left} stray bytes, shorter than a record header"), end)
            };
        }
        let at = self.pos;
        let len = u32::from_be_bytes(self.buf[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_be_bytes(self.buf[at + 4..at + 8].try_into().unwrap());
        if len == 0 {
            if crc == 0 {
                self.done = true;
                return None;
            }
            return self.bad("zero length with a non-zero checksum".into(), at + HEADER_BYTES);
        }
        let end = at + HEADER_BYTES + len;
        if end > self.buf.len() {
            return self.bad(format!("record of {len} bytes runs past the end of the file"), end);
        }
        let payload = &self.buf[at + HEADER_BYTES..end];
        if crc32c::crc32c(payload) != crc {
            return self.bad(format!("checksum mismatch in a record of {len} bytes"), end);
        }
        self.pos = end;
        Some(Ok((at, payload)))
    }
}

/// Reads records from a stream (a snapshot file too big to hold in memory):
/// the same framing and checks as `Records`, one payload at a time.
pub struct RecordReader<R> {
    inner: R,
    pos: usize,
    buf: Vec<u8>,
}

impl<R: std::io::Read> RecordReader<R> {
    /// `start` is the offset the stream is at (for error messages).
    pub fn new(inner: R, start: usize) -> RecordReader<R> {
        RecordReader { inner, pos: start, buf: Vec::new() }
    }

    /// The next record as `(offset, payload)`, or None at the end of the
    /// data (end of stream, or a zero header as in a preallocated file).
    pub fn next_record(&mut self) -> Result<Option<(usize, &[u8])>, BadRecord> {
        let at = self.pos;
        let bad = |reason: String| BadRecord { offset: at, reason, torn: false };
        let mut header = [0u8; HEADER_BYTES];
        let got = read_up_to(&mut self.inner, &mut header).map_err(|e| bad(format!("read error: {e}")))?;
        if got == 0 || (header[..got].iter().all(|b| *b == 0) && got == HEADER_BYTES) {
            return Ok(None);
        }
        if got < HEADER_BYTES {
            return Err(bad(format!("{got} stray bytes, shorter than a record header")));
        }
        let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
        let crc = u32::from_be_bytes(header[4..].try_into().unwrap());
        if len == 0 {
            return Err(bad("zero length with a non-zero checksum".into()));
        }
        self.buf.clear();
        // Grows as bytes arrive: a damaged length cannot allocate more than the stream holds.
        let read =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut self.inner, len as u64), &mut self.buf).map_err(|e| bad(format!("read error: {e}")))?;
        if read < len {
            return Err(bad(format!("record of {len} bytes runs past the end of the file")));
        }
        if crc32c::crc32c(&self.buf) != crc {
            return Err(bad(format!("checksum mismatch in a record of {len} bytes")));
        }
        self.pos = at + HEADER_BYTES + len;
        Ok(Some((at, &self.buf)))
    }

    /// Where the next record would start.
    pub fn position(&self) -> usize {
        self.pos
    }
}

/// Fills `buf` unless the stream ends first; returns how much was read.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_reader_reads_what_the_slice_reader_reads() {
        let mut buf = three_records();
        buf.extend_from_slice(&[0; 16]);
        let mut r = RecordReader::new(&buf[..], 0);
        let mut got = Vec::new();
        while let Some((at, p)) = r.next_record().unwrap() {
            got.push((at, p.to_vec()));
        }
        let want: Vec<_> = Records::new(&buf, 0).map(|r| r.map(|(at, p)| (at, p.to_vec())).unwrap()).collect();
        assert_eq!(got, want);
        let cut = three_records();
        let mut r = RecordReader::new(&cut[..cut.len() - 1], 0);
        r.next_record().unwrap();
        r.next_record().unwrap();
        assert!(r.next_record().unwrap_err().reason.contains("past the end"));
        let mut flipped = three_records();
        flipped[HEADER_BYTES] ^= 1;
        assert!(RecordReader::new(&flipped[..], 0).next_record().unwrap_err().reason.contains("checksum"));
    }

    fn three_records() -> Vec<u8> {
        let mut buf = Vec::new();
        for p in [&b"one"[..], b"two", b"three"] {
            encode(p, &mut buf);
        }
        buf
    }

    #[test]
    fn reads_back_records_and_stops_at_zeros() {
        let mut buf = three_records();
        buf.extend_from_slice(&[0; 64]);
        let got: Vec<_> = Records::new(&buf, 0).map(|r| r.unwrap().1.to_vec()).collect();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn cut_last_record_is_torn() {
        let buf = three_records();
        let cut = &buf[..buf.len() - 2];
        let mut it = Records::new(cut, 0);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_ok());
        let bad = it.next().unwrap().unwrap_err();
        assert!(bad.torn);
        assert_eq!(bad.offset, 2 * (HEADER_BYTES + 3));
        // A torn payload inside preallocated zeros reads the same way.
        let mut zeroed = three_records();
        let n = zeroed.len();
        zeroed[n - 2..].fill(0);
        zeroed.extend_from_slice(&[0; 32]);
        assert!(Records::new(&zeroed, 0).last().unwrap().unwrap_err().torn);
    }

    #[test]
    fn flipped_byte_in_the_middle_is_corruption() {
        let mut buf = three_records();
        buf[HEADER_BYTES + 1] ^= 0x40;
        let bad = Records::new(&buf, 0).next().unwrap().unwrap_err();
        assert_eq!(bad.offset, 0);
        assert!(!bad.torn, "good records follow, so this is damage, not a torn write");
        assert!(bad.reason.contains("checksum"));
    }
}
