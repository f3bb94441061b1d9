//! The documentation's references: every relative link in the README and `docs/` (anchors
//! included) and every document named anywhere in the repository (a page of `docs/` named in a
//! comment, a test or a script) resolves to a file of the repository.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every tracked-looking text file under the directories a reader or a cross-reference meets.
fn files() -> Vec<PathBuf> {
    let mut found = vec![root().join("README.md")];
    for dir in [
        "docs", "src", "tests", "tools", "benches", "examples", "configs", "deploy", "fuzz", ".ci",
    ] {
        collect(&root().join(dir), &mut found);
    }
    found
}

fn collect(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "corpus")
            {
                continue;
            }
            collect(&path, found);
        } else if std::fs::read_to_string(&path).is_ok() {
            found.push(path);
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Markdown links `[text](target)` of a file: the targets.
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

/// Names of documents (`*.md`) cited in a file, outside URLs.
fn cited_documents(text: &str) -> Vec<String> {
    let mut cited = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || "()[]`'\"<>,;:|*".contains(c)) {
        let word = word.trim_end_matches(['.', '!', '?']);
        let word = word.split('#').next().unwrap_or(word);
        if word.ends_with(".md")
            && word.len() > 3
            && !word.contains("://")
            && !word.starts_with("$")
            && word
                .chars()
                .all(|c| c.is_alphanumeric() || "-_./".contains(c))
        {
            cited.push(word.to_string());
        }
    }
    cited
}

#[test]
fn every_relative_link_and_cited_document_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        if file.extension().is_some_and(|e| e == "md") {
            for target in link_targets(&text) {
                if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    dir.join(path)
                };
                if !resolved.exists() {
                    broken.push(format!("{shown}: link to {target}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor
                    && resolved.extension().is_some_and(|e| e == "md")
                {
                    let headings = anchors(&std::fs::read_to_string(&resolved).unwrap_or_default());
                    if !headings.iter().any(|h| h == anchor) {
                        broken.push(format!("{shown}: link to {target}: no such heading"));
                    }
                }
            }
        }
        for cited in cited_documents(&text) {
            checked += 1;
            if !(root().join(&cited).exists() || dir.join(&cited).exists()) {
                broken.push(format!(
                    "{shown}: cites {cited}, which is not in the repository"
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} references found: the scan is broken"
    );
    assert!(
        broken.is_empty(),
        "{} broken:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_readme_is_a_front_door_of_at_most_20_kib() {
    let size = std::fs::metadata(root().join("README.md")).map_or(0, |m| m.len());
    assert!(size <= 20 * 1024, "README.md is {size} bytes");
}
