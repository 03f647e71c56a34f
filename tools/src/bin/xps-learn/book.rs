//! `xps-learn book N`: a copy of the book for a learner writing stage N,
//! in which the listings of stage N's code show the functions the learner
//! writes as `todo!()`.
//!
//! The book takes its listings from the stage crates with mdBook's
//! `{{#include path:anchor}}`, so the section a hint of `check` names
//! shows the function finished: the answer beside the question. The copy
//! (by default `exercises/book/`, beside the learner's crates) is the book
//! with one change: every include of a file of stage N that holds a blank
//! reads instead a copy of that file with the stage's blanks replaced by
//! their `todo!()`, exactly as `xps-learn start N` writes them. The text,
//! the other stages' code, the recorded outputs and the diagrams are the
//! book's own. `mdbook serve exercises/book` shows it.
//!
//! ```text
//! exercises/book/
//!   book.toml            the book's, its title naming the stage
//!   src/                 the pages, their includes pointed at the right files
//!   code/stageNN/src/    stage N's code with its blanks as todo!()
//!   .xps-learn-book      marks the folder as this command's, to replace
//! ```

use crate::exercise::{Blank, blank_out};
use crate::source::fn_body;
use crate::start::{Layout, list_files, write};
use shared::stages::Stage;
use std::fs;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// The file that marks a folder as made by `xps-learn book`: only such a
/// folder (or an empty one) is replaced.
const MARKER: &str = ".xps-learn-book";

/// The mdBook directives that read a file: `{{#include}}`,
/// `{{#rustdoc_include}}` and `{{#playground}}`.
const FILE_DIRECTIVES: [&str; 3] = ["include", "rustdoc_include", "playground"];

/// One `{{#name argument}}` directive in a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive<'a> {
    /// Where it is in the page, braces included.
    pub span: Range<usize>,
    /// `include`, `rustdoc_include`, ...
    pub name: &'a str,
    /// The file, relative to the page's folder.
    pub path: &'a str,
    /// What follows the path's first `:`: an anchor's name, or line
    /// numbers (`10:20`, `:5`).
    pub selector: Option<&'a str>,
    /// Anything after the path (the properties of a `{{#playground}}`).
    pub rest: &'a str,
}

impl Directive<'_> {
    /// The anchor it names, if it names one rather than line numbers (as
    /// mdBook reads it: a first part that is not a number).
    pub fn anchor(&self) -> Option<&str> {
        let first = self.selector?.split(':').next().unwrap_or_default();
        (!first.is_empty() && first.parse::<usize>().is_err()).then_some(first)
    }
}

/// The directives of `page` that read a file, in order, as mdBook finds
/// them: `{{#name argument}}`, with no `}` inside; one written
/// `\{{#...}}` is escaped and left alone.
pub fn file_directives(page: &str) -> Vec<Directive<'_>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = page[from..].find("{{").map(|at| from + at) {
        from = at + 2;
        if page[..at].ends_with('\\') {
            continue;
        }
        let inner = page[at + 2..].trim_start();
        let Some(inner) = inner.strip_prefix('#') else { continue };
        let name_len = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        let Some(name_len) = name_len.filter(|&n| n > 0) else { continue };
        let (name, after) = inner.split_at(name_len);
        if !after.starts_with(char::is_whitespace) {
            continue;
        }
        let Some(end) = after.find('}') else { continue };
        if !after[end..].starts_with("}}") || !FILE_DIRECTIVES.contains(&name) {
            continue;
        }
        let argument = after[..end].trim();
        let (file, rest) = argument.split_once(char::is_whitespace).unwrap_or((argument, ""));
        let (path, selector) = match file.split_once(':') {
            Some((path, selector)) => (path, Some(selector)),
            None => (file, None),
        };
        let close = page.len() - after.len() + end + 2;
        found.push(Directive { span: at..close, name, path, selector, rest: rest.trim() });
        from = close;
    }
    found
}

/// The name after `marker` (`ANCHOR:` or `ANCHOR_END:`) in `line`, if the
/// line has one.
fn anchor_mark<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)?;
    let rest = line[at + marker.len()..].trim_start();
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
    let name = &rest[..end.unwrap_or(rest.len())];
    (!name.is_empty()).then_some(name)
}

/// The lines of `source` between `ANCHOR: name` and `ANCHOR_END: name`,
/// without any anchor lines, as mdBook includes them; `None` if the
/// anchor is not there.
pub fn anchored(source: &str, name: &str) -> Option<String> {
    let mut lines = source.lines();
    lines.by_ref().find(|line| anchor_mark(line, "ANCHOR:") == Some(name))?;
    let mut kept = Vec::new();
    for line in lines {
        if let Some(end) = anchor_mark(line, "ANCHOR_END:") {
            if end == name {
                break;
            }
            continue;
        }
        if anchor_mark(line, "ANCHOR:").is_none() {
            kept.push(line);
        }
    }
    Some(kept.join("\n"))
}

/// `path` without `.` and `..`, as far as the text of the path says.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The path from folder `from` to `to`, both absolute and normalised.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for component in &to[common..] {
        out.push(component);
    }
    out
}

/// The path as mdBook reads it in a directive: `/` between the parts.
fn slashed(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// The note a page with hidden bodies starts with, under its title.
pub fn note(stage: &Stage) -> String {
    format!(
        "> **Your stage-{n} copy of the book**, made by `xps-learn book {n}`: the listings \
         of stage {n}'s code show the functions you write as `todo!()`, as `xps-learn start \
         {n}` left them. The finished code is in `{name}/src/` and in the book itself.\n",
        n = stage.number,
        name = stage.crate_name
    )
}

/// What a rewritten page holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageReport {
    /// Includes that now read the copy of stage N's code.
    pub redirected: usize,
    /// Of those, the listings that show a `todo!()`.
    pub with_todo: usize,
    /// Anchors that were inside a blank body, so are gone from the copy:
    /// the include is replaced by a comment naming the function.
    pub hidden_anchors: Vec<String>,
}

/// Where things are, for rewriting one page.
struct Places<'a> {
    /// The book's `src/`.
    book_src: PathBuf,
    /// The copy's `src/`.
    copy_src: PathBuf,
    /// Stage N's `src/`.
    stage_src: PathBuf,
    /// The copy of stage N's `src/`, blanks as `todo!()`.
    code_src: PathBuf,
    stage: &'a Stage,
    blanks: &'a [&'a Blank],
}

impl Places<'_> {
    /// `text`, the page `page` (relative to `src/`), with its includes
    /// pointed at the files the copy must read, and the note under its
    /// title if a listing now shows a `todo!()`.
    fn rewrite(&self, page: &str, text: &str) -> Result<(String, PageReport), String> {
        let page_dir = normalise(&self.book_src.join(page)).parent().map(Path::to_path_buf);
        let page_dir = page_dir.unwrap_or_else(|| self.book_src.clone());
        let copy_dir = self.copy_src.join(relative(&self.book_src, &page_dir));
        let mut report = PageReport::default();
        let mut out = String::new();
        let mut last = 0;
        for directive in file_directives(text) {
            out.push_str(&text[last..directive.span.start]);
            last = directive.span.end;
            let target = normalise(&page_dir.join(directive.path));
            let replacement = if target.starts_with(&self.book_src) {
                // Copied to the same place: the path is right as it is.
                text[directive.span.clone()].to_string()
            } else if let Some(file) = self.file_with_blanks(&target) {
                self.redirect(page, &directive, &file, &copy_dir, &mut report)?
            } else {
                let path = slashed(&relative(&copy_dir, &target));
                with_path(&directive, &path)
            };
            out.push_str(&replacement);
        }
        out.push_str(&text[last..]);
        if report.with_todo > 0 || !report.hidden_anchors.is_empty() {
            out = with_note(&out, &note(self.stage));
        }
        Ok((out, report))
    }

    /// The file (under `src/`, with `/`) if `target` is a file of stage
    /// N's code that holds a blank.
    fn file_with_blanks(&self, target: &Path) -> Option<String> {
        let file = slashed(target.strip_prefix(&self.stage_src).ok()?);
        self.blanks.iter().any(|blank| blank.file == file).then_some(file)
    }

    /// The directive that reads `file` from the copy of stage N's code,
    /// or a comment in its place if its anchor was inside a blank body.
    fn redirect(
        &self,
        page: &str,
        directive: &Directive<'_>,
        file: &str,
        copy_dir: &Path,
        report: &mut PageReport,
    ) -> Result<String, String> {
        if directive.selector.is_some() && directive.anchor().is_none() {
            return Err(format!(
                "book/src/{page}: {} takes lines by number from {file}, which holds functions \
                 the exercise leaves blank: line numbers cannot follow the blanks, so name an \
                 anchor instead (// ANCHOR: name ... // ANCHOR_END: name)",
                directive.path
            ));
        }
        let copy = self.code_src.join(file);
        let blanked =
            fs::read_to_string(&copy).map_err(|err| format!("{}: {err}", copy.display()))?;
        let listing = match directive.anchor() {
            Some(anchor) => match anchored(&blanked, anchor) {
                Some(listing) => listing,
                None => {
                    let original = self.stage_src.join(file);
                    let source = fs::read_to_string(&original)
                        .map_err(|err| format!("{}: {err}", original.display()))?;
                    let function = self.blank_around(&source, file, anchor).ok_or_else(|| {
                        format!("book/src/{page}: no anchor {anchor} in {}", original.display())
                    })?;
                    report.hidden_anchors.push(format!("{file}:{anchor}"));
                    return Ok(format!(
                        "// ... hidden here: this part of {function}, which you write"
                    ));
                }
            },
            None => blanked,
        };
        report.redirected += 1;
        if listing.contains("todo!(") {
            report.with_todo += 1;
        }
        Ok(with_path(directive, &slashed(&relative(copy_dir, &copy))))
    }

    /// The blank of `file` whose body holds the line `ANCHOR: anchor` in
    /// `source`, the stage's own code.
    fn blank_around(&self, source: &str, file: &str, anchor: &str) -> Option<String> {
        let mut offset = 0;
        let mut at = None;
        for line in source.split_inclusive('\n') {
            if anchor_mark(line, "ANCHOR:") == Some(anchor) {
                at = Some(offset);
                break;
            }
            offset += line.len();
        }
        let at = at?;
        self.blanks
            .iter()
            .filter(|blank| blank.file == file)
            .find(|blank| fn_body(source, &blank.function).is_some_and(|body| body.contains(&at)))
            .map(|blank| blank.function.clone())
    }
}

/// `directive` as written, reading `path` instead.
fn with_path(directive: &Directive<'_>, path: &str) -> String {
    let mut out = format!("{{{{#{} {path}", directive.name);
    if let Some(selector) = directive.selector {
        out.push(':');
        out.push_str(selector);
    }
    if !directive.rest.is_empty() {
        out.push(' ');
        out.push_str(directive.rest);
    }
    out.push_str("}}");
    out
}

/// `page` with `note` as a paragraph under its first `# ` title (or at the
/// top if it has none).
fn with_note(page: &str, note: &str) -> String {
    let mut offset = 0;
    for line in page.split_inclusive('\n') {
        offset += line.len();
        if line.starts_with("# ") {
            return format!("{}\n{note}{}", &page[..offset], &page[offset..]);
        }
    }
    format!("{note}\n{page}")
}

/// What `write_book` wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// The pages whose listings now show a `todo!()`, or hide an anchor,
    /// relative to `src/`, in order.
    pub pages: Vec<String>,
    /// Every page's report, by page.
    pub reports: Vec<(String, PageReport)>,
}

/// Writes into `dest` the book with stage N's `blanks` as `todo!()` in
/// every listing of their files (see the module's doc). `dest` must be
/// absent, empty, or a copy this function wrote before.
pub fn write_book(
    layout: &Layout,
    stage: &Stage,
    blanks: &[&Blank],
    dest: &Path,
) -> Result<Written, String> {
    let dest = if dest.is_absolute() {
        normalise(dest)
    } else {
        let here = std::env::current_dir().map_err(|err| format!("current folder: {err}"))?;
        normalise(&here.join(dest))
    };
    prepare(&dest)?;
    let book = layout.root.join("book");
    let places = Places {
        book_src: book.join("src"),
        copy_src: dest.join("src"),
        stage_src: layout.stage_dir(stage).join("src"),
        code_src: dest.join("code").join(stage.crate_name).join("src"),
        stage,
        blanks,
    };

    let mut files = Vec::new();
    list_files(&places.stage_src, &places.stage_src, &mut files)?;
    for file in &files {
        let from = places.stage_src.join(file);
        let text = fs::read_to_string(&from).map_err(|err| format!("{}: {err}", from.display()))?;
        let text = if file.ends_with(".rs") { blank_out(&text, file, blanks)? } else { text };
        write(&places.code_src.join(file), &text)?;
    }

    let mut written = Written::default();
    let mut pages = Vec::new();
    list_files(&places.book_src, &places.book_src, &mut pages)?;
    for page in pages {
        let from = places.book_src.join(&page);
        let to = places.copy_src.join(&page);
        if !page.ends_with(".md") {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
            }
            fs::copy(&from, &to).map_err(|err| format!("{}: {err}", to.display()))?;
            continue;
        }
        let text = fs::read_to_string(&from).map_err(|err| format!("{}: {err}", from.display()))?;
        let (text, report) = places.rewrite(&page, &text)?;
        write(&to, &text)?;
        if report.with_todo > 0 || !report.hidden_anchors.is_empty() {
            written.pages.push(page.clone());
        }
        written.reports.push((page, report));
    }

    let toml_path = book.join("book.toml");
    let toml =
        fs::read_to_string(&toml_path).map_err(|err| format!("{}: {err}", toml_path.display()))?;
    write(&dest.join("book.toml"), &retitled(&toml, stage))?;
    write(
        &dest.join(MARKER),
        "Made by `xps-learn book`, which replaces this folder when run again.\n",
    )?;
    Ok(written)
}

/// The book's `book.toml` with its title saying whose copy it is.
fn retitled(toml: &str, stage: &Stage) -> String {
    toml.lines()
        .map(|line| match line.trim_start().strip_prefix("title") {
            Some(rest) if rest.trim_start().starts_with('=') => {
                let title = rest.trim_start()[1..].trim().trim_matches('"');
                format!(
                    "title = \"{title} (your stage {}: its functions as todo!())\"",
                    stage.number
                )
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Makes room for a copy in `dest`: nothing there, an empty folder, or a
/// copy made before (its `src/` and `code/` are removed; mdBook's output
/// stays, and is rebuilt).
fn prepare(dest: &Path) -> Result<(), String> {
    if !dest.exists() {
        return Ok(());
    }
    let mut entries = fs::read_dir(dest).map_err(|err| format!("{}: {err}", dest.display()))?;
    if entries.next().is_some() && !dest.join(MARKER).is_file() {
        return Err(format!(
            "{} is not empty and was not made by `xps-learn book`: choose another --out, or \
             remove it",
            dest.display()
        ));
    }
    for part in ["src", "code"] {
        let path = dest.join(part);
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        }
    }
    Ok(())
}

/// `xps-learn book N [--out DIR]`: writes the copy (by default
/// `exercises/book/`) and says how to read it.
pub fn run(layout: &Layout, stage: &Stage, out: Option<&Path>) -> Result<bool, String> {
    let blanks = crate::exercise::load(&layout.stage_dir(stage))?;
    let all: Vec<&Blank> = blanks.iter().collect();
    let dest = out.map_or_else(|| layout.exercises.join("book"), Path::to_path_buf);
    let written = write_book(layout, stage, &all, &dest)?;
    let shown = dest.strip_prefix(&layout.root).unwrap_or(&dest).display().to_string();
    let listings: usize = written.reports.iter().map(|(_, report)| report.with_todo).sum();
    println!(
        "Wrote {shown}: the book, with stage {}'s {} functions as todo!() in {listings} listings \
         of these pages:",
        stage.number,
        blanks.len()
    );
    for page in &written.pages {
        println!("  {page}");
    }
    println!(
        "\nRead it in your browser (install mdbook once: cargo install mdbook --version 0.5.4 \
         --locked):"
    );
    println!("  mdbook serve {shown} --open");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::scratch::Scratch;
    use shared::stages::{self, STAGES};
    use std::collections::{HashMap, HashSet};

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// What an include shows, read the way mdBook reads it: the file
    /// relative to the page's folder, then the anchor's lines.
    fn resolve(page_dir: &Path, directive: &Directive<'_>) -> String {
        let file = page_dir.join(directive.path);
        let text = read(&file);
        match directive.anchor() {
            Some(anchor) => anchored(&text, anchor)
                .unwrap_or_else(|| panic!("no anchor {anchor} in {}", file.display())),
            None => text,
        }
    }

    /// `page` with its includes taken out: the text around them.
    fn around_includes(page: &str) -> String {
        let mut out = String::new();
        let mut last = 0;
        for directive in file_directives(page) {
            out.push_str(&page[last..directive.span.start]);
            out.push_str("{{..}}");
            last = directive.span.end;
        }
        out.push_str(&page[last..]);
        out
    }

    /// The lines of each blank's finished body that are nowhere in the
    /// blanked file: a listing that shows one shows the answer.
    fn secret_lines(original: &str, blanked: &str, file: &str, blanks: &[&Blank]) -> Vec<String> {
        let kept: HashSet<&str> = blanked.lines().map(str::trim).collect();
        let mut secret = Vec::new();
        for blank in blanks.iter().filter(|blank| blank.file == file) {
            let body = fn_body(original, &blank.function).expect("the blank's body");
            for line in original[body].lines().map(str::trim) {
                if line.len() >= 4 && !kept.contains(line) {
                    secret.push(line.to_string());
                }
            }
        }
        secret
    }

    /// For every stage: the copy's code is the stage's with each blank's
    /// body (and nothing else) replaced by its todo!(); every page is the
    /// book's page, around its includes; every include resolves; the
    /// listings of stage N's files show no line of a finished body, and a
    /// todo!() wherever the book showed one; every other listing and file
    /// is the book's.
    #[test]
    fn every_stage_copy_hides_the_blank_bodies_and_keeps_the_rest() {
        let layout = Layout::of_workspace();
        let book_src = layout.root.join("book/src");
        for stage in STAGES {
            let blanks = crate::exercise::load(&layout.stage_dir(stage)).expect("the stage's list");
            let blanks: Vec<&Blank> = blanks.iter().collect();
            let scratch = Scratch::new(&format!("learn-book-{}", stage.crate_name));
            let dest = scratch.join("book");
            let written = write_book(&layout, stage, &blanks, &dest)
                .unwrap_or_else(|err| panic!("stage {}: {err}", stage.number));
            let stage_src = layout.stage_dir(stage).join("src");
            let code_src = dest.join("code").join(stage.crate_name).join("src");

            // The code: put each finished body back, and it is the stage's.
            let mut secrets = HashMap::new();
            let files: HashSet<&str> = blanks.iter().map(|blank| blank.file.as_str()).collect();
            for file in &files {
                let original = read(&stage_src.join(file));
                let blanked = read(&code_src.join(file));
                let mut restored = blanked.clone();
                for blank in blanks.iter().filter(|blank| blank.file == *file) {
                    let body = fn_body(&restored, &blank.function).expect("a body in the copy");
                    assert!(
                        restored[body.clone()].contains(&blank.todo_call()),
                        "{file}: {} is not blank in the copy",
                        blank.function
                    );
                    let finished = fn_body(&original, &blank.function).expect("a finished body");
                    restored.replace_range(body, &original[finished]);
                }
                assert!(restored == original, "{file}: the copy differs beyond the blank bodies");
                secrets.insert(*file, secret_lines(&original, &blanked, file, &blanks));
            }

            // The pages.
            let mut shown_before = 0;
            let mut pages = Vec::new();
            list_files(&book_src, &book_src, &mut pages).expect("the book's files");
            for page in &pages {
                let (original_path, copy_path) = (book_src.join(page), dest.join("src").join(page));
                if !page.ends_with(".md") {
                    assert!(fs::read(&original_path).ok() == fs::read(&copy_path).ok(), "{page}");
                    continue;
                }
                let original = read(&original_path);
                let copy = read(&copy_path);
                let without_note = copy.replacen(&format!("\n{}", note(stage)), "", 1);
                assert_eq!(
                    around_includes(&without_note),
                    around_includes(&original),
                    "{page}: the text differs"
                );
                let original_dir = original_path.parent().expect("a folder");
                let copy_dir = copy_path.parent().expect("a folder");
                let pairs = file_directives(&original).into_iter().zip(file_directives(&copy));
                let mut todo_shown = false;
                for (before, after) in pairs {
                    assert_eq!((before.name, before.anchor()), (after.name, after.anchor()));
                    let (shown, now) = (resolve(original_dir, &before), resolve(copy_dir, &after));
                    let target = normalise(&original_dir.join(before.path));
                    let file = target.strip_prefix(&stage_src).map(slashed).unwrap_or_default();
                    let Some(secrets) = secrets.get(file.as_str()) else {
                        assert_eq!(shown, now, "{page}: {} changed", before.path);
                        continue;
                    };
                    let lines: HashSet<&str> = now.lines().map(str::trim).collect();
                    if let Some(line) = secrets.iter().find(|line| lines.contains(line.as_str())) {
                        panic!("{page}: {} still shows {line:?}", after.path);
                    }
                    if secrets.iter().any(|line| shown.lines().any(|l| l.trim() == line)) {
                        shown_before += 1;
                        assert!(now.contains("todo!("), "{page}: {} shows no todo!()", after.path);
                        todo_shown = true;
                    }
                }
                assert_eq!(written.pages.contains(page), todo_shown, "{page}: the note");
                assert_eq!(copy != without_note, todo_shown, "{page}: the note");
            }
            // Not a test that cannot fail: the book shows finished bodies.
            assert!(shown_before > 0, "stage {}: no listing showed a blank body", stage.number);
            assert!(read(&dest.join("book.toml")).contains(&format!("stage {}", stage.number)));
        }
    }

    /// A workspace of one page and one file, to try what the book does not
    /// do yet: an anchor inside a blank body, line numbers, an escaped
    /// include, a folder that is not a copy.
    #[test]
    fn anchors_in_a_blank_body_are_hidden_and_line_numbers_refused() {
        let scratch = Scratch::new("learn-book-small");
        let root = scratch.join("workspace");
        let code = "\
// ANCHOR: thing
struct Thing;
// ANCHOR_END: thing

impl Thing {
    // ANCHOR: make
    fn make() -> Thing {
        // ANCHOR: inside
        let secret = Thing;
        // ANCHOR_END: inside
        secret
    }
    // ANCHOR_END: make
}
";
        let page = "\
# Things

```rust,ignore
{{#include ../../stage07/src/thing.rs:thing}}
{{#include ../../stage07/src/thing.rs:make}}
{{#include ../../stage07/src/thing.rs:inside}}
\\{{#include ../../stage07/src/thing.rs:make}}
```
";
        write(&root.join("stage07/src/thing.rs"), code).unwrap();
        write(&root.join("book/book.toml"), "[book]\ntitle = \"Things\"\n").unwrap();
        write(&root.join("book/src/SUMMARY.md"), "[Things](things.md)\n").unwrap();
        write(&root.join("book/src/things.md"), page).unwrap();
        let layout = Layout {
            exercises: root.join("exercises"),
            target: root.join("target"),
            root: root.clone(),
        };
        let stage = stages::stage(7).expect("stage 7");
        let blank = Blank {
            function: "Thing::make".to_string(),
            file: "thing.rs".to_string(),
            book: "things.md".to_string(),
            hint: "make a thing".to_string(),
            tests: Vec::new(),
        };
        let dest = layout.exercises.join("book");
        let written = write_book(&layout, stage, &[&blank], &dest).expect("a copy");
        assert_eq!(written.pages, vec!["things.md".to_string()]);
        let copy = read(&dest.join("src/things.md"));
        assert!(copy.starts_with(&format!("# Things\n\n{}", note(stage))), "{copy}");
        assert!(copy.contains("{{#include ../code/stage07/src/thing.rs:thing}}"), "{copy}");
        assert!(copy.contains("{{#include ../code/stage07/src/thing.rs:make}}"), "{copy}");
        assert!(copy.contains("// ... hidden here: this part of Thing::make, which you write"));
        assert!(copy.contains("\\{{#include ../../stage07/src/thing.rs:make}}"), "{copy}");
        let listing = anchored(&read(&dest.join("code/stage07/src/thing.rs")), "make").unwrap();
        assert!(listing.contains("todo!(\"Thing::make: make a thing\")"), "{listing}");
        assert!(!listing.contains("secret"), "{listing}");
        assert!(read(&dest.join("book.toml")).contains("title = \"Things (your stage 7"));

        // Again over its own copy: fine. Line numbers: refused.
        let numbered = page.replace("thing.rs:thing", "thing.rs:2:3");
        write(&root.join("book/src/things.md"), &numbered).unwrap();
        let err = write_book(&layout, stage, &[&blank], &dest).unwrap_err();
        assert!(err.contains("lines by number"), "{err}");
        // A folder that is not a copy is left alone.
        write(&root.join("book/src/things.md"), page).unwrap();
        let other = root.join("mine");
        write(&other.join("notes.txt"), "mine").unwrap();
        let err = write_book(&layout, stage, &[&blank], &other).unwrap_err();
        assert!(err.contains("not made by `xps-learn book`"), "{err}");
        assert_eq!(read(&other.join("notes.txt")), "mine");
    }

    #[test]
    fn directives_are_found_as_mdbook_finds_them() {
        let page = "a {{#include x.rs:run}} b \\{{#include y.rs}} {{#title T}}\n\
                    {{ #rustdoc_include  ../z.rs:3:5 }} {{#playground p.rs editable}} {{x}}";
        let found = file_directives(page);
        let summary: Vec<_> =
            found.iter().map(|d| (d.name, d.path, d.selector, d.anchor(), d.rest)).collect();
        assert_eq!(
            summary,
            vec![
                ("include", "x.rs", Some("run"), Some("run"), ""),
                ("rustdoc_include", "../z.rs", Some("3:5"), None, ""),
                ("playground", "p.rs", None, None, "editable"),
            ]
        );
        assert_eq!(&page[found[0].span.clone()], "{{#include x.rs:run}}");
        assert_eq!(with_path(&found[2], "q.rs"), "{{#playground q.rs editable}}");
    }

    #[test]
    fn anchors_and_paths() {
        let source =
            "a\n// ANCHOR: x\nb\n  // ANCHOR: y\nc\n  // ANCHOR_END: y\n// ANCHOR_END: x\n";
        assert_eq!(anchored(source, "x").as_deref(), Some("b\nc"));
        assert_eq!(anchored(source, "y").as_deref(), Some("c"));
        assert_eq!(anchored(source, "z"), None);
        assert_eq!(normalise(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(relative(Path::new("/w/x/book/src/s7"), Path::new("/w/s7/a.rs")), {
            PathBuf::from("../../../../s7/a.rs")
        });
        assert_eq!(relative(Path::new("/w"), Path::new("/w/a")), PathBuf::from("a"));
    }

    #[test]
    fn the_command_line_takes_book() {
        let parsed = crate::parse_args(["book", "7", "--out", "elsewhere"]);
        assert!(
            matches!(parsed, Ok(Some(crate::Command::Book { stage, out: Some(ref out) }))
                if stage.number == 7 && out == Path::new("elsewhere")),
            "{parsed:?}"
        );
        assert!(matches!(crate::parse_args(["book", "8"]), Ok(Some(crate::Command::Book { .. }))));
        assert!(crate::parse_args(["book"]).unwrap_err().contains("needs a stage"));
        assert!(crate::parse_args(["book", "7", "--out"]).is_err());
    }
}
