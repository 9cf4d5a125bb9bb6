//! The history checker of the fault-injection runs, as a library so its
//! tests and its whole API stand apart from the harness binary.

pub mod linearizability;
