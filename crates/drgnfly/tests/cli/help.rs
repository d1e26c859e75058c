//! Every metadata command parses its own `--help` (clap validates flag definitions then) and shows examples.

use crate::util::drgnfly;

#[test]
fn every_command_has_help_with_examples_and_an_underscore_alias() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "parse-pose-star",
        "parse-ctf-star",
        "parse-star",
        "parse-pose-csparc",
        "parse-ctf-csparc",
        "write-star",
        "write-cs",
        "filter-star",
        "filter-cs",
        "filter-mrcs",
        "filter-pkl",
        "select-random",
        "concat-pkls",
    ] {
        for name in [cmd.to_string(), cmd.replace('-', "_")] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_drgnfly"))
                .current_dir(dir.path())
                .args([name.as_str(), "--help"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} --help: {}", String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("Examples:") && text.contains(&format!("drgnfly {cmd}")), "{name}: {text}");
        }
    }
    // Exactly one of -n / --frac; a usage error is exit code 2 (clap).
    let out = drgnfly(dir.path(), &["select-random", "10", "-n", "2", "--frac", "0.5", "-o", "x.pkl"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}
