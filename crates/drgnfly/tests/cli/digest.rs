//! Fixed-seed outputs of `train-vae`, `train-nn` and `eval-images`, byte for byte, against digests recorded
//! with the binary before the training driver moved into `drgnfly-nn` (commit 34b5e87): refactors of the
//! training path must not change what users get for a seed.
//!
//! Floating-point results depend on the CPU's kernels (AVX-512 or AVX2 matrix products, bfloat16 products
//! in mixed precision) and on the tiles chosen from its caches, which order the float32 sums; run.log
//! records both ("CPU kernels …"), and the digests hold where those are the ones they were recorded with.
//! Elsewhere the test still checks that two runs give identical files, and says so.
//!
//! Re-recorded when the tiles began to follow the caches (issue 17: rows 512 → 1024 and kc 128 → 512 at
//! width 32 on this CPU); with the old tiles forced, the new code reproduced the old digests exactly.

use std::path::Path;

use crate::util::drgnfly;

/// FNV-1a, 64 bits: enough to tell files apart, and no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Recorded on an AMD EPYC (Zen 4, AVX-512 with BF16, 1 MiB L2), with these kernels in run.log.
const F32_KERNELS: &str = "avx512f, tiles kc 512 mc 96 rows 1024";
const BF16_KERNELS: &str = "avx512f bf16, tiles kc 512 mc 96 rows 1024";
const AVX512_F32: [(&str, u64); 6] = [
    ("vae-f32/z.2.pkl", 0xa040f2f0c3833e35),
    ("vae-f32/weights.2.safetensors", 0xe18cc6c26dd84241),
    ("nn/weights.2.safetensors", 0x17df7a8375a49d35),
    ("nn/reconstruct.2.mrc", 0xc17d34b6cfb3a80f),
    ("losses.pkl", 0xb9a872d0ef4f2f86),
    ("zeval.pkl", 0x103db05ed88a9026),
];
const AVX512_BF16: [(&str, u64); 2] =
    [("vae/z.2.pkl", 0x1714c7c3a3de79a8), ("vae/weights.2.safetensors", 0xce8fba1c936f6912)];

/// Simulate, train (VAE in float32 and in the default precision, homogeneous) and evaluate, all seeded.
fn run_all(dir: &Path) {
    let run = |args: &[&str]| drgnfly(dir, args).ok();
    run(&["simulate", "--phantom", "hinge", "--states", "2", "-D", "16", "-n", "300", "--snr", "1"]
        .iter()
        .chain(&[
            "--max-shift",
            "2",
            "--defocus-min",
            "8000",
            "--defocus-max",
            "20000",
            "--seed",
            "0",
            "-o",
            "sim",
        ])
        .copied()
        .collect::<Vec<_>>());
    let ind: String = (0..300).step_by(2).map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.join("ind.txt"), ind).expect("write ind.txt");
    let data = ["sim/particles.mrcs", "--poses", "sim/pose.pkl", "--ctf", "sim/ctf.pkl"];
    for (out, amp) in [("vae-f32", Some("--no-amp")), ("vae", None)] {
        let mut args = vec!["--threads", "1", "train-vae"];
        args.extend(data);
        args.extend(["--zdim", "2", "-n", "2", "--enc-layers", "2", "--enc-dim", "32", "--dec-layers", "2"]);
        args.extend([
            "--dec-dim",
            "32",
            "--lr",
            "1e-3",
            "--seed",
            "3",
            "-b",
            "8",
            "--ind",
            "ind.txt",
            "-o",
            out,
        ]);
        args.extend(["--no-analysis"]);
        args.extend(amp);
        run(&args);
    }
    let mut args = vec!["--threads", "1", "train-nn"];
    args.extend(data);
    args.extend([
        "-n", "2", "--layers", "2", "--dim", "32", "--lr", "1e-3", "--seed", "3", "-b", "8", "--no-amp",
    ]);
    args.extend(["-o", "nn"]);
    run(&args);
    let mut args =
        vec!["--threads", "1", "eval-images", "sim/particles.mrcs", "vae-f32/weights.2.safetensors"];
    args.extend(["-c", "vae-f32/config.yaml", "--poses", "sim/pose.pkl", "--ctf", "sim/ctf.pkl"]);
    args.extend(["-o", "losses.pkl", "--out-z", "zeval.pkl"]);
    run(&args);
}

fn digest(dir: &Path, file: &str) -> u64 {
    fnv1a(&std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}")))
}

/// The kernels a training run in `dir/out` states in its run.log.
fn kernels(dir: &Path, out: &str) -> String {
    let log = std::fs::read_to_string(dir.join(out).join("run.log")).expect("run.log");
    let at = log.find("CPU kernels ").unwrap_or_else(|| panic!("{out}/run.log names no CPU kernels"));
    log[at + "CPU kernels ".len()..].lines().next().unwrap_or_default().trim().to_string()
}

#[test]
fn fixed_seed_outputs_are_unchanged() {
    let a = tempfile::tempdir().expect("tempdir");
    run_all(a.path());
    let (f32_here, bf16_here) = (kernels(a.path(), "vae-f32"), kernels(a.path(), "vae"));
    let mut checked = Vec::new();
    for (table, usable) in
        [(&AVX512_F32[..], f32_here == F32_KERNELS), (&AVX512_BF16[..], bf16_here == BF16_KERNELS)]
    {
        for &(file, want) in table {
            if usable {
                assert_eq!(
                    digest(a.path(), file),
                    want,
                    "{file} differs from the recorded output for seed 3"
                );
                checked.push(file);
            }
        }
    }
    if checked.len() < AVX512_F32.len() + AVX512_BF16.len() {
        eprintln!(
            "notice: this CPU runs other kernels ({f32_here}; {bf16_here}) than the digests were recorded with \
             ({F32_KERNELS}; {BF16_KERNELS}); checking that two runs agree instead"
        );
        let b = tempfile::tempdir().expect("tempdir");
        run_all(b.path());
        for &(file, _) in AVX512_F32.iter().chain(&AVX512_BF16) {
            assert_eq!(digest(a.path(), file), digest(b.path(), file), "{file}: two runs differ");
        }
    }
}
