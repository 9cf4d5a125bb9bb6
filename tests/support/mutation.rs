//! Byte-level mutations of valid encodings for the fuzz tests; each test
//! draws them with its own proptest strategy (hostile values differ by format).

#![allow(dead_code)] // each test binary uses the mutations its format needs

/// The proptest settings every fuzz test uses: `cases` runs, bounded
/// shrinking, no regression files written into the tree.
pub fn cfg(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config { cases, max_shrink_iters: 2000, failure_persistence: None, ..Default::default() }
}

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    /// Overwrite 4 bytes (a length or count field, usually).
    Set4(usize, [u8; 4]),
    /// Insert these bytes (a hostile header, usually).
    Splice(usize, Vec<u8>),
}

/// Applies `muts` in order; positions wrap around the current length.
pub fn mutate(mut buf: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = buf.len();
        match m {
            Mutation::Flip(i, x) if len > 0 => buf[i % len] ^= x,
            Mutation::Insert(i, b) => buf.insert(i % (len + 1), *b),
            Mutation::Delete(i) if len > 0 => {
                buf.remove(i % len);
            }
            Mutation::Truncate(i) => buf.truncate(i % (len + 1)),
            Mutation::Set4(i, v) if len >= 4 => {
                let at = i % (len - 3);
                buf[at..at + 4].copy_from_slice(v);
            }
            Mutation::Splice(i, bytes) => {
                let at = i % (len + 1);
                buf.splice(at..at, bytes.iter().copied());
            }
            _ => {}
        }
    }
    buf
}
