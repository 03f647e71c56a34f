//! What every tool does with its parsed flags.

use std::process::ExitCode;

/// Turns the result of a tool's flag parser into its options, or into the
/// exit status to return at once: `Ok(None)` means `--help` (the usage on
/// stdout, status 0); an error is one line naming the tool, then the usage,
/// on stderr, status 2.
///
/// It also gives SIGPIPE back its default action, as a command-line tool
/// has in C: `xps-check | head` then ends quietly when `head` stops
/// reading, where Rust's default (SIGPIPE ignored) makes `println!` panic.
/// Sockets are not affected: `TcpStream` sends with `MSG_NOSIGNAL`.
///
/// ```text
/// let options = match options_or_exit("sender", USAGE, parse_args(args)) {
///     Ok(options) => options,
///     Err(status) => return status,
/// };
/// ```
pub fn options_or_exit<T>(
    tool: &str,
    usage: &str,
    parsed: Result<Option<T>, String>,
) -> Result<T, ExitCode> {
    // SAFETY: signal() with SIG_DFL takes no pointers; the tools are still
    // single-threaded when they parse their flags.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match parsed {
        Ok(Some(options)) => Ok(options),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("{tool}: {message}\n\n{usage}");
            Err(ExitCode::from(2))
        }
    }
}
