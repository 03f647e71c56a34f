//! The stage table: what every tool and test needs to know about a stage,
//! in one row each. Adding a stage to the tests and tools is adding its row
//! here (and the crate's own short test file).
//!
//! The properties are the ones the checks ask about: what a right server
//! replies ([`Protocol`]), whether a client that never reads can block it
//! ([`SendModel`]), whether it spins when a client sits idle, whether its
//! memory is bounded, and whether Ctrl+C is a graceful shutdown. Each check
//! derives from them what it expects of the stage (see `checks`).

/// What a right server sends back for each chunk it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Stages 6 to 9: the chunk reversed, one trailing `\n` kept last;
    /// valid UTF-8 reversed by character, anything else byte by byte.
    Reverse,
    /// From stage 10 on: the chunk itself, unchanged.
    WriteBack,
}

impl Protocol {
    /// The reply a right server sends to `message`, received as one chunk.
    pub fn reply(self, message: &[u8]) -> Vec<u8> {
        match self {
            Protocol::Reverse => reversed(message),
            Protocol::WriteBack => message.to_vec(),
        }
    }

    /// The protocol's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Reverse => "reverse",
            Protocol::WriteBack => "write-back",
        }
    }

    /// The protocol named `name` (`reverse` or `write-back`).
    pub fn from_name(name: &str) -> Option<Protocol> {
        [Protocol::Reverse, Protocol::WriteBack].into_iter().find(|p| p.name() == name)
    }
}

/// Everything reversed except one trailing `\n`, which stays last.
fn reversed(message: &[u8]) -> Vec<u8> {
    let (body, newline): (&[u8], &[u8]) = match message.strip_suffix(b"\n") {
        Some(body) => (body, b"\n"),
        None => (message, b""),
    };
    let mut reply: Vec<u8> = match std::str::from_utf8(body) {
        Ok(text) => text.chars().rev().collect::<String>().into_bytes(),
        Err(_) => body.iter().rev().copied().collect(),
    };
    reply.extend_from_slice(newline);
    reply
}

/// What the server does with a reply the client is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendModel {
    /// A blocking `send()` waits for the client, and the whole server with
    /// it (stages 6 and 7: Experiment 1).
    Blocks,
    /// Non-blocking sockets: what cannot be sent yet is kept for later
    /// (from stage 8 on).
    Buffers,
}

/// One stage: a row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// The course's stage number.
    pub number: u8,
    /// The Cargo package (and binary) name, such as `stage07`.
    pub crate_name: &'static str,
    /// The course's title of the stage.
    pub title: &'static str,
    /// What a right server replies.
    pub protocol: Protocol,
    /// What happens to a reply the client does not read.
    pub send_model: SendModel,
    /// True if one idle client makes the server spin at full CPU (stage 8's
    /// level-triggered `EPOLLOUT`).
    pub spins_when_idle: bool,
    /// True if a client that sends without reading makes the server's
    /// memory grow without bound (stages 8 and 9 queue every reply).
    pub unbounded_memory: bool,
    /// True if SIGINT and SIGTERM shut the server down cleanly (from stage
    /// 7); stage 6 has no handler, so the signal simply ends it.
    pub graceful_shutdown: bool,
    /// True if the first port forwards its clients to an upstream server
    /// (`--upstream HOST:PORT`) instead of answering them itself: a reverse
    /// proxy, from stage 11. The checks give it an upstream that writes
    /// back, so every port still answers as [`Stage::protocol`] says.
    pub forwards_first_port: bool,
    /// True if the second and third ports serve files (from stage 12): the
    /// second sends a sample file to each client, the third refuses a file
    /// outside the `public` folder and closes without a byte. Neither
    /// answers what a client sends, so the write-back checks leave them
    /// out.
    pub serves_files: bool,
    /// True if every client gets a session between it and what serves it
    /// (from stage 13). Then the third port no longer refuses a file: it
    /// and the fourth have nothing behind their sessions, and neither
    /// answers nor closes a client (see `checks::session`).
    pub sessions: bool,
    /// The files under `src/` that this stage's lesson adds or changes,
    /// compared with the stage before; every other file is a copy. (Empty
    /// for the first stage here, which has no stage before it.)
    pub lesson: &'static [&'static str],
}

/// Every stage in the workspace, in order.
pub const STAGES: &[Stage] = &[
    Stage {
        number: 6,
        crate_name: "stage06",
        title: "listener and connection modules",
        protocol: Protocol::Reverse,
        send_model: SendModel::Blocks,
        spins_when_idle: false,
        unbounded_memory: false,
        graceful_shutdown: false,
        forwards_first_port: false,
        serves_files: false,
        sessions: false,
        lesson: &[],
    },
    Stage {
        number: 7,
        crate_name: "stage07",
        title: "core and loop modules",
        protocol: Protocol::Reverse,
        send_model: SendModel::Blocks,
        spins_when_idle: false,
        unbounded_memory: false,
        graceful_shutdown: true,
        forwards_first_port: false,
        serves_files: false,
        sessions: false,
        lesson: &[
            "main.rs",
            "xps.rs",
            "shutdown.rs",
            "core/mod.rs",
            "core/xps_core.rs",
            "core/xps_loop.rs",
            "core/xps_slots.rs",
            "network/xps_listener.rs",
            "network/xps_connection.rs",
        ],
    },
    Stage {
        number: 8,
        crate_name: "stage08",
        title: "non-blocking sockets",
        protocol: Protocol::Reverse,
        send_model: SendModel::Buffers,
        spins_when_idle: true,
        unbounded_memory: true,
        graceful_shutdown: true,
        forwards_first_port: false,
        serves_files: false,
        sessions: false,
        lesson: &[
            "main.rs",
            "xps.rs",
            "shutdown.rs",
            "core/xps_loop.rs",
            "network/xps_listener.rs",
            "network/xps_connection.rs",
            "utils/mod.rs",
            "utils/xps_utils.rs",
            "utils/xps_buffer.rs",
        ],
    },
    Stage {
        number: 9,
        crate_name: "stage09",
        title: "edge-triggered epoll",
        protocol: Protocol::Reverse,
        send_model: SendModel::Buffers,
        spins_when_idle: false,
        unbounded_memory: true,
        graceful_shutdown: true,
        forwards_first_port: false,
        serves_files: false,
        sessions: false,
        lesson: &[
            "main.rs",
            "core/xps_loop.rs",
            "network/xps_listener.rs",
            "network/xps_connection.rs",
        ],
    },
    Stage {
        number: 10,
        crate_name: "stage10",
        title: "pipes",
        protocol: Protocol::WriteBack,
        send_model: SendModel::Buffers,
        spins_when_idle: false,
        unbounded_memory: false,
        graceful_shutdown: true,
        forwards_first_port: false,
        serves_files: false,
        sessions: false,
        lesson: &[
            "main.rs",
            "xps.rs",
            "core/mod.rs",
            "core/xps_core.rs",
            "core/xps_loop.rs",
            "core/xps_pipe.rs",
            "network/xps_listener.rs",
            "network/xps_connection.rs",
            "utils/xps_buffer.rs",
            "utils/xps_utils.rs",
        ],
    },
    Stage {
        number: 11,
        crate_name: "stage11",
        title: "upstream module",
        protocol: Protocol::WriteBack,
        send_model: SendModel::Buffers,
        spins_when_idle: false,
        unbounded_memory: false,
        graceful_shutdown: true,
        forwards_first_port: true,
        serves_files: false,
        sessions: false,
        lesson: &[
            "main.rs",
            "cli.rs",
            "xps.rs",
            "core/xps_core.rs",
            "core/xps_loop.rs",
            "network/mod.rs",
            "network/xps_connection.rs",
            "network/xps_listener.rs",
            "network/xps_upstream.rs",
            "utils/xps_utils.rs",
        ],
    },
    Stage {
        number: 12,
        crate_name: "stage12",
        title: "file module",
        protocol: Protocol::WriteBack,
        send_model: SendModel::Buffers,
        spins_when_idle: false,
        unbounded_memory: false,
        graceful_shutdown: true,
        forwards_first_port: true,
        serves_files: true,
        sessions: false,
        lesson: &[
            "main.rs",
            "cli.rs",
            "xps.rs",
            "core/xps_core.rs",
            "core/xps_pipe.rs",
            "disk/mod.rs",
            "disk/xps_file.rs",
            "disk/xps_mime.rs",
            "network/xps_listener.rs",
            "utils/xps_utils.rs",
        ],
    },
    Stage {
        number: 13,
        crate_name: "stage13",
        title: "session module",
        protocol: Protocol::WriteBack,
        send_model: SendModel::Buffers,
        spins_when_idle: false,
        unbounded_memory: false,
        graceful_shutdown: true,
        forwards_first_port: true,
        serves_files: true,
        sessions: true,
        lesson: &[
            "main.rs",
            "cli.rs",
            "xps.rs",
            "core/mod.rs",
            "core/xps_core.rs",
            "core/xps_loop.rs",
            "core/xps_pipe.rs",
            "core/xps_session.rs",
            "network/xps_listener.rs",
            "utils/xps_buffer.rs",
        ],
    },
];

/// The row of stage `number`, if the workspace has that stage.
pub fn stage(number: u8) -> Option<&'static Stage> {
    STAGES.iter().find(|stage| stage.number == number)
}

/// The stage numbers as a person lists them: "6, 7 or 8".
pub fn numbers_in_words() -> String {
    let numbers: Vec<String> = STAGES.iter().map(|s| s.number.to_string()).collect();
    match numbers.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => numbers.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_keeps_the_trailing_newline_and_utf8() {
        let reverse = Protocol::Reverse;
        assert_eq!(reverse.reply(b"hello\n"), b"olleh\n");
        assert_eq!(reverse.reply(b"abc"), b"cba");
        assert_eq!(reverse.reply(b"\n"), b"\n");
        assert_eq!(reverse.reply(b""), b"");
        assert_eq!(reverse.reply("añb\n".as_bytes()), "bña\n".as_bytes());
        assert_eq!(reverse.reply(b"a\xff\n"), b"\xffa\n");
    }

    #[test]
    fn write_back_is_the_message_itself() {
        assert_eq!(Protocol::WriteBack.reply(b"hello\n"), b"hello\n");
        assert_eq!(Protocol::WriteBack.reply(b"a\xff"), b"a\xff");
    }

    #[test]
    fn protocols_are_named_both_ways() {
        for protocol in [Protocol::Reverse, Protocol::WriteBack] {
            assert_eq!(Protocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(Protocol::from_name("echo"), None);
    }

    #[test]
    fn the_table_is_in_order_and_names_its_crates() {
        for pair in STAGES.windows(2) {
            assert_eq!(pair[1].number, pair[0].number + 1, "stages must follow each other");
        }
        for stage in STAGES {
            assert_eq!(stage.crate_name, format!("stage{:02}", stage.number));
        }
        assert_eq!(stage(7).map(|s| s.crate_name), Some("stage07"));
        assert_eq!(stage(5), None);
    }
}
