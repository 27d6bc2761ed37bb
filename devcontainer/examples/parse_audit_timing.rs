//! Times parse + full audit over a set of files, the way `tests/perf/jsonc_node.mjs` times the
//! Node peer (Microsoft's `jsonc-parser`) over the same files, so the two numbers compare.
//!
//! Usage: `parse_audit_timing ITERATIONS FILE...`; prints one JSON object with the median wall
//! time of one pass over all files. Driven by `tests/perf/devcontainer_vs_jsonc_parser.sh`.
//!
//! `PARSE_AUDIT_STAGE` measures less than the whole pipeline, to show what bounds it:
//! `scan` (jsonc-parser's `Scanner` alone: every token, nothing built), `ast` (jsonc-parser's
//! `parse_to_ast`), `parse` (`parse_devcontainer` / `parse_feature` without the audit); unset or
//! `all` is parse + full audit.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a measuring tool reports on stdout

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use codespace_devcontainer::audit::{audit, audit_feature, AuditContext};
use codespace_devcontainer::{parse_devcontainer, parse_feature};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((iterations, files)) = args.split_first() else {
        eprintln!("usage: parse_audit_timing ITERATIONS FILE...");
        return ExitCode::from(2);
    };
    let Ok(iterations) = iterations.parse::<usize>() else {
        eprintln!("ITERATIONS must be a positive integer, not {iterations:?}");
        return ExitCode::from(2);
    };
    let mut texts = Vec::new();
    for path in files {
        match std::fs::read_to_string(path) {
            // Feature metadata files are audited as features, like `codespace-agentctl audit`.
            Ok(text) => texts.push((path.ends_with("devcontainer-feature.json"), text)),
            Err(err) => {
                eprintln!("{path}: {err}");
                return ExitCode::from(2);
            }
        }
    }
    let bytes: usize = texts.iter().map(|(_, t)| t.len()).sum();
    let ctx = AuditContext::default();
    let stage = std::env::var("PARSE_AUDIT_STAGE").unwrap_or_default();
    if stage == "dump" {
        for (path, (is_feature, text)) in files.iter().zip(&texts) {
            let (findings, diagnostics) = if *is_feature {
                let parsed = parse_feature(text);
                (audit_feature(&parsed), parsed.diagnostics())
            } else {
                let parsed = parse_devcontainer(text);
                (audit(&parsed, &ctx), parsed.diagnostics())
            };
            println!("== {path}");
            for f in findings {
                println!("{f:?}");
            }
            for d in diagnostics {
                println!("{d:?}");
            }
        }
        return ExitCode::SUCCESS;
    }
    let one: fn(bool, &str, &AuditContext) -> usize = match stage.as_str() {
        "" | "all" => |is_feature, text, ctx| {
            if is_feature {
                audit_feature(&parse_feature(text)).len()
            } else {
                audit(&parse_devcontainer(text), ctx).len()
            }
        },
        "parse" => |is_feature, text, _| {
            if is_feature {
                usize::from(parse_feature(text).is_ok())
            } else {
                usize::from(parse_devcontainer(text).is_ok())
            }
        },
        "ast" => |_, text, _| {
            let options = jsonc_parser::ParseOptions::default();
            let collect = jsonc_parser::CollectOptions::default();
            usize::from(jsonc_parser::parse_to_ast(text, &collect, &options).is_ok())
        },
        "scan" => |_, text, _| {
            let options = jsonc_parser::ScannerOptions::default();
            let mut scanner = jsonc_parser::Scanner::new(text, &options);
            let mut tokens = 0;
            while let Ok(Some(token)) = scanner.scan() {
                black_box(token);
                tokens += 1;
            }
            tokens
        },
        other => {
            eprintln!("PARSE_AUDIT_STAGE must be scan, ast, parse or all, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let pass = || {
        let mut findings = 0usize;
        for (is_feature, text) in &texts {
            findings += one(*is_feature, black_box(text), &ctx);
        }
        findings
    };
    for _ in 0..iterations.clamp(1, 20) {
        black_box(pass()); // warm caches, as the Node side warms its JIT
    }
    let mut samples = Vec::with_capacity(iterations);
    let mut findings = 0;
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        findings = black_box(pass());
        samples.push(start.elapsed().as_nanos());
    }
    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    println!(
        "{{\"impl\":\"codespace-devcontainer parse + audit\",\"files\":{},\"bytes\":{bytes},\"iterations\":{},\"median_ns\":{median},\"findings\":{findings}}}",
        texts.len(),
        samples.len()
    );
    ExitCode::SUCCESS
}
