//! sender against small servers written here: it delivers every byte, it
//! never reads, it reports a stall, and it fails cleanly when the server is
//! not there.

use shared::client::ClosedPort;
use shared::pty::Terminal;
use shared::sender::{Flood, longest_stall};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SENDER: &str = env!("CARGO_BIN_EXE_sender");

/// How long any step of a terminal session may take.
const WAIT: Duration = Duration::from_secs(5);

#[test]
fn streams_all_of_stdin_and_exits_at_eof() {
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut sender = Command::new(SENDER)
        .args(["--port", &port, "--exit-at-eof"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    let to_send = data.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&to_send));

    let (mut conn, _) = server.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    conn.read_to_end(&mut received).unwrap();
    feeder.join().unwrap().unwrap();
    let out = sender.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        received == data,
        "received {} of {} bytes, or different ones",
        received.len(),
        data.len()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("end of input: sent 2.9 MiB"), "{out:?}");
}

#[test]
fn prompts_and_sends_each_typed_line_on_a_terminal() {
    const PROMPT: &str = "Enter message to send: ";
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let mut terminal = Terminal::spawn(Path::new(SENDER), &["--port", &port]);
    let (mut conn, _) = server.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (i, line) in ["hello", "Rust is fun"].into_iter().enumerate() {
        assert!(terminal.read_until_seen(PROMPT, i + 1, WAIT), "{}", terminal.screen());
        terminal.type_line(line);
        let mut got = vec![0; line.len() + 1];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, format!("{line}\n").as_bytes());
    }
    assert!(terminal.read_until_seen(PROMPT, 3, WAIT), "{}", terminal.screen());
    terminal.end_input();
    let status = terminal.wait_exit(WAIT);
    terminal.read_to_end(WAIT);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", terminal.screen());
    assert_eq!(terminal.screen().matches("Message sent to server").count(), 2);
    // Ctrl+D closes the connection: the server reads end of stream.
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected bytes {rest:?}");
}

#[test]
fn reports_a_stall_when_the_server_does_not_read() {
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut sender = Flood::start(Path::new(SENDER), server.local_addr().unwrap().port());
    // Accept, then never read: the sender must stall.
    let (_conn, _) = server.accept().unwrap();
    let seen = sender.read_until_stalled_for(2, Duration::from_secs(15));
    assert!(longest_stall(&seen) >= Some(2), "{seen}");
    assert!(seen.contains(" s: the server is not reading\n"), "{seen}");
}

#[test]
fn no_server_is_a_one_line_error_and_status_1() {
    // A port nothing listens on, and nothing can take while we use it.
    let closed = ClosedPort::new().unwrap();
    let port = closed.port;
    let out = Command::new(SENDER)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect") && stderr.contains("refused"), "{stderr}");
}

#[test]
fn server_that_goes_away_is_an_error() {
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut sender = Flood::start(Path::new(SENDER), server.local_addr().unwrap().port());
    // Read a little, then close with unread data: the sender sees a reset.
    let (mut conn, _) = server.accept().unwrap();
    let mut some = [0; 1000];
    conn.read_exact(&mut some).unwrap();
    drop(conn);
    drop(server);
    let status = sender.wait_exit(Duration::from_secs(10));
    let stderr = sender.read_until("the server is gone", Duration::from_secs(1));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(stderr.contains("the server is gone"), "{stderr}");
}
