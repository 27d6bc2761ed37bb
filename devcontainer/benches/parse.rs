//! Parse throughput: every corpus file, and a generated ~1 MiB devcontainer.json.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // bench setup

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus() -> Vec<(String, String)> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(dir) = ["../../shared", "../../../shared"]
        .iter()
        .map(|c| manifest.join(c).join("corpus/devcontainer/real"))
        .find(|p| p.is_dir())
    else {
        eprintln!("note: corpus not found; corpus benchmark skipped");
        return Vec::new();
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// A valid devcontainer.json of about `target` bytes: realistic properties, many of them.
pub fn generated(target: usize) -> String {
    let mut s = String::from(
        "// generated\n{\n  \"name\": \"big\",\n  \"image\": \"mcr.microsoft.com/devcontainers/base:ubuntu\",\n",
    );
    s.push_str("  \"features\": {\n");
    for i in 0..200 {
        s.push_str(&format!(
            "    \"ghcr.io/example/features/f{i}:1\": {{ \"version\": \"{i}.0\", \"flag\": true }},\n"
        ));
    }
    s.push_str("  },\n  \"mounts\": [\n");
    for i in 0..500 {
        s.push_str(&format!(
            "    \"source=${{localEnv:HOME}}/d{i},target=/mnt/d{i},type=bind,consistency=cached\",\n"
        ));
    }
    s.push_str("  ],\n  \"postCreateCommand\": {\n");
    for i in 0..500 {
        s.push_str(&format!(
            "    \"step {i}\": [\"sh\", \"-c\", \"echo {i} && make target-{i}\"],\n"
        ));
    }
    s.push_str("  },\n  \"customizations\": { \"vscode\": { \"extensions\": [\n");
    for i in 0..500 {
        s.push_str(&format!("      \"publisher{i}.extension-{i}@1.{i}.0\",\n"));
    }
    s.push_str("    ], \"settings\": {\n");
    let mut i = 0;
    while s.len() < target.saturating_sub(200) {
        s.push_str(&format!(
            "      /* setting {i} */ \"ext{i}.option\": {{ \"enabled\": true, \"paths\": [\"/a/{i}\", \"/b/{i}\"], \"level\": {i} }},\n"
        ));
        i += 1;
    }
    s.push_str("    } } },\n  \"forwardPorts\": [3000, 8080, \"db:5432\"]\n}\n");
    s
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    if !files.is_empty() {
        let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
        let mut g = c.benchmark_group("corpus");
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("parse_all", |b| {
            b.iter(|| {
                for (name, text) in &files {
                    if name.ends_with("devcontainer-feature.json") {
                        black_box(codespace_devcontainer::parse_feature(black_box(text)));
                    } else {
                        black_box(codespace_devcontainer::parse_devcontainer(black_box(text)));
                    }
                }
            });
        });
        g.finish();
    }
    let big = generated(1024 * 1024);
    let check = codespace_devcontainer::parse_devcontainer(&big);
    assert!(
        check.is_ok(),
        "generated document invalid: {:?}",
        check.diagnostics().first()
    );
    let mut g = c.benchmark_group("generated_1mib");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(codespace_devcontainer::parse_devcontainer(black_box(&big))));
    });
    g.bench_function("jsonc_parser_ast_only", |b| {
        let options = jsonc_parser::ParseOptions {
            allow_comments: true,
            allow_trailing_commas: true,
            allow_loose_object_property_names: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let collect = jsonc_parser::CollectOptions::default();
        b.iter(|| {
            black_box(jsonc_parser::parse_to_ast(black_box(&big), &collect, &options).is_ok())
        });
    });
    g.bench_function("parse_tree_only", |b| {
        b.iter(|| black_box(codespace_devcontainer::parse::parse_tree(black_box(&big))));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
