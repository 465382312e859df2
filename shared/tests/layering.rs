//! The dependency direction (DESIGN.md "Layers"): services never import the front doors, so
//! REST and MCP stay thin adapters over the same code. A source scan is enough to keep it true.

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
