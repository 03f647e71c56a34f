//! What a correct server replies, computed independently of any stage's
//! code, and the random messages of the official tester.

/// The reply to one chunk: everything reversed except one trailing `\n`,
/// which stays last. Valid UTF-8 is reversed by characters, anything else
/// by bytes.
pub fn expected_reply(message: &[u8]) -> Vec<u8> {
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

/// A small, seedable random generator (xorshift64*): enough for test data,
/// and no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// A message like the official tester's: 1 to `max_len` characters from
    /// `[A-Za-z0-9]`, then `\n`.
    pub fn tester_message(&mut self, max_len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let len = 1 + self.below(max_len);
        let mut message: Vec<u8> = (0..len).map(|_| ALPHABET[self.below(ALPHABET.len())]).collect();
        message.push(b'\n');
        message
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_keeps_trailing_newline() {
        assert_eq!(expected_reply(b"hello\n"), b"olleh\n");
        assert_eq!(expected_reply(b"abc"), b"cba");
        assert_eq!(expected_reply(b"\n"), b"\n");
        assert_eq!(expected_reply(b""), b"");
        assert_eq!(expected_reply("añb\n".as_bytes()), "bña\n".as_bytes());
        assert_eq!(expected_reply(b"a\xff\n"), b"\xffa\n");
    }

    #[test]
    fn tester_messages_have_the_right_shape() {
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let message = rng.tester_message(99);
            assert!((2..=100).contains(&message.len()));
            assert_eq!(message.last(), Some(&b'\n'));
            assert!(message[..message.len() - 1].iter().all(u8::is_ascii_alphanumeric));
        }
    }
}
