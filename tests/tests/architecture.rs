//! The shape of the crates, checked on their sources: the core's modules import each other
//! without cycles (a reader can take them bottom-up), and the adapters stay glue.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file under `src` (`tcp/table.rs` → `tcp::table`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// Every `crate::a::b` path mentioned in `code` (imports, paths, doc links), as its longest
/// prefix that is a module of `modules`.
fn referenced_modules(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        // `use crate::{a::X, b::Y}` names several paths.
        let end = rest
            .find(|c: char| {
                !(c.is_alphanumeric()
                    || c == '_'
                    || c == ':'
                    || c == '{'
                    || c == ','
                    || c == ' '
                    || c == '\n')
            })
            .unwrap_or(rest.len());
        let group = &rest[..end];
        let (prefix, items) = match group.split_once('{') {
            Some((prefix, items)) => (prefix, items.split(',').collect::<Vec<_>>()),
            None => ("", vec![group]),
        };
        for item in items {
            let path = format!("{prefix}{}", item.trim());
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            for n in (1..=parts.len()).rev() {
                let candidate = parts[..n].join("::");
                if modules.contains(&candidate) {
                    out.insert(candidate);
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn core_modules_import_each_other_without_cycles() {
    let src = netstack_tests::workspace_root().join("crates/netstack-core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            // Unit tests may use anything; the layering is about the library code.
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            (module_of(&src, f), code)
        })
        .collect();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    assert!(modules.len() > 20, "found the core's modules: {modules:?}");
    let edges: BTreeMap<&String, BTreeSet<String>> = sources
        .iter()
        .map(|(m, code)| {
            let mut to = referenced_modules(code, &modules);
            to.remove(m);
            to.remove(""); // the crate root re-exports everything
            (m, to)
        })
        .collect();
    // Depth-first search for a back edge.
    fn visit<'a>(
        m: &'a String,
        edges: &'a BTreeMap<&'a String, BTreeSet<String>>,
        path: &mut Vec<&'a String>,
        done: &mut BTreeSet<&'a String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| *p == m) {
            let cycle: Vec<&String> = path[at..].to_vec();
            panic!("import cycle between core modules: {cycle:?} -> {m}");
        }
        path.push(m);
        for to in &edges[m] {
            let key = edges.keys().find(|k| **k == to).expect("a module");
            visit(key, edges, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut Vec::new(), &mut done);
    }
}

/// The lines of every source file of an adapter crate.
fn adapter_lines(name: &str) -> usize {
    let src = netstack_tests::workspace_root().join(format!("crates/{name}/src"));
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read").lines().count())
        .sum()
}

#[test]
fn adapters_are_glue_of_at_most_400_lines_and_stack_rs_at_most_400() {
    for adapter in ["netstack-tokio", "netstack-smol"] {
        let lines = adapter_lines(adapter);
        assert!(
            lines <= 400,
            "{adapter} has {lines} lines: protocol logic belongs in the core"
        );
        assert!(lines > 50, "{adapter}'s sources were found ({lines} lines)");
    }
    let stack = netstack_tests::workspace_root().join("crates/netstack-core/src/stack.rs");
    let lines = std::fs::read_to_string(stack)
        .expect("read")
        .lines()
        .count();
    assert!(lines <= 400, "stack.rs has {lines} lines");
}
