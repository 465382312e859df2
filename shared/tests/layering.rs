//! The dependency direction (DESIGN.md "Layers"): services never import the front doors, so
//! REST and MCP stay thin adapters over the same code. A source scan is enough to keep it true.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn services_do_not_import_the_adapters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("service"), &mut files);
    assert!(!files.is_empty());
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("crate::api") || line.contains("crate::mcp") || line.contains("super::super::api") {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "services import an adapter:\n{}", bad.join("\n"));
}
#[test]
fn the_mcp_adapter_has_no_sql_and_does_not_use_rest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("mcp"), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            // The MCP adapter shares with REST only the key check, the rate limits, the state,
            // `/health` and the shared rate constant; the rest goes through services.
            let shared = [
                "auth",
                "rate_limit",
                "AppState",
                "health",
                "ApiError",
                "enrichments::ON_DEMAND",
            ];
            let reaches = l.match_indices("crate::api::").any(|(i, m)| {
                let rest = &l[i + m.len()..];
                let rest = rest.trim_start_matches('{');
                !shared.iter().any(|s| rest.starts_with(s))
            });
            assert!(
                !reaches,
                "{}:{}: MCP reaches into REST handlers: {line}",
                f.display(),
                n + 1
            );
            assert!(
                !l.contains("SELECT ") && !l.contains("INSERT ") && !l.contains("UPDATE "),
                "{}:{}: SQL in the MCP adapter: {line}",
                f.display(),
                n + 1
            );
        }
    }
}

/// Layers, lowest first (DESIGN.md "Layers"); a module may use its own layer (without cycles,
/// checked below) and those under it. `scripts/layering-counts` prints the same table's view.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 1),
    ("crypto", 1),
    ("telemetry", 1),
    ("sources", 2),
    ("config", 3),
    ("secrets", 3),
    ("db", 3),
    ("queue", 3),
    ("net", 3),
    ("metrics", 3),
    ("keys", 3),
    ("ingest", 4),
    ("enrich", 4),
    ("context", 4),
    ("dispatch", 4),
    ("service", 4),
    ("sweep", 4),
    ("deploy", 4),
    ("api", 5),
    ("mcp", 5),
    ("app", 6),
    ("local", 6),
    ("lambda_local", 6),
    ("esm", 6),
    ("demo", 6),
    ("testing", 6),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level modules a file names through `crate::…`, grouped imports included
/// (`use crate::{a, b::c}`). Comment lines are skipped.
fn imported_modules(text: &str) -> std::collections::BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = std::collections::BTreeSet::new();
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect() };
    for (i, m) in code.match_indices("crate::") {
        let rest = &code[i + m.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Names at depth one of the group.
            let (mut depth, mut item_start) = (1usize, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() {
                            found.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// module -> the other top-level modules it imports, for every module under `src/`.
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for d in imported_modules(&text) {
            if d != module {
                deps.insert(d);
            }
        }
    }
    graph
}

#[test]
fn the_scanner_reads_grouped_imports() {
    let found = imported_modules(
        "use crate::{\n    api::{self, AppState},\n    db::{x, y::{z}},\n};\n// crate::mcp\nlet x = crate::queue::MAX;",
    );
    let found: Vec<_> = found.into_iter().collect();
    assert_eq!(found, ["api", "db", "queue"]);
}

#[test]
fn every_module_has_a_layer_and_none_imports_upward() {
    let graph = module_graph();
    let mut bad = Vec::new();
    for (module, deps) in &graph {
        let Some(mine) = layer(module) else {
            bad.push(format!("{module}: not in LAYERS (give it a layer)"));
            continue;
        };
        for d in deps {
            match layer(d) {
                Some(theirs) if theirs > mine => {
                    bad.push(format!("{module} (layer {mine}) imports {d} (layer {theirs})"))
                }
                _ => {}
            }
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn the_modules_import_each_other_without_cycles() {
    let graph = module_graph();
    // Depth-first search; a grey node met again closes a cycle.
    fn visit<'a>(
        n: &'a str,
        graph: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        state: &mut std::collections::BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<String> {
        match state.get(n) {
            Some(1) => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                return Some(format!("{} -> {n}", path[from..].join(" -> ")));
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n, 1);
        path.push(n);
        for d in graph.get(n).into_iter().flatten() {
            if graph.contains_key(d) {
                if let Some(c) = visit(d, graph, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    let mut state = Default::default();
    for n in graph.keys() {
        if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle: {cycle}");
        }
    }
}
