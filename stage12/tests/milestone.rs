//! Stage 12's file ports on the real binary. The second port sends
//! `sample.txt` from the `public` folder, the third asks for a file
//! outside it and must refuse; every way a download can end has one
//! outcome, checked here.
//!
//! | case                                    | the client sees                 |
//! |-----------------------------------------|---------------------------------|
//! | the sample                              | the whole file, then EOF (FIN)  |
//! | a file outside `public` (port 3)        | a close (FIN), no byte          |
//! | a symlink in `public` leading out       | a close, no byte                |
//! | `public2/…` beside `public`             | a close, no byte                |
//! | a file others may not read              | a close, no byte                |
//! | no such file                            | a close, no byte                |
//! | the file shrinks while it is sent       | what was read, then EOF         |
//! | the file is removed while it is sent    | all of it, then EOF             |
//! | the client never reads a 1 GiB file     | the server stays within 4 MiB   |
//! | the client leaves mid-file (1,000 times)| (the file and its fd are freed) |

use shared::client::{Client, IO_TIMEOUT, ReplyEnd};
use shared::harness::binary_under_test;
use shared::memory::{MIB, RssSampler};
use shared::procfs;
use shared::scratch::Scratch;
use shared::serial::{alone, side_by_side};
use shared::server::{Launch, Server};
use shared::upstream::Upstream;
use shared::wait::wait_until;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage12")).0
}

/// The stage's own `public` folder and the sample in it.
fn sample() -> Vec<u8> {
    fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("public/sample.txt")).unwrap()
}

/// A folder of its own for one test (removed when dropped), with an
/// empty `public` folder in it.
fn scratch(name: &str) -> Scratch {
    let scratch = Scratch::new(&format!("stage12-{name}"));
    fs::create_dir_all(scratch.join("public")).unwrap();
    scratch
}

/// Stage 12 on four free ports, serving from `public` (its own if
/// `None`); `quiet` leaves out DEBUG lines and message lines.
fn serve(public: Option<&Path>, quiet: bool) -> Server {
    let mut args = vec!["--ports".to_string(), "0,0,0,0".to_string()];
    if let Some(public) = public {
        args.push("--public".to_string());
        args.push(public.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The proxy port is not used here: an upstream nobody dials.
    let launch = Launch {
        quiet,
        skip_messages: quiet,
        upstream: Some("127.0.0.1:9".to_string()),
        ..Launch::default()
    };
    let mut server = Server::spawn_with(&stage_binary(), &args, &launch);
    server.wait_for_ports(4);
    server
}

/// Everything a client of `port` receives until the server closes, and
/// how it ended.
fn download(port: u16) -> (Vec<u8>, ReplyEnd) {
    let mut client = Client::connect(port);
    let reply = client.read_reply(64 << 20, IO_TIMEOUT);
    (reply.bytes, reply.end)
}

/// The client of `port` gets no byte and a clean close (FIN, not RST);
/// the write-back port still answers afterwards.
fn assert_refused(server: &Server, port: u16, why: &str) {
    let (bytes, end) = download(port);
    assert_eq!(end, ReplyEnd::Closed, "not closed cleanly:\n{}", server.stdout());
    assert!(bytes.is_empty(), "{} bytes sent:\n{}", bytes.len(), server.stdout());
    let logged = server.wait_for_count(why, 1, IO_TIMEOUT);
    assert!(logged, "no line says {why:?}:\n{}", server.stdout());
    assert_eq!(Client::connect(server.ports[3]).round_trip(b"alive\n"), b"alive\n");
}

#[test]
fn the_sample_comes_whole_then_eof_and_everything_is_freed() {
    let _shared = side_by_side();
    let server = serve(None, false);
    let (bytes, end) = download(server.ports[1]);
    assert_eq!(end, ReplyEnd::Closed, "{}", server.stdout());
    assert_eq!(bytes, sample(), "not the sample, byte for byte");
    for line in ["destroyed file sample.txt", "destroyed connection"] {
        assert!(server.wait_for_count(line, 1, IO_TIMEOUT), "no {line:?}:\n{}", server.stdout());
    }
}

#[test]
fn a_file_outside_public_is_refused_with_no_byte_and_no_reset() {
    let _shared = side_by_side();
    let server = serve(None, false);
    assert_refused(&server, server.ports[2], "outside of public directory");
}

/// Each way out of `public` a file port may meet, and a file nobody may
/// read, and one that is not there: refused, each for its own reason.
#[test]
fn every_way_out_of_public_is_refused() {
    let _shared = side_by_side();
    let scratch = scratch("boundary");
    let public = scratch.join("public");
    let secret = scratch.join("secret.txt");
    fs::write(&secret, "never to be served\n").unwrap();
    // A folder whose name starts with "public": inside it by text, not by path.
    fs::create_dir_all(scratch.join("public2")).unwrap();
    fs::write(scratch.join("public2/sample.txt"), "beside public\n").unwrap();

    // What the case is, how it makes public/sample.txt, and the reason
    // the log must give.
    type Case<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
    let cases: [Case; 4] = [
        ("a symlink leading out", &|p| symlink(&secret, p).unwrap(), "outside of public"),
        (
            "a symlink into public2",
            &|p| symlink("../public2/sample.txt", p).unwrap(),
            "outside of public",
        ),
        (
            "a file others may not read",
            &|p| {
                fs::write(p, "private\n").unwrap();
                fs::set_permissions(p, fs::Permissions::from_mode(0o640)).unwrap();
            },
            "others do not have read permission",
        ),
        ("no such file", &|_| {}, "no such file"),
    ];
    for (what, make, why) in cases {
        let sample = public.join("sample.txt");
        let _ = fs::remove_file(&sample);
        make(&sample);
        let server = serve(Some(&public), false);
        eprintln!("{what}");
        assert_refused(&server, server.ports[1], why);
    }
}

/// A file cut short while it is being sent: the client gets what was
/// read before, then a clean end, and the server serves on.
#[test]
fn a_file_that_shrinks_ends_the_download_cleanly() {
    let _shared = side_by_side();
    let scratch = scratch("shrink");
    let sample = scratch.write_sparse("public/sample.txt", 256 << 20);
    let server = serve(Some(&scratch.join("public")), true);
    let mut client = Client::connect(server.ports[1]);
    let first = client.read_reply(1 << 20, IO_TIMEOUT);
    assert_eq!(first.bytes.len(), 1 << 20);
    fs::File::options().write(true).open(&sample).unwrap().set_len(0).unwrap();
    let rest = client.read_reply(256 << 20, IO_TIMEOUT);
    assert_eq!(rest.end, ReplyEnd::Closed, "no clean end after the file shrank");
    let total = first.bytes.len() + rest.bytes.len();
    assert!(total < 256 << 20, "all {total} bytes came, though the file shrank");
    assert_eq!(Client::connect(server.ports[3]).round_trip(b"alive\n"), b"alive\n");
}

/// A file removed while it is being sent: the server holds it open, and on
/// Linux an open file lives on until its last fd is closed, so the client
/// gets all of it, then a clean end; a client that comes next is refused,
/// since the file is not there any more.
#[test]
fn a_file_removed_mid_download_is_still_sent_whole() {
    let _shared = side_by_side();
    let scratch = scratch("removed");
    let sample = scratch.write_sparse("public/sample.txt", 8 << 20);
    let server = serve(Some(&scratch.join("public")), true);
    let mut client = Client::connect(server.ports[1]);
    let first = client.read_reply(1 << 20, IO_TIMEOUT);
    assert_eq!(first.bytes.len(), 1 << 20);
    fs::remove_file(&sample).unwrap();
    let rest = client.read_reply(8 << 20, IO_TIMEOUT);
    assert_eq!(rest.end, ReplyEnd::Closed, "no clean end after the file was removed");
    assert_eq!(first.bytes.len() + rest.bytes.len(), 8 << 20, "not the whole file");
    let (bytes, end) = download(server.ports[1]);
    assert_eq!((bytes.len(), end), (0, ReplyEnd::Closed), "a removed file was served");
}

/// A client that never reads a 1 GiB file: the file is read only while
/// its pipe has room, so the server grows by at most 4 MiB, and a client
/// of the write-back port is answered within 100 ms all along.
#[test]
fn a_client_that_never_reads_a_gib_file_costs_one_pipe() {
    let _alone = alone();
    let scratch = scratch("gib");
    scratch.write_sparse("public/sample.txt", 1 << 30);
    let server = serve(Some(&scratch.join("public")), true);
    let sampler = RssSampler::start(server.process.pid()).unwrap();
    let sleeper = Client::connect(server.ports[1]);
    let mut bystander = Client::connect(server.ports[3]);
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let asked = Instant::now();
        assert_eq!(bystander.round_trip(b"ping\n"), b"ping\n");
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = sampler.finish().unwrap();
    eprintln!(
        "never-reading client of a 1 GiB file: RSS grew {} KiB; slowest bystander reply \
         {slowest:?}",
        rss.growth() / 1024
    );
    assert!(rss.growth() <= 4 * MIB, "the server grew by {} KiB", rss.growth() / 1024);
    assert!(slowest < Duration::from_millis(100), "a bystander waited {slowest:?}");
    drop(sleeper);
}

/// 1,000 downloads of a 4 MiB file, each ended early by the client (a
/// close or a reset, after reading some of it or none): the server ends
/// with the fds it started with, and within 1 MiB of its memory.
#[test]
fn a_thousand_abandoned_downloads_leave_nothing_behind() {
    let _shared = side_by_side();
    let scratch = scratch("abandon");
    scratch.write_sparse("public/sample.txt", 4 << 20);
    let server = serve(Some(&scratch.join("public")), true);
    let pid = server.process.pid();
    let fds = procfs::open_fds(pid).unwrap();
    let fds_back = || wait_until(IO_TIMEOUT, || procfs::open_fds(pid).is_ok_and(|n| n == fds));
    // One whole download first: what it allocates for good is in the baseline.
    let (bytes, _) = download(server.ports[1]);
    assert_eq!(bytes.len(), 4 << 20);
    assert!(fds_back());
    let rss = procfs::rss_bytes(pid).unwrap();
    let started = Instant::now();
    for i in 0..1000u64 {
        assert!(started.elapsed() < Duration::from_secs(30), "slow by download {i}");
        let mut client = Client::connect(server.ports[1]);
        let keep = (i * 7919 % 300_000) as usize;
        if keep > 0 {
            let _ = client.read_reply(keep, Duration::from_millis(500));
        }
        if i % 2 == 0 {
            client.reset();
        }
    }
    assert!(fds_back(), "{} fds, {fds} before", procfs::open_fds(pid).unwrap());
    let grown = procfs::rss_bytes(pid).unwrap().saturating_sub(rss);
    eprintln!(
        "1000 abandoned downloads in {:?}: fds back to {fds}, RSS {} KiB above",
        started.elapsed(),
        grown / 1024
    );
    assert!(grown <= MIB, "the server kept {} KiB", grown / 1024);
}

/// Out of fds: on the write-back port accept() itself fails, on the proxy
/// port the upstream's socket fails first (one fd a client there is not
/// enough). Either way the clients that cannot be served are closed one by
/// one, the shortage is logged once, the loop does not spin, and once fds
/// are free the port serves again. (The shared fd-exhaustion check starts
/// one port, the proxy, and so never reaches the accept() case.)
#[test]
fn out_of_fds_clients_are_closed_the_shortage_logged_once_and_nothing_spins() {
    let _shared = side_by_side();
    // An upstream that takes every connection and keeps it: a proxy
    // client holds two fds, its own and its upstream's, until it leaves.
    let upstream = Upstream::echo();
    for (index, shortage) in [(3, "accept() failed on port"), (0, "no fd for an upstream on port")]
    {
        let launch = Launch {
            quiet: true,
            skip_messages: true,
            max_fds: Some(48),
            upstream: Some(upstream.addr()),
            ..Launch::default()
        };
        let mut server = Server::spawn_with(&stage_binary(), &["--ports", "0,0,0,0"], &launch);
        server.wait_for_ports(4);
        let (port, pid) = (server.ports[index], server.process.pid());
        let base = procfs::open_fds(pid).unwrap();
        let mut held = Vec::new();
        if index == 0 {
            // Two fds a client: with an odd number left, the last accept()
            // takes the last fd and the upstream's socket() is what fails.
            // One client where a client costs one fd makes the number odd.
            if (48 - base).is_multiple_of(2) {
                held.push(Client::connect(server.ports[3]));
                let taken = || procfs::open_fds(pid).is_ok_and(|n| n == base + 1);
                assert!(wait_until(IO_TIMEOUT, taken), "the odd client was never accepted");
            }
        }
        held.extend((0..80).filter_map(|_| Client::try_connect(port).ok()));
        assert!(held.len() > 48, "only {} clients connected", held.len());
        let seen = server.wait_for_count(shortage, 1, IO_TIMEOUT);
        assert!(seen, "no {shortage:?} line:\n{}", server.stdout());
        let before = procfs::cpu_time(pid).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let spent = procfs::cpu_time(pid).unwrap().saturating_sub(before);
        assert!(spent < Duration::from_millis(100), "{spent:?} of CPU in 0.5 s while out of fds");
        // Once per shortage: the fd a turned-away client frees may end one, and
        // the next client start another.
        let (shortages, recoveries) = (server.count(shortage), server.count("fds are free again"));
        assert!(shortages <= recoveries + 1, "logged more than once:\n{}", server.stdout());
        // Not once a client either: the upstream's failed socket() is the
        // shortage's line, not an ERROR of its own.
        let per_client = server.count("failed for upstream");
        assert_eq!(
            per_client,
            0,
            "an upstream's fd shortage logged per client:\n{}",
            server.stdout()
        );
        drop(held);
        // The next client comes once the server has closed them all.
        let closed = || procfs::open_fds(pid).is_ok_and(|n| n <= base);
        assert!(wait_until(IO_TIMEOUT, closed), "the clients' fds were never freed");
        let _next = Client::connect(port);
        let again = server.wait_for_count("fds are free again: accepting on port", 1, IO_TIMEOUT);
        assert!(again, "port {index} never accepted again:\n{}", server.stdout());
    }
}
