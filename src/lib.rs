//! Warden's pure core: the ZooKeeper wire codec, data tree, ACLs, sessions,
//! watches and request processing. Nothing here does I/O or reads a clock:
//! time, randomness and configuration are inputs, so all of it is unit-tested
//! deterministically. The actix actors in `actors/` own these pieces.
pub mod acl;
pub mod audit;
pub mod config;
pub mod database;
pub mod error;
pub mod fourlw;
pub mod jute;
pub mod keystore;
pub mod membership;
pub mod path;
pub mod prep;
pub mod proto;
pub mod quota;
pub mod record;
pub mod sasl;
pub mod server;
pub mod session;
pub mod shared_db;
pub mod snapshot;
pub mod throttle;
pub mod tree;
pub mod txn;
pub mod txnlog;
pub mod watch;
pub mod x509;
pub mod zab;
pub mod zkfiles;
