//! `mkdata`: writes a file of a given size for the experiments.
//!
//! ```text
//! mkdata huge_file.dat 200M           random bytes
//! mkdata --text lines.txt 10M         printable lines of text
//! mkdata --force huge_file.dat 1G     overwrite an existing file
//! ```

use shared::cli::{options_or_exit, unknown};
use shared::oracle::Rng;
use shared::progress::{OffTerminal, ProgressLine};
use shared::units::{format_bytes, parse_size};
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "\
Usage: mkdata [--text] [--force] FILE SIZE

Writes SIZE bytes to FILE: random bytes, or printable lines with --text.
SIZE is a number of bytes with an optional K, M or G suffix (powers of 1024).

Options:
  --text     printable text lines instead of random bytes
  --force    overwrite FILE if it exists
  -h, --help print this help";

/// How much is generated and written at a time.
const CHUNK: usize = 1 << 20;

/// What the command line asks for.
struct Request {
    path: PathBuf,
    size: u64,
    text: bool,
    force: bool,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Request>, String> {
    let (mut text, mut force) = (false, false);
    let mut positional = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--text" => text = true,
            "--force" => force = true,
            flag if flag.starts_with('-') && flag.len() > 1 => return Err(unknown(flag)),
            _ => positional.push(arg),
        }
    }
    match positional.as_slice() {
        [path, size] => {
            Ok(Some(Request { path: PathBuf::from(path), size: parse_size(size)?, text, force }))
        }
        _ => Err("expected a FILE and a SIZE".to_string()),
    }
}

/// Fills `chunk` with random bytes, or with lines of letters and digits.
fn fill(chunk: &mut [u8], rng: &mut Rng, text: bool) {
    if text {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789";
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = if i % 64 == 63 {
                b'\n'
            } else {
                ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize]
            };
        }
    } else {
        for eight in chunk.chunks_mut(8) {
            let random = rng.next_u64().to_le_bytes();
            eight.copy_from_slice(&random[..eight.len()]);
        }
    }
}

fn write_file(request: &Request) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true);
    if request.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&request.path).map_err(|err| match err.kind() {
        io::ErrorKind::AlreadyExists => io::Error::new(
            err.kind(),
            format!("{} exists; pass --force to overwrite it", request.path.display()),
        ),
        _ => io::Error::new(err.kind(), format!("cannot create {}: {err}", request.path.display())),
    })?;

    // A half-written file would pass for a whole one later: remove it, if
    // it is a plain file (never a device such as /dev/full).
    fill_file(&mut file, request).map_err(|err| {
        let plain = file.metadata().is_ok_and(|meta| meta.is_file());
        let removed = plain && std::fs::remove_file(&request.path).is_ok();
        let note = if removed { " (the partial file was removed)" } else { "" };
        io::Error::new(
            err.kind(),
            format!("writing {} failed: {err}{note}", request.path.display()),
        )
    })
}

/// Writes the file's content, with progress on a terminal.
fn fill_file(file: &mut File, request: &Request) -> io::Result<()> {
    let started = Instant::now();
    let mut progress = ProgressLine::new(io::stderr().is_terminal(), OffTerminal::Quiet);
    let mut last_report = started;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut rng = Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id()));
    let mut chunk = vec![0; CHUNK];
    let mut written = 0;
    while written < request.size {
        let len = CHUNK.min((request.size - written) as usize);
        fill(&mut chunk[..len], &mut rng, request.text);
        if request.text && written + len as u64 == request.size {
            // Text ends with a whole line.
            chunk[len - 1] = b'\n';
        }
        file.write_all(&chunk[..len])?;
        written += len as u64;
        if last_report.elapsed() >= Duration::from_millis(100) {
            last_report = Instant::now();
            let percent = written * 100 / request.size;
            let size = format_bytes(request.size);
            progress.show(&format!("{} of {size} ({percent}%)", format_bytes(written)));
        }
    }
    file.sync_all()?;
    progress.clear();
    eprintln!(
        "wrote {} to {} in {:.1} s",
        format_bytes(written),
        request.path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let request = match options_or_exit("mkdata", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(request) => request,
        Err(status) => return status,
    };
    match write_file(&request) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mkdata: {err}");
            ExitCode::FAILURE
        }
    }
}
