//! The documentation against what it documents: docs/configuration.md names every key of
//! config/clipd.example.toml and no key the file does not have, and every relative link in
//! README.md and docs/*.md leads to a file (and, for a `#heading`, a heading) that exists.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The keys of one `[classifiers.NAME]` table. The example file shows a classifier only in a
/// comment, and names `templates` only in its prose, so the list is kept here; the test checks
/// that the commented example uses no key outside it.
const CLASSIFIER_KEYS: [&str; 4] = ["labels", "templates", "template_set", "thresholds"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The example file with its commented-out settings restored: keys that have no default
/// (`# source = "..."`, the TLS files) and the commented classifier table are real keys too. A
/// comment line is a setting when it is a `[table]` header or parses as TOML on its own, so prose
/// such as "top_k = 0 asks for every label" stays a comment.
fn with_commented_settings(example: &str) -> String {
    let restored = example.lines().map(|line| match line.strip_prefix("# ") {
        Some(rest) if is_header(rest) || is_assignment(rest) => rest,
        _ => line,
    });
    restored.collect::<Vec<_>>().join("\n")
}

fn is_header(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .is_some_and(|name| !name.is_empty() && name.split('.').all(is_bare_key))
}

fn is_assignment(line: &str) -> bool {
    line.split_once(" = ")
        .is_some_and(|(key, _)| is_bare_key(key) && line.parse::<toml::Table>().is_ok())
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Every path of the example file: `section.key` for settings, `section.table` for tables,
/// with a classifier's user-chosen name written `NAME`. Returns (settings, tables).
fn example_paths(example: &toml::Table) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(
        table: &toml::Table,
        prefix: &str,
        keys: &mut BTreeSet<String>,
        tables: &mut BTreeSet<String>,
    ) {
        for (name, value) in table {
            let path = format!("{prefix}{name}");
            match value {
                toml::Value::Table(inner) if path != "classifiers.NAME.thresholds" => {
                    tables.insert(path.clone());
                    walk(inner, &format!("{path}."), keys, tables);
                }
                _ => {
                    keys.insert(path);
                }
            }
        }
    }
    let (mut keys, mut tables) = (BTreeSet::new(), BTreeSet::new());
    for (section, value) in example {
        let toml::Value::Table(table) = value else {
            panic!("config/clipd.example.toml: `{section}` is not a section");
        };
        tables.insert(section.clone());
        if section == "classifiers" {
            // The children are classifiers' names: every one stands for NAME.
            for (name, classifier) in table {
                let toml::Value::Table(classifier) = classifier else {
                    panic!("config/clipd.example.toml: classifiers.{name} is not a table");
                };
                tables.insert("classifiers.NAME".into());
                walk(classifier, "classifiers.NAME.", &mut keys, &mut tables);
            }
        } else {
            walk(table, &format!("{section}."), &mut keys, &mut tables);
        }
    }
    (keys, tables)
}

/// The text of a markdown file outside fenced code blocks, lines kept.
fn prose(markdown: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The inline code spans of a markdown file (outside fenced blocks).
fn code_spans(markdown: &str) -> Vec<String> {
    let text = prose(markdown).replace('\n', " ");
    let pieces = text.split('`');
    pieces.skip(1).step_by(2).map(str::to_owned).collect()
}

/// A code span written as a settings path (`batching.max_delay_ms`, `classifiers.NAME.labels`)
/// under one of `sections`, normalised as `example_paths` writes it.
fn as_settings_path(span: &str, sections: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = span.split('.').collect();
    let path_like = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !path_like || !sections.contains(parts[0]) {
        return None;
    }
    if parts[0] == "classifiers" {
        parts[1] = "NAME";
    }
    Some(parts.join("."))
}

#[test]
fn every_key_of_the_example_file_is_in_the_configuration_page_and_back() {
    let example_path = root().join("config/clipd.example.toml");
    let example = with_commented_settings(&read(&example_path));
    let example: toml::Table = example.parse().unwrap_or_else(|e| {
        panic!("config/clipd.example.toml with its commented settings restored: {e}")
    });
    let (mut keys, tables) = example_paths(&example);
    let sections: BTreeSet<String> = example.keys().cloned().collect();
    assert!(
        sections.contains("classifiers"),
        "config/clipd.example.toml shows no [classifiers.NAME] table, commented or not"
    );
    let classifier_keys: BTreeSet<String> = CLASSIFIER_KEYS
        .iter()
        .map(|key| format!("classifiers.NAME.{key}"))
        .collect();
    let shown: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("classifiers.") && !classifier_keys.contains(*k))
        .collect();
    assert!(
        shown.is_empty(),
        "config/clipd.example.toml's classifier uses keys CLASSIFIER_KEYS lacks: {shown:?}"
    );
    keys.extend(classifier_keys);

    let page = read(&root().join("docs/configuration.md"));
    let documented: BTreeSet<String> = code_spans(&page)
        .iter()
        .filter_map(|span| as_settings_path(span, &sections))
        .collect();

    let missing: Vec<&String> = keys.difference(&documented).collect();
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|path| !keys.contains(*path) && !tables.contains(*path))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md and config/clipd.example.toml disagree.\n\
         Keys of the example file the page does not name in backticks: {missing:?}\n\
         Keys the page names that the example file does not have: {unknown:?}"
    );
}

/// GitHub's anchors for a markdown file's headings: lower case, punctuation dropped, spaces as
/// hyphens, repeats numbered.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in prose(markdown).lines() {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    anchors
}

/// The targets of a markdown file's inline links (`[text](target)`), outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let outside_code: String = text.split('`').step_by(2).collect();
    let mut targets = Vec::new();
    let mut rest = outside_code.as_str();
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        targets.push(rest[..end].trim().to_owned());
        rest = &rest[end..];
    }
    targets
}

#[test]
fn every_relative_link_in_the_readme_and_the_docs_leads_to_a_file_that_exists() {
    let mut pages = vec![root().join("README.md")];
    let docs = root().join("docs");
    let mut doc_pages: Vec<PathBuf> = fs::read_dir(&docs)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", docs.display()))
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    doc_pages.sort();
    assert!(!doc_pages.is_empty(), "docs/ has no markdown pages");
    pages.extend(doc_pages);

    let mut broken = Vec::new();
    let mut links = 0;
    for page in &pages {
        let name = page
            .strip_prefix(root())
            .unwrap_or(page)
            .display()
            .to_string();
        for target in link_targets(&read(page)) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page's folder").join(path)
            };
            if !file.exists() {
                broken.push(format!("{name}: {target} (no {})", file.display()));
            } else if !anchor.is_empty() {
                let is_markdown = file.extension().is_some_and(|e| e == "md");
                if is_markdown && !heading_anchors(&read(&file)).contains(anchor) {
                    broken.push(format!("{name}: {target} (no heading #{anchor} there)"));
                }
            }
        }
    }
    assert!(
        links > 0,
        "no relative links found: the link scanner is broken"
    );
    assert!(
        broken.is_empty(),
        "links that lead nowhere:\n{}",
        broken.join("\n")
    );
}
