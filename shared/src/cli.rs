//! What every tool does with its parsed flags.

use std::process::ExitCode;

/// Turns the result of a tool's flag parser into its options, or into the
/// exit status to return at once: `Ok(None)` means `--help` (the usage on
/// stdout, status 0); an error is one line naming the tool, then the usage,
/// on stderr, status 2.
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
