//! Finding a function's body in Rust source, without a parser.
//!
//! An exercise replaces the bodies of a stage's lesson functions with
//! `todo!()`. All that needs is where each body starts and ends: the `{`
//! after the function's signature and its matching `}`. Counting braces is
//! enough, as long as the braces inside comments, strings and character
//! literals are skipped, which the small lexer here does. (A full parser,
//! the `syn` crate, would cost a learner its build time for nothing more.)

use std::ops::Range;

/// What the lexer reports: the tokens that matter for finding items.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    /// A word: a keyword or a name.
    Word(&'a str),
    /// `{`
    Open,
    /// `}`
    Close,
    /// `;`
    Semicolon,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// The tokens of `source` with their byte offsets; comments, string,
/// byte-string, raw-string and character literals and lifetimes are
/// skipped, so a brace in them is never counted.
fn tokens(source: &str) -> Vec<(usize, Token<'_>)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = source[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'"' => i = skip_string(bytes, i + 1),
            b'\'' => i = skip_quote(source, i),
            b'{' => {
                out.push((i, Token::Open));
                i += 1;
            }
            b'}' => {
                out.push((i, Token::Close));
                i += 1;
            }
            b';' => {
                out.push((i, Token::Semicolon));
                i += 1;
            }
            b'<' => {
                out.push((i, Token::Less));
                i += 1;
            }
            b'>' => {
                out.push((i, Token::Greater));
                i += 1;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                let word = &source[start..i];
                // A prefix of a literal: b"..", r"..", r#".."#, br"..", c"..", b'.'.
                match (word, bytes.get(i)) {
                    ("b" | "c", Some(b'"')) => i = skip_string(bytes, i + 1),
                    ("r" | "br" | "cr", Some(b'"' | b'#')) => i = skip_raw_string(bytes, i),
                    ("b", Some(b'\'')) => i = skip_quote(source, i),
                    _ => out.push((start, Token::Word(word))),
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The index just past the `*/` that closes the comment opening at `i`
/// (comments nest in Rust).
fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// The index just past the `"` that ends a string whose contents start at
/// `i`.
fn skip_string(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index just past a raw string whose `#`s or `"` start at `i`.
fn skip_raw_string(bytes: &[u8], mut i: usize) -> usize {
    let hashes = bytes[i..].iter().take_while(|&&b| b == b'#').count();
    i += hashes + 1; // the hashes and the opening quote
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    while i < bytes.len() {
        if bytes[i..].starts_with(&closing) {
            return i + closing.len();
        }
        i += 1;
    }
    i
}

/// The index just past a character literal at `i` (`'x'`, `'\n'`,
/// `'\u{1F600}'`), or just past the quote of a lifetime or a label (`'a`).
fn skip_quote(source: &str, i: usize) -> usize {
    let rest = &source[i + 1..];
    if rest.starts_with('\\') {
        return rest.find('\'').map_or(source.len(), |n| {
            // `'\''`: the quote right after the backslash is the character.
            let n = if n == 1 { 2 + rest[2..].find('\'').unwrap_or(0) } else { n };
            i + 1 + n + 1
        });
    }
    let mut chars = rest.chars();
    match (chars.next(), chars.next()) {
        (Some(c), Some('\'')) => i + 1 + c.len_utf8() + 1,
        _ => i + 1,
    }
}

/// Where the body of a function is in `source`: the byte range from its
/// opening `{` to its closing `}` included.
///
/// `name` is `function` for a free function at the top of the file, or
/// `Type::method` for a function in an `impl Type` or `impl Trait for
/// Type` block at the top of the file. Functions inside other items (a
/// `mod tests`, another function) are not found.
pub fn fn_body(source: &str, name: &str) -> Option<Range<usize>> {
    let (owner, function) = match name.split_once("::") {
        Some((owner, function)) => (Some(owner), function),
        None => (None, name),
    };
    let tokens = tokens(source);
    let mut depth = 0usize;
    // The impl block we are in (at depth 1), if it is `owner`'s.
    let mut in_owner_impl = false;
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].1 {
            Token::Open => depth += 1,
            Token::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    in_owner_impl = false;
                }
            }
            Token::Word("impl") if depth == 0 => {
                let (self_type, open) = impl_header(&tokens, i + 1)?;
                in_owner_impl = owner == Some(self_type);
                depth += 1;
                i = open;
            }
            Token::Word("fn") => {
                let wanted_depth = usize::from(owner.is_some());
                let right_place = depth == wanted_depth && (owner.is_none() || in_owner_impl);
                if right_place && tokens.get(i + 1).map(|t| &t.1) == Some(&Token::Word(function)) {
                    return body_from(&tokens, i + 2);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads an impl header from token `from` on: the self type's name, and
/// the index of the `{` that opens the block.
///
/// The self type is the last name outside angle brackets before the `{`
/// (or before `where`): `Thing` in `impl<'a> Thing<'a>`, `Id` in
/// `impl fmt::Debug for Id<T>`, `Foo` in `impl crate::x::Foo`.
fn impl_header<'a>(tokens: &[(usize, Token<'a>)], from: usize) -> Option<(&'a str, usize)> {
    let mut angle = 0usize;
    let mut self_type = None;
    let mut in_where = false;
    for (index, (_, token)) in tokens.iter().enumerate().skip(from) {
        match *token {
            Token::Less => angle += 1,
            Token::Greater => angle = angle.saturating_sub(1),
            Token::Open if angle == 0 => return self_type.map(|name| (name, index)),
            Token::Word("where") => in_where = true,
            Token::Word("for" | "dyn" | "unsafe" | "const" | "mut") => {}
            Token::Word(word) if angle == 0 && !in_where => self_type = Some(word),
            _ => {}
        }
    }
    None
}

/// The body range of a function whose name token is just before `from`:
/// from the first `{` on (a `;` first means a declaration, with no body)
/// to its matching `}`.
fn body_from(tokens: &[(usize, Token<'_>)], from: usize) -> Option<Range<usize>> {
    let open =
        tokens[from..].iter().position(|(_, t)| matches!(t, Token::Open | Token::Semicolon))?;
    let open = from + open;
    if tokens[open].1 == Token::Semicolon {
        return None;
    }
    let mut depth = 0usize;
    for (offset, token) in &tokens[open..] {
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(tokens[open].0..offset + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The indentation of the line that `offset` is on.
pub fn indent_at(source: &str, offset: usize) -> &str {
    let line_start = source[..offset].rfind('\n').map_or(0, |n| n + 1);
    let line = &source[line_start..];
    &line[..line.len() - line.trim_start().len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r##"
//! A file { with braces in docs }
use std::io;

/// Not this one: fn create() { in a comment
fn create() -> io::Result<u8> {
    let s = "a } brace";
    let c = '}';
    let r = r#"raw } "quote""#;
    if true { Ok(1) } else { Ok(2) }
}

impl<'a> Thing<'a> {
    pub fn create(x: &'a str) -> Thing<'a> {
        Thing { x }
    }

    fn other(&self) {}
}

impl Default for Widget {
    fn default() -> Widget {
        Widget { b: b'{' }
    }
}

impl<T> From<T> for Slots<T> where T: Copy {
    fn from(_: T) -> Slots<T> { Slots::new() }
}

#[cfg(test)]
mod tests {
    fn create() {}
}
"##;

    fn body<'a>(name: &str) -> &'a str {
        let range = fn_body(SOURCE, name).unwrap_or_else(|| panic!("{name} not found"));
        &SOURCE[range]
    }

    #[test]
    fn finds_a_free_function_past_braces_in_strings_chars_and_comments() {
        let found = body("create");
        assert!(found.starts_with("{\n    let s"), "{found}");
        assert!(found.ends_with("else { Ok(2) }\n}"), "{found}");
    }

    #[test]
    fn finds_methods_by_their_type() {
        assert_eq!(body("Thing::create"), "{\n        Thing { x }\n    }");
        assert_eq!(body("Thing::other"), "{}");
        assert_eq!(body("Widget::default"), "{\n        Widget { b: b'{' }\n    }");
        assert_eq!(body("Slots::from"), "{ Slots::new() }");
    }

    #[test]
    fn unknown_or_nested_functions_are_not_found() {
        assert_eq!(fn_body(SOURCE, "missing"), None);
        assert_eq!(fn_body(SOURCE, "Thing::missing"), None);
        assert_eq!(fn_body(SOURCE, "Other::create"), None);
        assert_eq!(fn_body(SOURCE, "tests::create"), None);
    }

    #[test]
    fn quotes_lifetimes_and_escapes() {
        let source = "fn a<'x>(c: char) -> bool { c == '\\'' || c == '\\u{7d}' || c == '}' }";
        let open = source.find('{').unwrap();
        assert_eq!(fn_body(source, "a").map(|r| &source[r]), Some(&source[open..]));
    }

    #[test]
    fn indentation_of_a_line() {
        let source = "a\n    fn b() {}\n";
        assert_eq!(indent_at(source, source.find("fn").unwrap()), "    ");
    }
}
