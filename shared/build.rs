//! Embeds every `migrations/NNNN_name.sql` file so all binaries (Lambda, CLI, tests) carry the same set.
// A build script reports a broken tree by panicking with what is wrong; that is its interface.
#![allow(clippy::expect_used)]

use std::{env, fs, path::Path};

fn main() {
    // Paths are relative to the package so a build cache shared by clones in other folders (CI)
    // re-runs this script for the clone's own migrations instead of trusting another tree's.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    println!("cargo:rerun-if-changed=../migrations");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("migrations/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut out = String::from("pub(crate) static MIGRATIONS: &[(i32, &str, &str)] = &[\n");
    for path in &files {
        let file = path.file_name().and_then(|s| s.to_str()).expect("utf-8 file name");
        println!("cargo:rerun-if-changed=../migrations/{file}");
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 file name");
        let (num, name) = stem.split_once('_').expect("migration file name NNNN_name.sql");
        let version: i32 = num.parse().expect("numeric migration prefix");
        out.push_str(&format!(
            "    ({version}, {name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../migrations/{file}\"))),\n"
        ));
    }
    out.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs"),
        out,
    )
    .expect("write migrations.rs");
}
