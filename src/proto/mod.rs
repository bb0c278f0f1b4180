//! The sans-IO core: pure parsers, encoders and state machines over byte slices.
//!
//! Nothing in here opens a socket, reads the clock or draws random numbers: the driver
//! passes `now` and random bytes in. That keeps every module deterministic, unit-testable
//! with exact byte vectors and fuzzable.

pub mod http1;
pub mod json;
pub mod longpoll;
pub mod sse;
pub mod timer;
pub mod topic;
pub mod webhook;
pub mod ws;
