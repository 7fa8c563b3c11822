//! Tidy: cheap, mechanical checks over every Rust source file in the workspace, so that style
//! rules are enforced by a failing test instead of by review.
//!
//! - No line longer than 100 columns (rustfmt cannot shorten comments or string literals).
//! - No `dbg!`, no fix-me markers, no `todo!` / `unimplemented!`: unfinished work is an issue,
//!   not code.
//! - No function longer than 100 lines, unless the line before it says
//!   `// tidy: long function, <reason>` (STYLE.md treats ~70 lines as a tripwire, not a rule; a
//!   linear sequence or a flat `match` may stay whole when its reason is written down).

use std::fs;
use std::path::{Path, PathBuf};

const COLUMNS_MAX: usize = 100;
const FUNCTION_LINES_MAX: usize = 100;

fn rust_files(directory: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "fuzz" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    assert!(files.len() > 5, "tidy found too few files under {}", root.display());
    files
}

/// Lines that open a function body at the outermost level of an item, with their indentation.
fn function_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    let indent = line.len() - trimmed.len();
    let after_visibility = trimmed
        .strip_prefix("pub(crate) ")
        .or_else(|| trimmed.strip_prefix("pub "))
        .unwrap_or(trimmed);
    let after_qualifiers = after_visibility
        .trim_start_matches("const ")
        .trim_start_matches("unsafe ")
        .trim_start_matches("async ");
    after_qualifiers.starts_with("fn ").then_some(indent)
}

#[test]
fn sources_are_tidy() {
    let banned = [
        concat!("dbg", "!("),
        concat!("FIX", "ME"),
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
    ];
    let mut problems = Vec::new();
    for path in workspace_files() {
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut open: Option<(usize, usize)> = None;
        for (index, line) in lines.iter().enumerate() {
            let number = index + 1;
            let place = format!("{}:{number}", path.display());
            if line.chars().count() > COLUMNS_MAX {
                problems.push(format!("{place}: longer than {COLUMNS_MAX} columns"));
            }
            for word in banned {
                if line.contains(word) {
                    problems.push(format!("{place}: contains {word}"));
                }
            }
            if open.is_none() {
                if let Some(indent) = function_start(line) {
                    let excused = index > 0 && lines[index - 1].contains("// tidy: long function");
                    if !excused && !line.trim_end().ends_with(';') {
                        open = Some((index, indent));
                    }
                }
            } else if let Some((start, indent)) = open {
                let closing = " ".repeat(indent) + "}";
                if line.trim_end() == closing {
                    let length = index - start + 1;
                    if length > FUNCTION_LINES_MAX {
                        let start_place = format!("{}:{}", path.display(), start + 1);
                        problems.push(format!("{start_place}: function is {length} lines"));
                    }
                    open = None;
                }
            }
        }
    }
    assert!(problems.is_empty(), "tidy found:\n{}", problems.join("\n"));
}
