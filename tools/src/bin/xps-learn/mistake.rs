//! A stage's known mistakes, `stageNN/mistakes.txt`: plausible wrong
//! versions of the functions its exercise leaves blank, each with what a
//! learner would see. `xps-learn verify` puts each one in the stage's own
//! code and requires `check` to fail on it and send the learner to the
//! function it is in: a mistake that every milestone lets through would
//! let `check` tell a learner "done" for code that is wrong.
//!
//! ```text
//! mistake: clears what it offered, not what sendmsg() took
//! fn:      send_queued
//! file:    network/xps_connection.rs
//! symptom: a client that reads 1 s late gets about half of its 8 MiB back
//! find:    list.clear(sent)
//! replace: list.clear(slices[..n_slices].iter().map(|s| s.len()).sum())
//! ```
//!
//! `find` must occur exactly once in the body of `fn`; `\n` in `find` and
//! `replace` stands for a line break.

use crate::exercise::paragraphs;
use crate::source::fn_body;
use std::path::Path;

/// The name of the list in each stage's folder.
pub const MISTAKES_FILE: &str = "mistakes.txt";

/// One wrong version of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    /// What is wrong, in a few words.
    pub name: String,
    /// The function it is in, as in `exercise.txt`.
    pub function: String,
    /// The file under `src/` that holds it.
    pub file: String,
    /// What a learner would see when running it.
    pub symptom: String,
    /// The text of the right version that the mistake changes.
    pub find: String,
    /// What it becomes.
    pub replace: String,
}

impl Mistake {
    /// `source` (the text of the mistake's file) with the mistake made.
    /// Fails if the function is missing or `find` is not in its body
    /// exactly once.
    pub fn apply(&self, source: &str) -> Result<String, String> {
        let body = fn_body(source, &self.function)
            .ok_or_else(|| format!("no function {} in src/{}", self.function, self.file))?;
        let text = &source[body.clone()];
        let found: Vec<usize> = text.match_indices(&self.find).map(|(at, _)| at).collect();
        let [at] = found[..] else {
            return Err(format!(
                "mistake {:?}: {:?} is in the body of {} {} times, not once",
                self.name,
                self.find,
                self.function,
                found.len()
            ));
        };
        let start = body.start + at;
        let mut out = source.to_string();
        out.replace_range(start..start + self.find.len(), &self.replace);
        Ok(out)
    }
}

/// Reads the list of the stage in `stage_dir` (none is an empty list) and
/// checks that every mistake applies to the stage's code.
pub fn load(stage_dir: &Path) -> Result<Vec<Mistake>, String> {
    let path = stage_dir.join(MISTAKES_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Vec::new()) };
    let mistakes = parse(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    for mistake in &mistakes {
        let file = stage_dir.join("src").join(&mistake.file);
        let source =
            std::fs::read_to_string(&file).map_err(|err| format!("{}: {err}", file.display()))?;
        mistake.apply(&source).map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(mistakes)
}

/// Parses the text of a list (see the module's doc).
pub fn parse(text: &str) -> Result<Vec<Mistake>, String> {
    const KEYS: [&str; 6] = ["mistake", "fn", "file", "symptom", "find", "replace"];
    let mut mistakes = Vec::new();
    for (first_line, fields) in paragraphs(text, KEYS)? {
        let [Some(name), Some(function), Some(file), Some(symptom), Some(find), Some(replace)] =
            fields
        else {
            return Err(format!("line {first_line}: a mistake needs every one of {KEYS:?}"));
        };
        // Code is one line in the list: `\n` stands for a line break.
        let (find, replace) = (find.replace("\\n", "\n"), replace.replace("\\n", "\n"));
        if find.is_empty() || find == replace {
            return Err(format!("line {first_line}: `find` must be text that `replace` changes"));
        }
        mistakes.push(Mistake { name, function, file, symptom, find, replace });
    }
    Ok(mistakes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
# A comment
mistake: adds one too many
fn:      add
file:    maths.rs
symptom: 1 + 1 is 3
find:    a + b
replace: a + b + 1
";

    const SOURCE: &str = "fn add(a: u8, b: u8) -> u8 {\n    a + b\n}\n\nfn sub(a: u8, b: u8) -> u8 {\n    a - b\n}\n";

    #[test]
    fn a_mistake_changes_its_function_only() {
        let mistakes = parse(LIST).unwrap();
        assert_eq!(mistakes.len(), 1);
        let out = mistakes[0].apply(SOURCE).unwrap();
        assert!(out.contains("    a + b + 1\n}"), "{out}");
        assert!(out.contains("    a - b\n"), "{out}");
    }

    #[test]
    fn a_find_that_is_not_there_once_is_refused() {
        let mut mistake = parse(LIST).unwrap().remove(0);
        mistake.find = "a * b".to_string();
        assert!(mistake.apply(SOURCE).unwrap_err().contains("0 times"));
        mistake.find = " ".to_string();
        assert!(mistake.apply(SOURCE).unwrap_err().contains("times, not once"));
        mistake.function = "mul".to_string();
        assert!(mistake.apply(SOURCE).unwrap_err().contains("no function mul"));
    }

    #[test]
    fn bad_lists_say_where() {
        assert!(parse("mistake: x\nfn: a\n").unwrap_err().contains("line 1"));
        assert!(parse(&LIST.replace("symptom", "colour")).unwrap_err().contains("colour"));
        assert!(parse(&LIST.replace("a + b + 1", "a + b")).unwrap_err().contains("changes"));
    }

    #[test]
    fn line_breaks_are_written_as_backslash_n() {
        let list = LIST.replace("a + b + 1", "let c = a;\\n    c + b + 1");
        let out = parse(&list).unwrap()[0].apply(SOURCE).unwrap();
        assert!(out.contains("    let c = a;\n    c + b + 1\n"), "{out}");
    }
}
