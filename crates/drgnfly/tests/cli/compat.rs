//! Every flag of cryoDRGN 4.3.1's `train_vae`, `train_nn`, `analyze` and `eval_vol` parses in drgnfly (the
//! list, with a valid value each, is `tests/data/cryodrgn_flags.tsv`, made by `scripts/cryodrgn_flags.py`):
//! a job script written for cryoDRGN never stops at "unexpected argument". Flags drgnfly does not need are
//! accepted with a note; those it cannot honour fail with an error that says what to do (exit 1, not a
//! usage error).

use crate::util::drgnfly;

/// The minimal arguments of each command, as (flag, value) pairs; a positional has no flag.
fn base(command: &str) -> Vec<(&'static str, &'static str)> {
    match command {
        "train_vae" => {
            vec![("", "particles.mrcs"), ("--poses", "pose.pkl"), ("--zdim", "1"), ("--outdir", "out")]
        }
        "train_nn" => vec![("", "particles.mrcs"), ("--poses", "pose.pkl"), ("--outdir", "out")],
        "analyze" => vec![("", "out"), ("", "1")],
        "eval_vol" => vec![("", "weights.pkl"), ("--config", "config.yaml"), ("-o", "vol.mrc")],
        other => panic!("no base arguments for {other}"),
    }
}

#[test]
fn every_cryodrgn_flag_of_the_training_and_analysis_commands_parses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = include_str!("../data/cryodrgn_flags.tsv");
    let (mut checked, mut failures) = (0, Vec::new());
    for line in list.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (command, flag, value) = (cols[0], cols[1], cols.get(2).copied().unwrap_or(""));
        let mut args: Vec<String> = vec![command.to_string()];
        for (f, v) in base(command) {
            if f == flag {
                continue;
            }
            if !f.is_empty() {
                args.push(f.to_string());
            }
            args.push(v.to_string());
        }
        args.push(flag.to_string());
        args.extend(value.split_whitespace().map(str::to_string));
        // A path's ends come together (cryoDRGN asserts the same after parsing).
        match flag {
            "--z-start" => args.extend(["--z-end".to_string(), "1".to_string()]),
            "--z-end" => args.extend(["--z-start".to_string(), "0".to_string()]),
            _ => {}
        }
        let out = drgnfly(dir.path(), &args);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        if out.code == 2 || out.stderr.contains("unexpected argument") {
            let first = out.stderr.lines().next().unwrap_or("").to_string();
            failures.push(format!("drgnfly {}\n    {first}", args.join(" ")));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "usage errors:\n{}", failures.join("\n"));
    assert!(checked > 100, "only {checked} flags in the list");
}

#[test]
fn accepted_flags_say_why_and_unavailable_ones_say_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let train = ["train_vae", "particles.mrcs", "--poses", "pose.pkl", "--zdim", "1", "-o", "out"];
    let out = drgnfly(dir.path(), &[&train[..], &["--lazy", "--multigpu"]].concat());
    assert!(out.stderr.contains("note: --lazy") && out.stderr.contains("note: --multigpu"), "{}", out.stderr);
    drgnfly(dir.path(), &[&train[..], &["--use-real"]].concat()).fails_with(&["--use-real", "not available"]);
    drgnfly(dir.path(), &[&train[..], &["--encode-mode", "conv"]].concat()).fails_with(&["resid"]);
    drgnfly(dir.path(), &[&train[..], &["--ntilts", "10"]].concat()).fails_with(&["tilt-series"]);
    let nn = ["train_nn", "particles.mrcs", "--poses", "pose.pkl", "-o", "out", "--l-extent", "0.4"];
    drgnfly(dir.path(), &nn).fails_with(&["--l-extent 0.4", "0.5"]);
    drgnfly(dir.path(), &["analyze", "out", "1", "--vol-start-index", "0"]).fails_with(&["vol_001"]);
}
