//! Integration tests of the vhost-user-gpu daemon as a process, driven by a
//! real vhost-user frontend (`common`): one test binary, one module per
//! area, so the 1.8k-line frontend harness compiles once.

mod common;

mod backing;
mod bad_input;
mod churn;
mod commands;
mod display;
mod process;
mod queues;
mod robustness;
