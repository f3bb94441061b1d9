//! Pipelines of your own, as a new user meets them: the README's first pipeline, taken from
//! the README's own text into a new crate with a path dependency on this one (built without
//! the bundled app, with the `cli` feature only), validated and run inline and in process
//! groups; and the three examples of own pipelines, each comparing its outputs across
//! placements.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files the README marks with `<!-- file: PATH -->` before a fenced block.
fn readme_files() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut files = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- file:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "no code block after {line}");
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        files.push((name.trim().to_string(), body.join("\n") + "\n"));
    }
    files
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{command:?}: {:?}\n{said}",
        output.status
    );
    said
}

/// The README's own-pipeline example builds from the README's text and gives identical
/// output inline and in three process groups (one of them on two workers).
#[test]
fn the_readmes_first_pipeline_builds_and_runs_alike_inline_and_in_groups() {
    let files = readme_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["Cargo.toml", "src/main.rs", "inline.yml", "groups.yml"] {
        assert!(
            names.contains(&expected),
            "the README has no {expected}: {names:?}"
        );
    }
    let work = tempfile::tempdir().expect("a temp dir");
    let krate = work.path().join("word-count");
    for (name, text) in &files {
        let path = krate.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
        let text = if name == "Cargo.toml" {
            // The README's path is a checkout beside the reader's crate: point at this one, and
            // keep the crate out of any enclosing workspace.
            format!(
                "{}\n[workspace]\n",
                text.replace("../stream-kernel", &root().display().to_string())
            )
        } else {
            text.clone()
        };
        std::fs::write(path, text).expect("write a file of the example");
    }
    // The versions this repository resolved and fetched (`cargo fetch --locked`).
    std::fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).expect("Cargo.lock");
    let target = root().join("target").join("own-pipelines");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run(Command::new(&cargo)
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&krate));
    let binary = target.join("debug").join("word-count");
    std::fs::write(
        krate.join("input.txt"),
        "the quick brown fox\njumps over\n\nthe lazy dog\n",
    )
    .expect("input");
    let validated = run(Command::new(&binary)
        .args(["validate", "-c", "groups.yml"])
        .current_dir(&krate));
    assert!(validated.contains("ok"), "{validated}");
    run(Command::new(&binary)
        .args(["run", "-c", "inline.yml"])
        .current_dir(&krate));
    run(Command::new(&binary)
        .args([
            "run",
            "--quiet",
            "-c",
            "groups.yml",
            "--output",
            "output-groups.txt",
        ])
        .current_dir(&krate));
    let inline = std::fs::read_to_string(krate.join("output.txt")).expect("output.txt");
    let groups =
        std::fs::read_to_string(krate.join("output-groups.txt")).expect("output-groups.txt");
    assert_eq!(
        inline,
        "4\tthe quick brown fox\n2\tjumps over\n0\t\n3\tthe lazy dog\n"
    );
    assert_eq!(inline, groups, "inline and groups differ");
    println!(
        "README example: built from the README (engine + cli, no fund-load), validated, identical inline and in 3 groups"
    );
}

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a profile directory");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// The three examples of own pipelines run every placement and check that the outputs agree;
/// the CPU-heavy one prints the speed-up of two workers over one.
#[test]
fn every_own_pipeline_example_agrees_across_placements() {
    for (name, args) in [
        ("hash_fanout", vec!["4000", "400"]),
        ("running_counts", vec!["50000"]),
        ("word_service", vec!["3000"]),
    ] {
        let said = run(Command::new(example(name)).args(&args));
        assert!(said.contains("identical"), "{name}: {said}");
        let last = said
            .lines()
            .rfind(|l| l.contains("identical"))
            .unwrap_or_default();
        println!("{name}: {last}");
    }
}
