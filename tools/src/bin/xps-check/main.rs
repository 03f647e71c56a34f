//! `xps-check`: checks whatever server is listening, yours or ours, against
//! the milestones of a stage, and says plainly what passes and what fails.
//!
//! ```text
//! xps-check --stage 7                       all the stage-7 checks on 8001-8004
//! xps-check --stage 6 --ports 9001,9002     another set of ports
//! xps-check --stage 7 --only large-message  one check (or a few: a,b,c)
//! xps-check --stage 11                      8001 proxies to 127.0.0.1:3000
//! xps-check --stage 13                      sessions: proxy, file, nothing behind
//! ```
//!
//! It never starts a server, so it works on any implementation, in C or in
//! Rust. It only talks to the host it is given, and every wait has a limit:
//! one reply may take `--timeout`, one check [`CHECK_DEADLINE`] in all, so a
//! server that answers slowly fails in seconds; it does not hang the check.
//! When nothing listens, or the server never answers at all, the run stops
//! at the first check that shows it: the others would only fail the same
//! way, one timeout after another.

mod files;
mod proxy;
mod report;
mod session;

use report::{Tally, report, summary};
use shared::checks::target::nothing_listens;
use shared::checks::{CHECK_DEADLINE, CHECKS, Cause, Check, REPLY_TIMEOUT, Run, run_wire, secs};
use shared::cli::{Args, options_or_exit, resolve, unknown};
use shared::procfs;
use shared::stages::{self, STAGES, SendModel, Stage};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The usage, with the stages this workspace has.
fn usage() -> String {
    let stages = stages::numbers_in_words();
    format!(
        "\
Usage: xps-check --stage N [--host HOST] [--ports P1,P2,...] [--only NAME,...]
                 [--pid PID] [--timeout SECS] [--deadline SECS] [--json]
                 [--upstream HOST:PORT] [--sample FILE]
       xps-check --list
       xps-check --stages

Checks the server listening on HOST at PORTS against the milestones of
stage N ({stages}) and prints one line per check. The stage says what a
right server replies (reversed up to stage 9, written back from stage 10)
and how it behaves.

Options:
  --stage N        {stages} (required, except with --list)
  --host HOST      where the server is (default 127.0.0.1; a name is tried
                   at each of its addresses, IPv4 first)
  --ports P1,...   its ports, 1 to 65535 (default 8001,8002,8003,8004)
  --only NAME,...  run only these checks (see --list), in the list's order
  --pid PID        the server's process, for the checks that read its CPU
                   and memory from /proc (default: the process listening on
                   the first port, when HOST is this machine)
  --list           list the checks and exit
  --stages         list the stages, one line each, and exit, for scripts
                   such as tools/bench.sh: NUMBER CRATE PROTOCOL, then
                   send=blocks|buffers idle=quiet|spins
                   memory=bounded|unbounded shutdown=graceful|none
                   proxy=yes|no (the first port forwards to --upstream)
                   file=yes|no (the second port serves a file)
  --timeout SECS   how long to wait for one reply (default 2, at most 60)
  --deadline SECS  how long one check may take in all (default 20, at most
                   600); a check that runs out of time fails
  --upstream H:P   stage 11 on: where the first port forwards (default
                   127.0.0.1:3000). If nothing listens there, xps-check
                   starts an HTTP server there for proxy-responses and
                   stops it for upstream-down; if yours runs (python3 -m
                   http.server 3000), upstream-down waits until it is stopped
  --sample FILE    stage 12 on: the file the second port serves (default:
                   this workspace's own, stageNN/public/sample.txt); in stage 12
                   the third port must refuse its file and send nothing; from
                   stage 13 the third and fourth have sessions with nothing
                   behind them, and no port writes back
  --json           one JSON object per check (\"result\": \"pass\", \"note\" or
                   \"fail\"), then a summary object
  -h, --help       print this help

A NOTE is an observation, not a failure: the flaw a stage's lesson is
about, seen where that stage still has it (the blocking-send stall at
stages 6 and 7, the idle spin at stage 8, the memory a client that never
reads costs at stages 8 and 9).
The run stops early if nothing listens on any port, or if the server sends
nothing at all: the remaining checks would only wait for it in turn.

Exit status: 0 if no check failed, 1 if one failed or nothing listens, 2 for
bad flags."
    )
}

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    stage: Option<&'static Stage>,
    host: String,
    ports: Vec<u16>,
    only: Option<String>,
    list: bool,
    stages: bool,
    timeout: Duration,
    deadline: Duration,
    json: bool,
    pid: Option<u32>,
    upstream: String,
    /// `--sample`; `None`: the stage's own in this workspace.
    sample: Option<String>,
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Options>, String> {
    let mut options = Options {
        stage: None,
        host: "127.0.0.1".to_string(),
        ports: vec![8001, 8002, 8003, 8004],
        only: None,
        list: false,
        stages: false,
        timeout: REPLY_TIMEOUT,
        deadline: CHECK_DEADLINE,
        json: false,
        pid: None,
        upstream: "127.0.0.1:3000".to_string(),
        sample: None,
    };
    let mut args = Args::new(args);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => options.json = true,
            "--list" => options.list = true,
            "--stages" => options.stages = true,
            "--stage" => options.stage = Some(args.stage(&flag)?),
            "--host" => options.host = args.value(&flag)?,
            "--ports" => options.ports = args.ports(&flag)?,
            "--only" => options.only = Some(args.value(&flag)?),
            "--pid" => options.pid = Some(args.number(&flag, 1..=u32::MAX)?),
            "--upstream" => options.upstream = args.value(&flag)?,
            "--sample" => options.sample = Some(args.value(&flag)?),
            "--timeout" => options.timeout = args.seconds(&flag, 60.0)?,
            "--deadline" => options.deadline = args.seconds(&flag, 600.0)?,
            _ => return Err(unknown(&flag)),
        }
    }
    if options.stage.is_none() && !options.list && !options.stages {
        let stages = stages::numbers_in_words();
        return Err(format!("--stage is required ({stages}): the checks depend on it"));
    }
    Ok(Some(options))
}

/// Prints the stage table, one line per stage, for scripts: the number,
/// the crate and the protocol, then each property as `key=value`.
fn list_stages() {
    for stage in STAGES {
        let send = match stage.send_model {
            SendModel::Blocks => "blocks",
            SendModel::Buffers => "buffers",
        };
        println!(
            "{} {} {} send={send} idle={} memory={} shutdown={} proxy={} file={}",
            stage.number,
            stage.crate_name,
            stage.protocol.name(),
            if stage.spins_when_idle { "spins" } else { "quiet" },
            if stage.unbounded_memory { "unbounded" } else { "bounded" },
            if stage.graceful_shutdown { "graceful" } else { "none" },
            if stage.forwards_first_port { "yes" } else { "no" },
            if stage.serves_files { "yes" } else { "no" },
        );
    }
}

/// Prints the checks xps-check can run: those that only need the network.
fn list() {
    for (check, _) in wire_checks() {
        println!("{:<15} {}", check.name, check.about);
    }
    let others = [
        proxy::RESPONSES,
        proxy::HALF_CLOSE,
        proxy::DOWN,
        files::SAMPLE,
        files::OUTSIDE,
        session::EMPTY,
    ];
    for check in others {
        println!("{:<15} {}", check.name, check.about);
    }
}

/// The checks that talk to a running server over TCP, with their code.
fn wire_checks() -> impl Iterator<Item = (&'static Check, WireCheck)> {
    CHECKS.iter().filter_map(|check| match check.run {
        Run::Wire(run) => Some((check, run)),
        // It starts the binary itself: xps-check never starts a server.
        Run::Binary(_) => None,
    })
}

/// The code of a wire check.
type WireCheck = fn(&shared::checks::Target, &Stage) -> shared::checks::Outcome;

fn main() -> ExitCode {
    let parsed = parse_args(std::env::args().skip(1));
    let options = match options_or_exit("xps-check", &usage(), parsed) {
        Ok(options) => options,
        Err(status) => return status,
    };
    if options.stages {
        list_stages();
        return ExitCode::SUCCESS;
    }
    let Some(stage) = options.stage.filter(|_| !options.list) else {
        list();
        return ExitCode::SUCCESS;
    };
    let only: Vec<&str> =
        options.only.as_deref().map_or(Vec::new(), |only| only.split(',').collect());
    let proxy_names = [
        proxy::RESPONSES.name,
        proxy::HALF_CLOSE.name,
        proxy::DOWN.name,
        files::SAMPLE.name,
        files::OUTSIDE.name,
        session::EMPTY.name,
    ];
    if let Some(unknown) = only.iter().find(|name| {
        wire_checks().all(|(check, _)| check.name != **name) && !proxy_names.contains(*name)
    }) {
        let mut names: Vec<_> = wire_checks().map(|(check, _)| check.name).collect();
        names.extend(proxy_names);
        eprintln!("xps-check: no check named '{unknown}'; there are: {}", names.join(", "));
        return ExitCode::from(2);
    }
    let all_addrs = match resolve(&options.host, &options.ports) {
        Ok(addrs) => addrs,
        Err(message) => {
            eprintln!("xps-check: {message}");
            return ExitCode::from(2);
        }
    };
    // From stage 11 the first port is a proxy: the write-back checks use
    // the others, and the proxy has checks of its own. From stage 12 the
    // second and third serve files, with checks of their own too.
    let forwards = stage.forwards_first_port && all_addrs.len() > 1;
    let serves_files = stage.serves_files && all_addrs.len() > 3;
    // From stage 13 no port writes back: the write-back checks have no
    // port to run on (the stage tests run them through the proxy, in
    // front of an upstream that writes back).
    let sessions = stage.sessions && all_addrs.len() > 3;
    let selected: Vec<(&Check, WireCheck)> = wire_checks()
        .filter(|(check, _)| only.is_empty() || only.contains(&check.name))
        .filter(|_| !sessions)
        .collect();
    let addrs = if serves_files {
        all_addrs[3..].to_vec()
    } else if forwards {
        all_addrs[1..].to_vec()
    } else {
        all_addrs.clone()
    };
    let upstream = match forwards.then(|| proxy::upstream_addr(&options.upstream)).transpose() {
        Ok(upstream) => upstream,
        Err(message) => {
            eprintln!("xps-check: {message}");
            return ExitCode::from(2);
        }
    };
    // The CPU and memory checks read /proc, which only works for a server
    // on this machine: find it by its port, as soak does, unless --pid
    // names it.
    let on_this_machine = addrs.iter().flatten().all(|addr| addr.ip().is_loopback());
    let pid = options.pid.or_else(|| {
        let port = *options.ports.first()?;
        on_this_machine.then(|| procfs::pid_listening_on(port).ok().flatten()).flatten()
    });
    // Colour only on a terminal, and never when NO_COLOR is set to anything
    // but "" (no-color.org). `colored` has its own guess from the
    // environment; this one is the one that counts, so tell it.
    colored::control::set_override(
        !options.json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    );
    if !options.json {
        let ports: Vec<String> = options.ports.iter().map(u16::to_string).collect();
        println!(
            "checking stage {} ({}) on {} port {}",
            stage.number,
            if sessions { "sessions" } else { stage.protocol.name() },
            options.host,
            ports.join(", ")
        );
        if forwards && !sessions {
            println!(
                "port {} forwards to the upstream at {}: the write-back checks use the others",
                options.ports[0], options.upstream
            );
        }
        if sessions {
            println!(
                "port {} forwards to the upstream at {}, port {} serves a file, ports {} and {} \
                 have nothing behind their sessions: no port writes back, so the write-back \
                 checks are not run",
                options.ports[0],
                options.upstream,
                options.ports[1],
                options.ports[2],
                options.ports[3]
            );
        } else if serves_files {
            println!(
                "ports {} and {} serve files: the write-back checks use port {}",
                options.ports[1], options.ports[2], options.ports[3]
            );
        }
    }
    let mut tally = Tally::default();
    let mut stopped = None;
    // A silent server (it accepts, maybe reads, never answers) would make
    // every check wait out its own --timeout, half a minute in all. So the
    // run stops once the server has proved silent: a check got not one byte
    // back, and the server had sent nothing before it either, since the run
    // began or since the previous check, which it left unanswered too. The
    // remaining checks could only wait for it in turn. (An overall time
    // limit would be simpler, but it would also cut short a server that is
    // slow yet answers: judging that is what each check's --deadline is for.)
    let mut unanswered = true;
    for (index, (check, run)) in selected.iter().enumerate() {
        let started = Instant::now();
        let (outcome, target) =
            run_wire(*run, &addrs, stage, options.timeout, options.deadline, pid);
        let took = started.elapsed();
        let cause = outcome.as_ref().err().map_or(Cause::Other, |failure| failure.cause);
        let silent = cause == Cause::Silent && !target.heard_anything();
        let left = selected.len() - index - 1;
        let stop = match cause {
            // Refused on one port: is anything listening anywhere?
            Cause::Refused if nothing_listens(&addrs) => {
                let at = listening_at(&options.host, &options.ports);
                if tally.run() == 0 {
                    // No server at all: one line says it better than a
                    // failure per check.
                    eprintln!(
                        "xps-check: nothing is listening on {at} (connection refused): start \
                         your server first, or pass --ports"
                    );
                    return ExitCode::FAILURE;
                }
                Some(format!(
                    "nothing is listening on {at} any more (connection refused): has the \
                     server exited? The other {left} checks were not run"
                ))
            }
            _ if silent && unanswered => Some(format!(
                "the server has not sent a single byte {} (each reply may take --timeout, {}): \
                 the other {left} checks would only wait for it in turn, so they were not run; \
                 if the server is only slow, raise --timeout",
                if tally.run() == 0 { "since the run began" } else { "in the last two checks" },
                secs(options.timeout)
            )),
            _ => None,
        };
        unanswered = silent;
        report(check, &outcome, took, &options);
        tally.count(&outcome);
        if left > 0 && stop.is_some() {
            tally.not_run = left;
            stopped = stop;
            break;
        }
    }
    let wanted = |name: &str| only.is_empty() || only.contains(&name);
    if let (Some(upstream), None) = (upstream, &stopped) {
        proxy::run(&all_addrs[0], upstream, wanted, &options, &mut tally);
    }
    if serves_files && stopped.is_none() {
        let outside = (!sessions).then(|| all_addrs[2].as_slice());
        files::run(&all_addrs[1], outside, wanted, &options, &mut tally);
    }
    if sessions && stopped.is_none() {
        session::run(&all_addrs[2..4], wanted, &options, &mut tally);
    }
    summary(&tally, stopped.as_deref(), options.json);
    if tally.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Where the server should be, as a person writes it: `127.0.0.1:8001`,
/// `[::1]:8001`, `127.0.0.1 port 8001, 8002 or 8003`.
fn listening_at(host: &str, ports: &[u16]) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    match ports {
        [port] => format!("{host}:{port}"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(u16::to_string).collect();
            format!("{host} port {} or {last}", rest.join(", "))
        }
        [] => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_nothing_listens_reads_well() {
        assert_eq!(listening_at("127.0.0.1", &[8001]), "127.0.0.1:8001");
        assert_eq!(listening_at("::1", &[8001]), "[::1]:8001");
        assert_eq!(
            listening_at("localhost", &[8001, 8002, 8003]),
            "localhost port 8001, 8002 or 8003"
        );
    }

    /// The words of `text`, split at spaces, brackets and bars.
    fn words(text: &str) -> Vec<&str> {
        text.split(|c: char| c.is_whitespace() || "[]|".contains(c))
            .filter(|word| !word.is_empty())
            .collect()
    }

    #[test]
    fn the_usage_names_every_flag_parse_args_takes() {
        // Each flag parse_args takes, with a value it accepts.
        let taken = [
            ("--stage", Some("8")),
            ("--host", Some("localhost")),
            ("--ports", Some("8001,8002")),
            ("--only", Some("every-port")),
            ("--pid", Some("4242")),
            ("--timeout", Some("5")),
            ("--deadline", Some("30")),
            ("--upstream", Some("127.0.0.1:3000")),
            ("--sample", Some("sample.txt")),
            ("--json", None),
            ("--list", None),
            ("--stages", None),
        ];
        let usage = usage();
        let synopsis = usage.split("\n\n").next().unwrap_or_default();
        let described: Vec<&str> = usage
            .lines()
            .filter(|line| line.starts_with("  --"))
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        for (flag, value) in taken {
            let mut args = vec!["--stage", "8", flag];
            args.extend(value);
            assert!(parse_args(&args).is_ok(), "parse_args refuses {args:?}");
            assert!(words(synopsis).contains(&flag), "the usage line lacks {flag}:\n{synopsis}");
            assert!(described.contains(&flag), "the options do not describe {flag}");
        }
        for flag in &described {
            assert!(
                taken.iter().any(|(name, _)| name == flag),
                "the usage describes {flag}, which this test does not know"
            );
        }
        assert!(parse_args(["--stage", "8", "--colour"]).is_err());
    }
}
