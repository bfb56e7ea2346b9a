//! The node crate keeps its layers: `http` uses `services` uses `actors`, never the other
//! way, and no two modules import each other, directly or in a circle.
//!
//! Read from the source: every `crate::` and `super::` path in every file is resolved to
//! the unit it names (`services::fetch`, `actors::db`, `http::gateway`, `config`, ...).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Which units a unit of each layer may use, besides its own layer's where allowed.
fn allowed(from: &str, to: &str) -> bool {
    let layer = |unit: &str| unit.split("::").next().unwrap_or("").to_string();
    let utility = ["config", "memory", "zerocopy"];
    let (from_layer, to_layer) = (layer(from), layer(to));
    if utility.contains(&to_layer.as_str()) {
        return !utility.contains(&from_layer.as_str()) || from == to;
    }
    match from_layer.as_str() {
        "actors" => to_layer == "actors",
        "services" => matches!(to_layer.as_str(), "services" | "actors"),
        "node" => matches!(to_layer.as_str(), "services" | "actors"),
        "http" => matches!(to_layer.as_str(), "http" | "services" | "actors" | "node"),
        _ => false,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `services/fetch/driver.rs` is `["services", "fetch", "driver"]`; `mod.rs` names its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The unit a module path belongs to: two segments inside a layer folder, else one.
fn unit_of(path: &[String]) -> Option<String> {
    let first = path.first()?;
    match first.as_str() {
        "actors" | "services" | "http" => Some(match path.get(1) {
            Some(second) if second.chars().next().is_some_and(|c| c.is_lowercase()) => {
                format!("{first}::{second}")
            }
            _ => first.clone(),
        }),
        _ => Some(first.clone()),
    }
}

/// Expands a use tree such as `{a::b, c::{d, e}}` or `a::b::C` into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        return split_top(inner).iter().flat_map(|t| expand(t)).collect();
    }
    match tree.find("::") {
        Some(at) if !tree[..at].contains('{') => {
            let head = tree[..at].trim().to_string();
            expand(&tree[at + 2..])
                .into_iter()
                .map(|mut rest| {
                    rest.insert(0, head.clone());
                    rest
                })
                .collect()
        }
        _ => vec![vec![
            tree.split_whitespace().next().unwrap_or("").to_string(),
        ]],
    }
}

fn split_top(text: &str) -> Vec<String> {
    let (mut depth, mut items, mut current) = (0, Vec::new(), String::new());
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items.retain(|i| !i.trim().is_empty());
    items
}

/// Every `crate::...` and `super::...` path in `text`, resolved from module `here`.
fn references(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut parent = here.to_vec();
            parent.pop();
            parent
        }),
    ] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(anchor) {
            let before = rest[..at].chars().last();
            rest = &rest[at + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // The path runs to the end of its use tree or expression.
            let tree: String = if rest.starts_with('{') {
                let mut depth = 0;
                rest.chars()
                    .take_while(|c| {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        depth > 0 || *c == '{'
                    })
                    .chain(std::iter::once('}'))
                    .collect()
            } else {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect()
            };
            for path in expand(&tree) {
                let mut full = base.clone();
                full.extend(path.into_iter().filter(|s| !s.is_empty()));
                found.push(full);
            }
        }
    }
    found
}

#[test]
fn layers_point_one_way_and_no_module_imports_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for file in &files {
        if file.ends_with("main.rs") || file.ends_with("lib.rs") {
            continue;
        }
        let here = module_of(&src, file);
        let Some(from) = unit_of(&here) else { continue };
        let text = std::fs::read_to_string(file).expect("read");
        for path in references(&text, &here) {
            let Some(to) = unit_of(&path) else { continue };
            if to == from || matches!(to.as_str(), "actors" | "services" | "http") {
                continue;
            }
            if !allowed(&from, &to) {
                wrong.push(format!("{} uses {to}", file.display()));
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    assert!(
        wrong.is_empty(),
        "layer rules broken:\n{}",
        wrong.join("\n")
    );
    assert!(
        edges.contains_key("http::gateway") && edges.contains_key("services::library"),
        "the scan found too little to be trusted: {edges:?}"
    );

    // Depth-first search for a cycle.
    fn visit(
        unit: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|u| u == unit) {
            let mut cycle = path[at..].to_vec();
            cycle.push(unit.to_string());
            return Some(cycle);
        }
        if done.contains(unit) {
            return None;
        }
        path.push(unit.to_string());
        for next in edges.get(unit).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(unit.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for unit in edges.keys() {
        if let Some(cycle) = visit(unit, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_scanner_sees_nested_use_trees_and_super() {
    let here = vec!["services".to_string(), "library".to_string()];
    let refs = references(
        "use crate::{actors::db::{A, B}, services::fetch::F};\nuse super::{blobs::Blobs, presence::P};\nlet x = crate::zerocopy::f();",
        &here,
    );
    let units: BTreeSet<String> = refs.iter().filter_map(|p| unit_of(p)).collect();
    let expected: BTreeSet<String> = [
        "actors::db",
        "services::fetch",
        "services::blobs",
        "services::presence",
        "zerocopy",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(units, expected);
    assert!(!allowed("services::fetch", "http::blobs"));
    assert!(!allowed("actors::db", "services::blobs"));
    assert!(allowed("http::blobs", "services::fetch"));
}
