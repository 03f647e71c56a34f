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
//! * every picture a chapter shows exists;
//! * every label of a diagram (`book/src/images/*.svg`) is at least 12 px
//!   on the page, where mdBook scales a drawing wider than its 750 px
//!   column down to it (the text around it is 16 px).

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

/// The widest a picture is shown: mdBook's `--content-max-width` (its
/// `variables.css`), and `.content img { max-width: 100% }` scales a wider
/// picture down to it.
const CONTENT_WIDTH: f64 = 750.0;

/// The smallest a diagram's label may be on the page, in CSS pixels. The
/// book's text is 16 px.
const MIN_LABEL_PX: f64 = 12.0;

/// The value of attribute `name` in the attributes text of a tag.
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        if before.is_none_or(char::is_whitespace)
            && let Some(value) = after.trim_start().strip_prefix('=')
            && let Some(value) = value.trim_start().strip_prefix('"')
            && let Some(end) = value.find('"')
        {
            return Some(&value[..end]);
        }
        rest = after;
    }
    None
}

/// A length in user units: a plain number, or one in `px`.
fn user_units(value: &str, what: &str) -> f64 {
    let number = value.trim().strip_suffix("px").unwrap_or(value.trim());
    number.parse().unwrap_or_else(|_| panic!("{what}: {value:?} is not a length in px"))
}

/// Every label of an SVG drawing with the size it is shown at on the page,
/// in CSS pixels: its `font-size` (inherited from the enclosing elements)
/// times the scale at which the page shows the drawing, `min(width,
/// CONTENT_WIDTH) / viewBox width`. Panics on what it cannot size (a style
/// sheet, a `style` attribute, a missing width or viewBox).
fn label_sizes(svg: &str, name: &str) -> Vec<(String, f64)> {
    assert!(!svg.contains("<style"), "{name}: a <style> sheet: set font-size as attributes");
    let mut labels = Vec::new();
    // (element, font size) of each open element.
    let mut open: Vec<(String, f64)> = Vec::new();
    let mut scale = None;
    let mut rest = svg;
    while let Some(at) = rest.find('<') {
        let text = rest[..at].trim();
        if let (Some(scale), Some((element, size))) = (scale, open.last())
            && !text.is_empty()
            && (element == "text" || element == "tspan")
        {
            labels.push((text.to_string(), size * scale));
        }
        rest = &rest[at..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            let end = comment.find("-->").unwrap_or_else(|| panic!("{name}: unclosed comment"));
            rest = &comment[end + 3..];
            continue;
        }
        let end = rest.find('>').unwrap_or_else(|| panic!("{name}: unclosed tag"));
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(closing) = tag.strip_prefix('/') {
            let (element, _) = open.pop().unwrap_or_else(|| panic!("{name}: stray </{closing}>"));
            assert_eq!(element, closing.trim(), "{name}: <{element}> closed by </{closing}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (element, attributes) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        assert!(
            attribute(attributes, "style").is_none_or(|style| !style.contains("font")),
            "{name}: a font set in a style attribute: use the font-size attribute"
        );
        let inherited = open.last().map(|(_, size)| *size);
        let size = match (attribute(attributes, "font-size"), inherited) {
            (Some(value), _) => user_units(value, name),
            (None, Some(size)) => size,
            // The browser's default, for a drawing that sets none.
            (None, None) => 16.0,
        };
        if element == "svg" {
            let width = attribute(attributes, "width")
                .map(|width| user_units(width, name))
                .unwrap_or_else(|| panic!("{name}: <svg> needs a width"));
            let view_box = attribute(attributes, "viewBox")
                .unwrap_or_else(|| panic!("{name}: <svg> needs a viewBox"));
            let box_width = view_box
                .split_whitespace()
                .nth(2)
                .map(|width| user_units(width, name))
                .unwrap_or_else(|| panic!("{name}: viewBox {view_box:?} has no width"));
            scale = Some(width.min(CONTENT_WIDTH) / box_width);
        }
        if !self_closing {
            open.push((element.to_string(), size));
        }
    }
    assert!(open.is_empty(), "{name}: unclosed elements {open:?}");
    labels
}

#[test]
fn every_diagram_label_is_readable_at_the_books_width() {
    let mut diagrams = 0;
    let mut small = Vec::new();
    let images = book_src().join("images");
    let entries = fs::read_dir(&images).unwrap_or_else(|err| panic!("{}: {err}", images.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "svg") {
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
        let labels = label_sizes(&read(&path), &name);
        assert!(!labels.is_empty(), "{name}: no labels found");
        for (label, px) in labels {
            if px < MIN_LABEL_PX {
                small.push(format!("{name}: {px:.1} px: {label}"));
            }
        }
        diagrams += 1;
    }
    assert!(diagrams > 0, "no diagrams under {}", images.display());
    assert!(
        small.is_empty(),
        "labels under {MIN_LABEL_PX} px at the book's width of {CONTENT_WIDTH} px:\n{}",
        small.join("\n")
    );
}

#[test]
fn label_sizes_follow_inheritance_and_scale() {
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="100"
        viewBox="0 0 500 100" font-size="14"><title>not a label</title>
        <!-- <text>not one either</text> -->
        <text x="1" y="2">plain</text>
        <g font-size="10"><text>small <tspan font-size="20px">big</tspan></text><rect/></g>
        </svg>"#;
    // Shown at 750 px for 500 units: a scale of 1.5.
    let sizes = label_sizes(svg, "test.svg");
    let expected = [("plain", 21.0), ("small", 15.0), ("big", 30.0)];
    assert_eq!(sizes.len(), expected.len(), "{sizes:?}");
    for ((label, px), (want_label, want_px)) in sizes.iter().zip(expected) {
        assert_eq!(label, want_label);
        assert!((px - want_px).abs() < 1e-9, "{label}: {px} px, not {want_px}");
    }
    // A narrow drawing is not scaled up: 12 units at width 400 stay 12 px.
    let narrow = r#"<svg width="400" viewBox="0 0 400 50"><text font-size="11">x</text></svg>"#;
    assert_eq!(label_sizes(narrow, "narrow.svg"), vec![("x".to_string(), 11.0)]);
}
