//! Every section reference in the code and the top-level docs ("design", the section sign,
//! a number such as 5.7) names a numbered heading of `docs/design.md`, and no reference still
//! points at the old, unpublished specification ("spec" before the section sign).
//!
//! The section sign is written as `SECTION` below, never literally, so this file does not
//! reference sections itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The section sign.
const SECTION: char = '\u{a7}';

/// The workspace root: two levels above this crate.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate lives in <root>/crates/<name>")
        .to_path_buf()
}

/// Whether `s` is a section number: digits, optionally followed by `.digits` groups.
fn is_section_number(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The section number of a Markdown heading line (`### 5.7 Title` → `5.7`, `## 5. Data` → `5`),
/// or `None` for other lines and unnumbered headings.
fn heading_number(line: &str) -> Option<String> {
    let rest = line.trim_start_matches('#');
    if rest.len() == line.len() || !rest.starts_with(' ') {
        return None;
    }
    let token = rest.split_whitespace().next()?;
    let number = token.strip_suffix('.').unwrap_or(token);
    is_section_number(number).then(|| number.to_string())
}

/// The section number at the start of `s` (`5.7. More` → `5.7`): a trailing period that ends a
/// sentence is not part of it.
fn leading_number(s: &str) -> Option<String> {
    let mut end = 0;
    let bytes = s.as_bytes();
    while end < bytes.len() {
        let b = bytes[end];
        // a period counts only between digits
        let inner_period =
            b == b'.' && end > 0 && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if !(b.is_ascii_digit() || inner_period) {
            break;
        }
        end += 1;
    }
    (end > 0).then(|| s[..end].to_string())
}

/// The section numbers a line cites: each `SECTION` followed by a number, and the end of a range
/// written `SECTION 6.3–6.7` (en dash or hyphen, with or without a second section sign).
fn references(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in line.match_indices(SECTION) {
        let after = &line[at + SECTION.len_utf8()..];
        let Some(first) = leading_number(after) else {
            continue;
        };
        let rest = &after[first.len()..];
        out.push(first);
        let range_end = rest
            .strip_prefix('–')
            .or_else(|| rest.strip_prefix('-'))
            .and_then(leading_number);
        if let Some(end) = range_end {
            out.push(end);
        }
    }
    out
}

/// The numbered headings of a design document; a number used twice is an error.
fn headings(design: &str) -> Result<BTreeSet<String>, String> {
    let mut seen = BTreeSet::new();
    for (i, line) in design.lines().enumerate() {
        if let Some(n) = heading_number(line) {
            if !seen.insert(n.clone()) {
                return Err(format!(
                    "section {n} has a second heading on line {}",
                    i + 1
                ));
            }
        }
    }
    Ok(seen)
}

/// Problems in `files` (name, text): `name:line: …` for every reference without a heading in
/// `sections` and every reference still written as `spec SECTION`.
fn problems(sections: &BTreeSet<String>, files: &[(String, String)]) -> Vec<String> {
    let old = format!("spec {SECTION}");
    let mut out = Vec::new();
    for (name, text) in files {
        for (i, line) in text.lines().enumerate() {
            if line.to_lowercase().contains(&old) {
                out.push(format!(
                    "{name}:{}: says `{old}`; cite docs/design.md as `design {SECTION}N`",
                    i + 1
                ));
            }
            for r in references(line) {
                if !sections.contains(&r) {
                    out.push(format!(
                        "{name}:{}: {SECTION}{r} has no heading in docs/design.md",
                        i + 1
                    ));
                }
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, skipping build outputs and hidden folders.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The files whose references are checked: Rust sources under `crates/`, `xtask/` and `fuzz/`,
/// the README and the Markdown files directly in `docs/`.
fn checked_files(root: &Path) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for dir in ["crates", "xtask", "fuzz"] {
        rust_files(&root.join(dir), &mut paths);
    }
    paths.push(root.join("README.md"));
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.sort();
        paths.extend(docs);
    }
    paths
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let name = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            Some((name, text))
        })
        .collect()
}

#[test]
fn every_section_reference_has_a_heading_in_the_design_document() {
    let root = workspace_root();
    let design_path = root.join("docs/design.md");
    let design = std::fs::read_to_string(&design_path)
        .unwrap_or_else(|e| panic!("{}: {e}", design_path.display()));
    let sections = headings(&design).unwrap_or_else(|e| panic!("docs/design.md: {e}"));
    assert!(
        sections.len() > 12,
        "docs/design.md has only {} numbered headings",
        sections.len()
    );
    let files = checked_files(&root);
    assert!(
        files
            .iter()
            .any(|(n, _)| n.ends_with("splitter-grad/src/search.rs")),
        "the scan found none of the workspace's sources under {}",
        root.display()
    );
    let cited: usize = files
        .iter()
        .flat_map(|(_, t)| t.lines())
        .map(|l| references(l).len())
        .sum();
    assert!(cited > 50, "only {cited} section references found");
    let found = problems(&sections, &files);
    assert!(
        found.is_empty(),
        "{} bad section reference(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn headings_are_read_with_and_without_a_trailing_period() {
    assert_eq!(heading_number("### 5.7 Title").as_deref(), Some("5.7"));
    assert_eq!(heading_number("## 5. GradSplitter").as_deref(), Some("5"));
    assert_eq!(
        heading_number("### 12.10 Dirichlet").as_deref(),
        Some("12.10")
    );
    assert_eq!(heading_number("# cnnsplit design"), None);
    assert_eq!(heading_number("#5 no space"), None);
    assert_eq!(heading_number("5.7 not a heading"), None);
    assert_eq!(heading_number("## 5..7 broken"), None);
    let doc = "# Title\n## 1 Terms\n### 1.1 One\n### 1.1 Again\n";
    assert!(headings(doc).unwrap_err().contains("1.1"));
}

#[test]
fn references_drop_a_sentence_period_and_read_ranges() {
    let s = SECTION;
    assert_eq!(references(&format!("the rule of design {s}5.7.")), ["5.7"]);
    assert_eq!(
        references(&format!("(design {s}5.10, {s}7, {s}8)")),
        ["5.10", "7", "8"]
    );
    assert_eq!(
        references(&format!("design {s}6.3–6.7, then")),
        ["6.3", "6.7"]
    );
    assert_eq!(references(&format!("design {s}5.4–{s}5.7")), ["5.4", "5.7"]);
    assert_eq!(references(&format!("design {s}12.10: x")), ["12.10"]);
    assert_eq!(
        references(&format!("a bare {s} sign")),
        Vec::<String>::new()
    );
    assert_eq!(references("no reference 5.7"), Vec::<String>::new());
}

#[test]
fn a_dangling_or_old_style_reference_is_reported_with_file_and_line() {
    let s = SECTION;
    let sections = headings("## 5 A\n### 5.7 B\n").unwrap();
    let files = vec![
        (
            "ok.rs".to_string(),
            format!("// design {s}5.7.\n// design {s}5\n"),
        ),
        (
            "bad.rs".to_string(),
            format!("// fine\n// design {s}5.8 is missing\n// Spec {s}5.7 is old\n"),
        ),
    ];
    let found = problems(&sections, &files);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("bad.rs:2:") && found[0].contains("5.8"));
    assert!(found[1].starts_with("bad.rs:3:") && found[1].contains("spec"));
}
