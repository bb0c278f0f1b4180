//! The sans-IO core: pure parsers, encoders and state machines over byte slices.
//!
//! Nothing in here opens a socket, reads the clock or draws random numbers: the driver
//! passes `now` and random bytes in. That keeps every module deterministic, unit-testable
//! with exact byte vectors and fuzzable.

pub mod auth;
pub mod backplane;
pub mod fanout;
pub mod http1;
pub mod inbuf;
pub mod json;
pub mod out;
pub mod resp;
pub mod server;
pub mod sse;
pub mod store;
pub mod subs;
pub mod tap;
pub mod timer;
pub mod topic;
pub mod webhook;
pub mod ws;
