//! The rules of the house, kept by a test: it reads the crate's own source and fails when a
//! module imports a sibling that imports it back (directly or around a circle), when a layer
//! reaches up (the runner, the engine, the database layer or the logins into the controller;
//! the engine or the database layer into Kubernetes or the custom resources), when one of the
//! controller's kinds reaches into another's module, or when a function outside the tests
//! grows past `LONGEST_FUNCTION` lines.
//!
//! It reads text, not a syntax tree: the code is formatted by rustfmt, so a `#[cfg(test)]`
//! module and a function end at a closing brace on their own indentation, and comment lines
//! start with `//`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a function outside the tests may be, in lines from its signature to its brace.
const LONGEST_FUNCTION: usize = 120;

/// Modules that may never reach the module named second (nor anything below it).
const NEVER: &[(&str, &str)] = &[
    ("runner", "controller"),
    ("engine", "controller"),
    ("db", "controller"),
    ("logins", "controller"),
    ("logins", "runner"),
    ("engine", "api"),
    ("db", "api"),
    ("db", "engine"),
    ("engine", "runner"),
    ("engine", "logins"),
    ("engine", "convert"),
    ("api", "controller"),
    ("api", "runner"),
    ("api", "engine"),
    ("api", "db"),
    ("engine", "lake"),
    ("db", "lake"),
    ("lake", "controller"),
    ("lake", "runner"),
    ("lake", "logins"),
    ("lake", "convert"),
    ("lake", "api"),
];

/// The controller's kinds: none names another's module. What two kinds both need lives at the
/// controller's root (`queries`, `runtime_key`, `conditions`, ...).
const KINDS: &[&str] = &["schedule", "run", "companies", "users", "reset", "rotation"];

/// Crates that the engine, the lake and the database layer never use: they know nothing of Kubernetes.
const NO_KUBERNETES: &[&str] = &["engine", "db", "lake"];

/// One source file: its module path and its lines outside tests and comments.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    lines: Vec<(usize, String)>,
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable in the test") {
            let path = entry.expect("a readable entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).expect("below src/");
                let mut module: Vec<String> = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                    module.pop();
                }
                if module.first().is_some_and(|m| m == "house") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                files.push(SourceFile {
                    module,
                    lines: code_lines(&text),
                    path,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The lines of a file outside `#[cfg(test)]` items and comment lines, numbered from 1.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = vec![];
    let mut skip_until: Option<String> = None;
    let mut test_attr = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(end) = &skip_until {
            if line == end {
                skip_until = None;
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            test_attr = true;
            continue;
        }
        if test_attr {
            test_attr = false;
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.ends_with('{') {
                skip_until = Some(format!("{indent}}}"));
            }
            continue;
        }
        out.push((i + 1, line.to_string()));
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths named in one line: `crate::a::b`, `super::super::c`, and each item of a
/// `use crate::{x, y::z}` group, as (relative to: None for the crate, Some(n) for n supers).
fn paths_in(line: &str) -> Vec<(Option<usize>, Vec<String>)> {
    let mut out = vec![];
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !is_ident_char(chars[i - 1]) && chars[i - 1] != ':';
        let rest: String = chars[i..].iter().take(7).collect();
        let base = if starts_word && rest.starts_with("crate::") {
            i += 7;
            Some(None)
        } else if starts_word && rest.starts_with("super::") {
            let mut n = 0;
            while chars[i..].iter().take(7).collect::<String>() == "super::" {
                n += 1;
                i += 7;
            }
            Some(Some(n))
        } else {
            None
        };
        let Some(base) = base else {
            i += 1;
            continue;
        };
        let (prefix, next) = read_path(&chars, i);
        i = next;
        if chars.get(i) == Some(&'{') {
            let (items, after) = group_items(&chars, i);
            i = after;
            for item in items {
                let (tail, _) = read_path(&item.chars().collect::<Vec<_>>(), 0);
                out.push((base, [prefix.clone(), tail].concat()));
            }
        } else {
            out.push((base, prefix));
        }
    }
    out
}

/// `a::b::c` from `chars[at..]`, stopping before a `{` (left at the returned index).
fn read_path(chars: &[char], mut at: usize) -> (Vec<String>, usize) {
    let mut parts = vec![];
    loop {
        while chars.get(at) == Some(&' ') {
            at += 1;
        }
        let start = at;
        while chars.get(at).is_some_and(|c| is_ident_char(*c)) {
            at += 1;
        }
        if start == at {
            break;
        }
        parts.push(chars[start..at].iter().collect());
        if chars.get(at) == Some(&':') && chars.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            break;
        }
    }
    (parts, at)
}

/// The comma-separated items of the `{...}` group at `chars[at]`, and the index after it.
fn group_items(chars: &[char], at: usize) -> (Vec<String>, usize) {
    let mut depth = 0;
    let mut items = vec![];
    let mut current = String::new();
    let mut i = at;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => {
                depth += 1;
                if depth > 1 {
                    current.push(c);
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(std::mem::take(&mut current));
                    return (items, i + 1);
                }
                current.push(c);
            }
            ',' if depth == 1 => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
        i += 1;
    }
    items.push(current);
    (items, i)
}

/// Every module a file names, resolved to the longest known module path.
fn references(
    file: &SourceFile,
    modules: &BTreeSet<Vec<String>>,
) -> Vec<(usize, Vec<String>, String)> {
    // `use` groups may span lines: join the file, keeping the first line number of each.
    let mut out = vec![];
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in &file.lines {
        let (start, text) = match pending.take() {
            Some((start, mut text)) => {
                text.push(' ');
                text.push_str(line.trim());
                (start, text)
            }
            None => (*n, line.clone()),
        };
        if text.trim_start().starts_with("use ") && !text.contains(';') {
            pending = Some((start, text));
            continue;
        }
        for (base, path) in paths_in(&text) {
            let mut full = match base {
                None => vec![],
                Some(n) => {
                    // A file's module path is its folder for `mod.rs`, else the file itself:
                    // either way `super` names the path one shorter.
                    let mut m = file.module.clone();
                    for _ in 0..n {
                        m.pop();
                    }
                    m
                }
            };
            full.extend(path);
            while !full.is_empty() && !modules.contains(&full) {
                full.pop();
            }
            out.push((start, full, text.trim().to_string()));
        }
    }
    out
}

/// The edges between siblings: for a reference from module `from` to `to`, the children of
/// their deepest common ancestor on each side. A module naming its ancestor or its descendant
/// is no edge.
fn sibling_edge(from: &[String], to: &[String]) -> Option<(Vec<String>, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((
        from[..common].to_vec(),
        from[common].clone(),
        to[common].clone(),
    ))
}

type Evidence = BTreeMap<(Vec<String>, String, String), String>;

/// The circles among siblings: each strongly connected group of two or more.
fn circles(edges: &Evidence) -> Vec<String> {
    let mut by_parent: BTreeMap<&Vec<String>, BTreeMap<&String, BTreeSet<&String>>> =
        BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        by_parent
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .insert(to);
    }
    let mut found = vec![];
    for (parent, graph) in by_parent {
        let reach = |start: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![start];
            while let Some(n) = todo.pop() {
                for next in graph.get(n).into_iter().flatten() {
                    if seen.insert(*next) {
                        todo.push(next);
                    }
                }
            }
            seen
        };
        let mut reported = BTreeSet::new();
        for a in graph.keys() {
            for b in reach(a) {
                if a < &b && reach(b).contains(a) && reported.insert((*a, b)) {
                    let key = (parent.clone(), (*a).clone(), b.clone());
                    let back = (parent.clone(), b.clone(), (*a).clone());
                    let why = |k: &(Vec<String>, String, String)| {
                        edges
                            .get(k)
                            .cloned()
                            .unwrap_or_else(|| "(through others)".into())
                    };
                    found.push(format!(
                        "{}: {a} and {b} reach each other\n    {a} -> {b}: {}\n    {b} -> {a}: {}",
                        if parent.is_empty() {
                            "crate".into()
                        } else {
                            parent.join("::")
                        },
                        why(&key),
                        why(&back),
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_sibling_that_imports_it_back() {
    let files = source_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges = Evidence::new();
    for f in &files {
        for (line, to, text) in references(f, &modules) {
            if let Some(edge) = sibling_edge(&f.module, &to) {
                edges
                    .entry(edge)
                    .or_insert_with(|| format!("{}:{line}: {text}", f.path.display()));
            }
        }
    }
    let found = circles(&edges);
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn no_layer_reaches_up() {
    let files = source_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut found = BTreeSet::new();
    for f in &files {
        let Some(top) = f.module.first() else {
            continue;
        };
        for (line, to, text) in references(f, &modules) {
            if NEVER
                .iter()
                .any(|(a, b)| a == top && to.first().is_some_and(|t| t == b))
            {
                found.insert(format!("{}:{line}: {text}", f.path.display()));
            }
        }
        if NO_KUBERNETES.contains(&top.as_str()) {
            for (line, text) in &f.lines {
                if text.contains("kube::") || text.contains("k8s_openapi::") {
                    found.insert(format!("{}:{line}: {}", f.path.display(), text.trim()));
                }
            }
        }
    }
    let found: Vec<String> = found.into_iter().collect();
    assert!(
        found.is_empty(),
        "layers reaching up:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_kind_reaches_into_another() {
    let files = source_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let kind_of = |m: &[String]| match m {
        [c, kind, ..] if c == "controller" && KINDS.contains(&kind.as_str()) => Some(kind.clone()),
        _ => None,
    };
    let mut found = BTreeSet::new();
    for f in &files {
        let Some(mine) = kind_of(&f.module) else {
            continue;
        };
        for (line, to, text) in references(f, &modules) {
            if kind_of(&to).is_some_and(|theirs| theirs != mine) {
                found.insert(format!("{}:{line}: {text}", f.path.display()));
            }
        }
    }
    let found: Vec<String> = found.into_iter().collect();
    assert!(
        found.is_empty(),
        "kinds reaching into each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut found = vec![];
    for f in source_files() {
        let mut open: Option<(usize, String, String)> = None;
        for (n, line) in &f.lines {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            match &open {
                None => {
                    let signature = ["fn ", "pub fn ", "async fn ", "pub async fn "]
                        .iter()
                        .chain(&["pub(crate) fn ", "pub(crate) async fn ", "const fn "])
                        .any(|p| trimmed.starts_with(p));
                    let one_line = trimmed.contains('{') && trimmed.ends_with('}');
                    if signature && !trimmed.ends_with(';') && !one_line {
                        open = Some((*n, format!("{indent}}}"), trimmed.to_string()));
                    }
                }
                Some((start, end, name)) => {
                    // A declaration without a body, over several lines.
                    let close = &end[..end.len() - 1];
                    if line.starts_with(&format!("{close})")) && line.ends_with(';') {
                        open = None;
                    } else if line == end {
                        if n - start + 1 > LONGEST_FUNCTION {
                            found.push(format!(
                                "{}:{start}: {} lines: {name}",
                                f.path.display(),
                                n - start + 1
                            ));
                        }
                        open = None;
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "functions longer than {LONGEST_FUNCTION} lines:\n{}",
        found.join("\n")
    );
}

/// The arguments of the call that opens at `at` (just after its `(`), split at the commas
/// outside parentheses, brackets and string literals, each trimmed.
fn call_arguments(text: &str, at: usize) -> Vec<String> {
    let mut args = vec![];
    let mut current = String::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in text[at..].chars() {
        if in_string {
            current.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                current.push(c);
            }
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => args.push(std::mem::take(&mut current).trim().to_string()),
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        args.push(current.trim().to_string());
    }
    args
}

/// The condition reasons the controller's code can write: the reason of every call that sets a
/// condition, where it is a literal or a constant, and the reasons that the admission rule
/// hands to those calls.
fn condition_reasons() -> BTreeSet<String> {
    let files: Vec<SourceFile> = source_files()
        .into_iter()
        .filter(|f| f.module.first().is_some_and(|m| m == "controller"))
        .collect();
    let texts: Vec<String> = files
        .iter()
        .map(|f| {
            f.lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let mut constants = BTreeMap::new();
    for text in &texts {
        for line in text.lines() {
            let Some(rest) = line
                .trim_start()
                .strip_prefix("pub const ")
                .or_else(|| line.trim_start().strip_prefix("const "))
            else {
                continue;
            };
            if let Some((name, value)) = rest.split_once(": &str = \"") {
                constants.insert(name.to_string(), value.trim_end_matches("\";").to_string());
            }
        }
    }
    let literal = |arg: &str| -> Option<String> {
        let last = arg.rsplit("::").next().unwrap_or(arg);
        if let Some(v) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
            Some(v.to_string())
        } else {
            constants.get(last).cloned()
        }
    };
    let mut reasons = BTreeSet::new();
    for (file, text) in files.iter().zip(&texts) {
        for (call, reason_at) in [(".set(", 3), ("conditions::set(", 3), (".unknown(", 2)] {
            for (at, _) in text.match_indices(call) {
                let args = call_arguments(text, at + call.len());
                if args.first().is_some_and(|a| a.contains("conditions"))
                    && let Some(r) = args.get(reason_at).and_then(|a| literal(a))
                {
                    reasons.insert(r);
                }
            }
        }
        // Reasons chosen in a tuple first, then set: `(false, "Reason", ...)`,
        // `Some(("Reason", ...))`, `(RunResult::Failed, "Reason", ...)`.
        let flat = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("( ", "(");
        for (at, _) in flat.match_indices("\", ") {
            let Some(open) = flat[..at].rfind('"') else {
                continue;
            };
            let word = &flat[open + 1..at];
            let before = &flat[..open];
            let chosen = before.ends_with("((")
                || before.ends_with("=> (")
                || ["(true, ", "(false, ", "(ok, "]
                    .iter()
                    .any(|p| before.ends_with(p))
                || before
                    .rsplit('(')
                    .next()
                    .is_some_and(|t| t.starts_with("RunResult::") && t.ends_with(", "));
            if chosen
                && word.len() > 2
                && word.chars().next().is_some_and(char::is_uppercase)
                && word.chars().all(char::is_alphanumeric)
            {
                reasons.insert(word.to_string());
            }
        }
        // The admission rule's holds: the schedule's reason and the waiting run's.
        if file.module.last().is_none_or(|m| m != "admission") {
            continue;
        }
        for field in ["reason: ", "waiting: "] {
            for (at, _) in text.match_indices(field) {
                let value = text[at + field.len()..]
                    .split([',', '\n'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                if let Some(r) =
                    literal(value).filter(|r| r.chars().next().is_some_and(char::is_uppercase))
                {
                    reasons.insert(r);
                }
            }
        }
    }
    reasons
}

#[test]
fn every_condition_reason_is_in_the_operations_guide() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .expect("docs/operations.md is readable");
    let reasons = condition_reasons();
    assert!(
        reasons.len() > 40,
        "the reader found too few reasons: {reasons:?}"
    );
    let missing: Vec<&String> = reasons
        .iter()
        .filter(|r| !guide.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "condition reasons that docs/operations.md does not explain (as `Reason`): {missing:?}"
    );
}

#[test]
fn the_reader_finds_paths_in_groups_and_supers() {
    let paths = paths_in("use super::super::{context::Context, error::Error};");
    assert_eq!(
        paths,
        vec![
            (Some(2), vec!["context".into(), "Context".into()]),
            (Some(2), vec!["error".into(), "Error".into()]),
        ]
    );
    let paths = paths_in("let x = crate::runner::open(&a, crate::db::Side::Source);");
    assert_eq!(paths.len(), 2);
    assert_eq!(
        paths[1],
        (None, vec!["db".into(), "Side".into(), "Source".into()])
    );
    let edges: Evidence = [
        ((vec![], "a".into(), "b".into()), "x".into()),
        ((vec![], "b".into(), "c".into()), "y".into()),
        ((vec![], "c".into(), "a".into()), "z".into()),
    ]
    .into();
    assert_eq!(circles(&edges).len(), 3);
}
