//! What the tests and tools of every stage share. Nothing here is lesson
//! code: a learner reading a stage never needs to open this crate.
//!
//! * [`server`]: start a stage binary on free ports, read its log, stop it
//!   with a signal, and never leave it running (kill on drop).
//! * [`child`]: any program a test starts, killed and reaped on drop, its
//!   exit waited for with a deadline and signalled safely.
//! * [`capture`]: what a program prints, read by a thread as it comes, and
//!   waited for with a deadline.
//! * [`client`]: TCP clients on 127.0.0.1 with deadlines on every wait.
//! * [`oracle`]: random messages like the official tester's.
//! * [`stages`]: the stage table: what each stage replies and how it
//!   behaves, one row each; `Protocol::reply` is the oracle.
//! * [`checks`]: the one list of checks, each returning what went wrong
//!   instead of panicking; `xps-check` and the stage tests both run it.
//! * [`harness`]: the checks as a stage crate's tests (`stage_tests!`),
//!   against its binary or the one `XPS_BIN` names.
//! * [`wait`]: polling a condition until a deadline.
//! * [`cli`]: the tools' command line: flags and their values read the
//!   same way everywhere, the exit status, and the host's addresses, IPv4
//!   first.
//! * [`build`]: finding another workspace crate's binary from a test.
//! * [`units`]: sizes such as `200M`, parsed and printed.
//! * [`progress`]: the tools' progress line on stderr, and the rate in it.
//! * [`sender`]: the `sender` tool flooding a server, from a test.
//! * [`pty`]: a program on a pseudo-terminal, prompting as for a person.
//! * [`procfs`]: a process's open fds, memory, CPU time and listening ports,
//!   from `/proc`, and which process listens on a port.
//! * [`sock_diag`]: the machine's listening TCP sockets, asked of the
//!   kernel over netlink (cheaper than `/proc/net/tcp` after a flood).
//! * [`load`]: clients that keep a server busy in the background.
//! * [`memory`]: a server's memory under clients that send without
//!   reading: the flood, the memory sampled from `/proc` while it runs,
//!   and a digest of what comes back.
//! * [`serial`]: which tests of one binary run alone (those that time
//!   something) and which side by side.
//! * [`scratch`]: a temporary folder of a test's own, removed when
//!   dropped.
//! * [`upstream`]: the servers a reverse proxy forwards to, run by the
//!   test itself: an echo and a small HTTP/1.0 server, whose connections
//!   are counted.

pub mod build;
pub mod capture;
pub mod checks;
pub mod child;
pub mod cli;
pub mod client;
pub mod harness;
pub mod load;
pub mod memory;
pub mod oracle;
pub mod procfs;
pub mod progress;
pub mod pty;
pub mod scratch;
pub mod sender;
pub mod serial;
pub mod server;
pub mod sock_diag;
pub mod stages;
pub mod units;
pub mod upstream;
pub mod wait;
