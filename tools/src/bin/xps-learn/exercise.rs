//! A stage's exercise list, `stageNN/exercise.txt`: which functions
//! `xps-learn start` leaves blank, with a hint and the book section for
//! each, in the order the book teaches them.
//!
//! ```text
//! fn:   XpsLoop::create
//! file: core/xps_loop.rs
//! book: stage07/loop.md#creating-the-loop
//! hint: make the epoll instance (epoll_create1) and an empty list of events
//! tests: xps_loop_create_makes_an_epoll_fd
//! ```
//!
//! One paragraph per function, blank lines between them, `#` starts a
//! comment line. `tests` is optional: the tests (unit or integration test
//! functions, or shared checks by name) that are about this function, so
//! that when one fails `check` sends the learner here, even when no
//! `todo!()` was hit. The list is data beside the stage, not markers in
//! the code: the code learners read stays as it is.
//!
//! Beside it, `mistakes.txt` lists plausible wrong versions of the same
//! functions ([`crate::mistake::Mistake`]), which `xps-learn verify` requires the
//! milestones to catch.

use crate::source::{fn_body, indent_at};
use std::fmt::Write as _;
use std::path::Path;

/// The name of the list in each stage's folder.
pub const LIST_FILE: &str = "exercise.txt";

/// One function to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blank {
    /// `function`, or `Type::method`.
    pub function: String,
    /// The file under `src/` that holds it.
    pub file: String,
    /// The book page, and the heading's anchor, that explains it:
    /// `stage07/loop.md#creating-the-loop`.
    pub book: String,
    /// What to do, in one line.
    pub hint: String,
    /// The tests that are about this function (see the module's doc).
    pub tests: Vec<String>,
}

impl Blank {
    /// The `todo!()` that replaces the body: it names the function, so a
    /// panic in a test or in the server says which blank it hit.
    pub fn todo_call(&self) -> String {
        // todo!() takes a format string: braces must be doubled.
        let message = format!("{}: {}", self.function, self.hint)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('{', "{{")
            .replace('}', "}}");
        format!("todo!(\"{message}\")")
    }

    /// What a panic at this blank prints after `not yet implemented: `.
    pub fn panic_text(&self) -> String {
        format!("{}: {}", self.function, self.hint)
    }

    /// True if `test` (a test's name as cargo prints it, a module path
    /// included, or a check's name) is one of this function's tests.
    pub fn claims(&self, test: &str) -> bool {
        let name = test.rsplit("::").next().unwrap_or(test);
        self.tests.iter().any(|claimed| claimed == name)
    }
}

/// Reads and checks the list of the stage in `stage_dir`: every paragraph
/// complete, every function found in its file, no function twice.
pub fn load(stage_dir: &Path) -> Result<Vec<Blank>, String> {
    let path = stage_dir.join(LIST_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let blanks = parse(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    for blank in &blanks {
        let file = stage_dir.join("src").join(&blank.file);
        let source =
            std::fs::read_to_string(&file).map_err(|err| format!("{}: {err}", file.display()))?;
        if fn_body(&source, &blank.function).is_none() {
            return Err(format!(
                "{}: no function {} with a body in src/{}",
                path.display(),
                blank.function,
                blank.file
            ));
        }
    }
    Ok(blanks)
}

/// Parses the text of a list (see the module's doc).
pub fn parse(text: &str) -> Result<Vec<Blank>, String> {
    let mut blanks = Vec::new();
    for (first_line, fields) in paragraphs(text, ["fn", "file", "book", "hint", "tests"])? {
        let [Some(function), Some(file), Some(book), Some(hint), tests] = fields else {
            return Err(format!("line {first_line}: a paragraph needs fn, file, book and hint"));
        };
        if blanks.iter().any(|b: &Blank| b.function == function && b.file == file) {
            return Err(format!("line {first_line}: {function} is listed twice"));
        }
        let tests = tests
            .map(|list| {
                list.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()
            })
            .unwrap_or_default();
        blanks.push(Blank { function, file, book, hint, tests });
    }
    Ok(blanks)
}

/// One paragraph of a list: the number of its first line, and its value
/// for each key asked for.
pub type Paragraph<const N: usize> = (usize, [Option<String>; N]);

/// The paragraphs of a list of `key: value` lines (blank lines between
/// paragraphs, `#` starts a comment line), each with the number of its
/// first line and its value for each of `keys`, in that order. Fails on a
/// line that is not `key: value` or names a key not in `keys`.
pub fn paragraphs<const N: usize>(
    text: &str,
    keys: [&str; N],
) -> Result<Vec<Paragraph<N>>, String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with('#'))
        .map(|(n, line)| (n + 1, line.trim()))
        .collect();
    let mut out = Vec::new();
    for paragraph in lines.split(|(_, line)| line.is_empty()) {
        let Some(&(first_line, _)) = paragraph.first() else { continue };
        let mut fields: [Option<String>; N] = std::array::from_fn(|_| None);
        for &(n, line) in paragraph {
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("line {n}: expected `key: value`, got {line:?}"));
            };
            let Some(slot) = keys.iter().position(|k| *k == key.trim()) else {
                return Err(format!("line {n}: unknown key {:?}", key.trim()));
            };
            fields[slot] = Some(value.trim().to_string());
        }
        out.push((first_line, fields));
    }
    Ok(out)
}

/// `source` (the text of `file`) with the bodies of `blanks` in that file
/// replaced by their `todo!()`. Fails if one is not found.
pub fn blank_out(source: &str, file: &str, blanks: &[&Blank]) -> Result<String, String> {
    let mut spans = Vec::new();
    for blank in blanks.iter().filter(|blank| blank.file == file) {
        let body = fn_body(source, &blank.function)
            .ok_or_else(|| format!("no function {} in src/{file}", blank.function))?;
        spans.push((body, blank));
    }
    // From the end, so that earlier offsets stay right.
    spans.sort_by_key(|(body, _)| std::cmp::Reverse(body.start));
    let mut out = source.to_string();
    for (body, blank) in spans {
        let indent = indent_at(source, body.start);
        let mut replacement = String::from("{\n");
        let _ = writeln!(replacement, "{indent}    {}", blank.todo_call());
        let _ = write!(replacement, "{indent}}}");
        out.replace_range(body, &replacement);
    }
    Ok(out)
}

/// True if `source` still holds the `todo!()` of `blank`: not written yet.
pub fn is_blank(source: &str, blank: &Blank) -> bool {
    source.contains(&blank.todo_call())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
# A comment
fn:   Thing::make
file: thing.rs
book: stage07/loop.md#making-things
hint: build a {thing} with \"care\"

fn: helper
file: thing.rs
book: stage07/loop.md
hint: help
";

    const SOURCE: &str = "\
fn helper() -> u8 {
    1
}

impl Thing {
    pub fn make() -> Thing {
        Thing { n: helper() }
    }
}
";

    #[test]
    fn a_list_parses_in_order() {
        let blanks = parse(LIST).unwrap();
        assert_eq!(blanks.len(), 2);
        assert_eq!(blanks[0].function, "Thing::make");
        assert_eq!(blanks[0].book, "stage07/loop.md#making-things");
        assert_eq!(blanks[1].hint, "help");
    }

    #[test]
    fn bad_lists_say_where() {
        assert!(parse("fn: a\nfile: b\n").unwrap_err().contains("line 1"));
        assert!(parse("fn a\n").unwrap_err().contains("key: value"));
        assert!(
            parse("fn: a\nfile: b\nbook: c\nhint: d\ncolour: e\n").unwrap_err().contains("colour")
        );
        let twice = format!("{LIST}\n{LIST}");
        assert!(parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn blanks_become_todo_calls_that_compile_as_format_strings() {
        let blanks = parse(LIST).unwrap();
        let all: Vec<&Blank> = blanks.iter().collect();
        let out = blank_out(SOURCE, "thing.rs", &all).unwrap();
        assert_eq!(
            out,
            "\
fn helper() -> u8 {
    todo!(\"helper: help\")
}

impl Thing {
    pub fn make() -> Thing {
        todo!(\"Thing::make: build a {{thing}} with \\\"care\\\"\")
    }
}
"
        );
        assert!(is_blank(&out, &blanks[0]) && is_blank(&out, &blanks[1]));
        assert!(!is_blank(SOURCE, &blanks[0]));
        // Other files are left alone.
        assert_eq!(blank_out(SOURCE, "other.rs", &all).unwrap(), SOURCE);
    }
}
