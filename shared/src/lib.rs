//! What the tests and tools of every stage share. Nothing here is lesson
//! code: a learner reading a stage never needs to open this crate.
//!
//! * [`server`]: start a stage binary on free ports, read its log, stop it
//!   with a signal, and never leave it running (kill on drop).
//! * [`client`]: TCP clients on 127.0.0.1 with deadlines on every wait.
//! * [`oracle`]: the reply a correct server sends, and random messages.
//! * [`stages`]: the stage table: what each stage replies and how it
//!   behaves, one row each.
//! * [`checks`]: the one list of checks, each returning what went wrong
//!   instead of panicking; `xps-check`, the stage tests and the exercise
//!   tool all run it.
//! * [`harness`]: the checks as a stage crate's tests (`stage_tests!`),
//!   against its binary or the one `XPS_BIN` names.
//! * [`scenarios`]: the course's milestones and the official tester's
//!   checks, written once and run against every stage.
//! * [`wait`]: polling a condition until a deadline.
//! * [`cli`]: what every tool does with its parsed flags.
//! * [`build`]: finding another workspace crate's binary from a test.
//! * [`units`]: sizes such as `200M`, parsed and printed.
//! * [`sender`]: the `sender` tool flooding a server, from a test.
//! * [`pty`]: a program on a pseudo-terminal, prompting as for a person.
//! * [`procfs`]: a process's open fds, memory, CPU time and listening ports,
//!   from `/proc`, and which process listens on a port.
//! * [`robustness`]: faults, floods and hostile input, run against every
//!   stage.
//! * [`load`]: clients that keep a server busy in the background.
//! * [`shutdown`]: Ctrl+C and SIGTERM, idle and under load, for every stage
//!   from 7 on.

pub mod build;
pub mod checks;
pub mod cli;
pub mod client;
pub mod harness;
pub mod load;
pub mod oracle;
pub mod procfs;
pub mod pty;
pub mod robustness;
pub mod scenarios;
pub mod sender;
pub mod server;
pub mod shutdown;
pub mod stages;
pub mod units;
pub mod wait;
