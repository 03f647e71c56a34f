//! The book cannot drift from the code: mdbook 0.5 logs a missing include
//! file but still exits 0 (leaving the raw `{{#include}}` on the page), and
//! includes nothing at all for a missing anchor. So this test checks what
//! mdbook does not:
//!
//! * every `{{#include path:anchor}}` names a file that exists and an
//!   anchor that is in it and holds at least one line of code;
//! * every SUMMARY entry exists, and every chapter is in SUMMARY;
//! * every code fence says what it holds: `rust,ignore` or
//!   `rust,noplayground` around included Rust, `console` or `text` around
//!   recorded output, and no fence without a language (`mdbook test` would
//!   compile it as Rust);
//! * every picture a chapter shows exists.

use std::fs;
use std::path::{Path, PathBuf};

fn book_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src")
}

/// Every `.md` file under `dir`, as paths relative to `book/src`.
fn chapters(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            chapters(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "md")
            && let Ok(relative) = path.strip_prefix(book_src())
        {
            found.push(relative.to_path_buf());
        }
    }
}

fn all_chapters() -> Vec<PathBuf> {
    let mut found = Vec::new();
    chapters(&book_src(), &mut found);
    found.retain(|path| path != Path::new("SUMMARY.md"));
    found.sort();
    assert!(!found.is_empty(), "no chapters under book/src");
    found
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(end) = after.find(')') else { break };
        targets.push(after[..end].trim().to_string());
        rest = &after[end..];
    }
    targets
}

#[test]
fn summary_and_chapters_match() {
    let summary = read(&book_src().join("SUMMARY.md"));
    let mut listed = Vec::new();
    for target in link_targets(&summary) {
        assert!(target.ends_with(".md"), "SUMMARY entry {target} is not a chapter file");
        let path = book_src().join(&target);
        assert!(path.is_file(), "SUMMARY lists {target}, which does not exist");
        listed.push(PathBuf::from(target));
    }
    for chapter in all_chapters() {
        assert!(listed.contains(&chapter), "{} is not in SUMMARY.md", chapter.display());
    }
}

/// One `{{#include ...}}` found in a chapter.
#[derive(Debug)]
struct Include {
    chapter: PathBuf,
    line: usize,
    path: String,
    anchor: Option<String>,
}

/// Every include in `text`; panics on a form this book does not use.
fn includes(chapter: &Path, text: &str) -> Vec<Include> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("{{#") {
            let after = &rest[at + 3..];
            let end = after
                .find("}}")
                .unwrap_or_else(|| panic!("{}:{}: unclosed {{{{#", chapter.display(), index + 1));
            let directive = after[..end].trim();
            let argument = directive.strip_prefix("include ").unwrap_or_else(|| {
                panic!("{}:{}: only {{{{#include}}}} is used", chapter.display(), index + 1)
            });
            let (path, anchor) = match argument.trim().split_once(':') {
                Some((path, anchor)) => (path.to_string(), Some(anchor.to_string())),
                None => (argument.trim().to_string(), None),
            };
            if let Some(anchor) = &anchor {
                // Line numbers would silently drift when the code changes.
                assert!(
                    anchor.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !anchor.chars().all(|c| c.is_ascii_digit()),
                    "{}:{}: include by anchor name, not line numbers: {argument}",
                    chapter.display(),
                    index + 1
                );
            }
            found.push(Include { chapter: chapter.to_path_buf(), line: index + 1, path, anchor });
            rest = &after[end + 2..];
        }
    }
    found
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name`, without any
/// anchor lines, as mdbook includes them; `None` if the anchor is missing.
fn anchored(source: &str, name: &str) -> Option<String> {
    let is_marker = |line: &str, marker: &str| {
        line.trim_start()
            .strip_prefix("//")
            .map(str::trim)
            .and_then(|rest| rest.strip_prefix(marker))
            .is_some_and(|rest| rest.trim() == name)
    };
    let mut lines = source.lines();
    lines.by_ref().find(|line| is_marker(line, "ANCHOR:"))?;
    let mut body = String::new();
    for line in lines {
        if is_marker(line, "ANCHOR_END:") {
            return Some(body);
        }
        if !line.contains("ANCHOR:") && !line.contains("ANCHOR_END:") {
            body.push_str(line);
            body.push('\n');
        }
    }
    None
}

#[test]
fn every_include_resolves_to_something() {
    let mut count = 0;
    for chapter in all_chapters() {
        let text = read(&book_src().join(&chapter));
        let dir = book_src().join(&chapter).parent().map(Path::to_path_buf).unwrap_or_default();
        for include in includes(&chapter, &text) {
            let target = dir.join(&include.path);
            let source = fs::read_to_string(&target).unwrap_or_else(|err| {
                panic!(
                    "{}:{}: cannot include {}: {err}",
                    include.chapter.display(),
                    include.line,
                    include.path
                )
            });
            let body = match &include.anchor {
                Some(anchor) => anchored(&source, anchor).unwrap_or_else(|| {
                    panic!(
                        "{}:{}: {} has no anchor '{anchor}' (// ANCHOR: {anchor} ... \
                         // ANCHOR_END: {anchor})",
                        include.chapter.display(),
                        include.line,
                        include.path
                    )
                }),
                None => source,
            };
            assert!(
                !body.trim().is_empty(),
                "{}:{}: {}:{} includes nothing",
                include.chapter.display(),
                include.line,
                include.path,
                include.anchor.as_deref().unwrap_or("")
            );
            count += 1;
        }
    }
    assert!(count > 0, "the book includes no code at all");
}

#[test]
fn every_fence_says_what_it_holds() {
    for chapter in all_chapters() {
        let text = read(&book_src().join(&chapter));
        // (language, line) of the fence we are inside, if any.
        let mut open: Option<(String, usize)> = None;
        for (index, line) in text.lines().enumerate() {
            let where_ = format!("{}:{}", chapter.display(), index + 1);
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                match open {
                    Some(_) => {
                        assert!(info.trim().is_empty(), "{where_}: fence opened inside a fence");
                        open = None;
                    }
                    None => {
                        let language = info.trim().to_string();
                        assert!(!language.is_empty(), "{where_}: a fence needs a language");
                        open = Some((language, index + 1));
                    }
                }
                continue;
            }
            for include in includes(&chapter, line) {
                let Some((language, _)) = &open else {
                    panic!("{where_}: include outside a fence");
                };
                if include.path.ends_with(".rs") {
                    assert!(
                        language == "rust,ignore" || language == "rust,noplayground",
                        "{where_}: Rust code needs a rust,ignore fence, not {language}"
                    );
                } else {
                    assert!(
                        language == "console" || language == "text",
                        "{where_}: recorded output needs a console or text fence, not {language}"
                    );
                }
            }
        }
        if let Some((language, line)) = open {
            panic!("{}:{line}: fence ```{language} is never closed", chapter.display());
        }
    }
}

#[test]
fn every_picture_exists() {
    for chapter in all_chapters() {
        let text = read(&book_src().join(&chapter));
        let dir = book_src().join(&chapter).parent().map(Path::to_path_buf).unwrap_or_default();
        let mut pictures: Vec<String> = Vec::new();
        for (at, _) in text.match_indices("![") {
            if let Some(target) = link_targets(&text[at..]).into_iter().next() {
                pictures.push(target);
            }
        }
        for (at, _) in text.match_indices("src=\"") {
            let rest = &text[at + 5..];
            if let Some(end) = rest.find('"') {
                pictures.push(rest[..end].to_string());
            }
        }
        for picture in pictures {
            let path = picture.split_whitespace().next().unwrap_or_default();
            assert!(
                dir.join(path).is_file(),
                "{}: picture {path} does not exist",
                chapter.display()
            );
        }
    }
}

#[test]
fn anchors_are_read_like_mdbook() {
    let source = "a\n// ANCHOR: x\nfn f() {}\n    // ANCHOR: y\nlet y;\n    // ANCHOR_END: y\n\
                  // ANCHOR_END: x\n// ANCHOR: empty\n// ANCHOR_END: empty\n";
    assert_eq!(anchored(source, "x").as_deref(), Some("fn f() {}\nlet y;\n"));
    assert_eq!(anchored(source, "y").as_deref(), Some("let y;\n"));
    assert_eq!(anchored(source, "empty").as_deref(), Some(""));
    assert_eq!(anchored(source, "missing"), None);
    assert_eq!(anchored("// ANCHOR: xy\nz\n// ANCHOR_END: xy\n", "x"), None);
}
