//! Running the binary and building small inputs.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use drgnfly_em::fsc::fsc;
use drgnfly_io::mrc::read_volume;
use drgnfly_io::pickle::{self, NdArray, PyValue};

/// What a run of `drgnfly` produced.
pub struct Output {
    pub code: i32,
    pub stderr: String,
}

impl Output {
    /// Panics with stderr unless the run succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "drgnfly failed:\n{}", self.stderr);
        self
    }

    /// Asserts a clean failure (exit 1, no panic) whose message contains every `needle`.
    pub fn fails_with(self, needles: &[&str]) {
        assert_eq!(self.code, 1, "expected exit code 1, got {}:\n{}", self.code, self.stderr);
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks `{n}`:\n{}", self.stderr);
        }
    }
}

/// Run `drgnfly args…` in `dir`.
pub fn drgnfly<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drgnfly"));
    cmd.args(args);
    run(cmd, dir)
}

/// Run `drgnfly args…` in `dir` under `ulimit -v kb` (an address-space limit, as on cluster nodes), so a
/// memory test behaves the same whatever the machine's RAM.
pub fn drgnfly_with_address_limit<S: AsRef<OsStr>>(dir: &Path, kb: u64, args: &[S]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!("ulimit -v {kb} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_drgnfly"));
    cmd.args(args);
    run(cmd, dir)
}

fn run(mut cmd: Command, dir: &Path) -> Output {
    let out = cmd.current_dir(dir).env_remove("RUST_LOG").output().expect("the drgnfly binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fixture path as a string argument, or `None` (test skipped) when the shared data is absent.
pub fn fixture(rel: &str) -> Option<String> {
    drgnfly_io::fixtures::fixture(rel).map(|p| p.to_string_lossy().into_owned())
}

/// The arrays of a pickle, flattening one tuple level (pose.pkl).
pub fn arrays(path: &Path) -> Vec<NdArray> {
    let values = pickle::load_all(path).unwrap_or_else(|e| panic!("{e}"));
    values
        .into_iter()
        .flat_map(|v| match v {
            PyValue::Array(a) => vec![a],
            PyValue::Tuple(items) => items.into_iter().filter_map(PyValue::into_array).collect(),
            other => panic!("unexpected {}", other.describe()),
        })
        .collect()
}

/// Max |a − b| over two equally long slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Asserts two ctf tables agree column by column to a relative tolerance.
pub fn assert_ctf_close(got: &[[f32; 9]], want: &[[f32; 9]], rel: f64) {
    assert_eq!(got.len(), want.len(), "CTF rows");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for k in 0..9 {
            let (g, w) = (f64::from(g[k]), f64::from(w[k]));
            assert!((g - w).abs() <= rel * w.abs().max(1.0), "row {i} column {k}: {g} vs {w}");
        }
    }
}

/// A ctf.pkl for `n` images of box `d` with values that change from row to row, and two optics groups
/// (amplitude contrast 0.07 / 0.1 on even / odd rows).
pub fn varied_ctf(n: usize, d: f32) -> Vec<[f32; 9]> {
    (0..n)
        .map(|i| {
            let f = i as f32;
            let w = if i % 2 == 0 { 0.07 } else { 0.1 };
            [
                d,
                1.5,
                10000.0 + 37.0 * f,
                9000.0 + 11.0 * f,
                (i * 7 % 180) as f32 - 90.0,
                300.0,
                2.7,
                w,
                (i % 5) as f32 * 10.0,
            ]
        })
        .collect()
}

/// Write `indices` as an index .pkl.
pub fn write_ind(path: &Path, indices: &[i64]) {
    drgnfly_io::selection::write_selection(path, indices).unwrap();
}

/// `drgnfly simulate --phantom hinge` of `n` images of `d` pixels in `states` states into `dir/sim`, seed
/// 0, with `extra` flags.
pub fn simulate_phantom(dir: &Path, (states, d, n): (usize, usize, usize), extra: &[&str]) {
    let (states, d, n) = (states.to_string(), d.to_string(), n.to_string());
    let sim = [
        "simulate",
        "--phantom",
        "hinge",
        "--states",
        &states,
        "-D",
        &d,
        "-n",
        &n,
        "--seed",
        "0",
        "-o",
        "sim",
    ];
    drgnfly(dir, &[&sim[..], extra].concat()).ok();
}

/// The metrics JSON of `drgnfly eval-poses POSES --truth sim/pose.pkl -D d` with `extra` flags, run in `dir`.
pub fn eval_poses(dir: &Path, poses: &str, d: usize, extra: &[&str]) -> serde_json::Value {
    let d = d.to_string();
    let args = ["eval-poses", poses, "--truth", "sim/pose.pkl", "-D", &d, "-o", "eval-poses.json"];
    drgnfly(dir, &[&args[..], extra].concat()).ok();
    let text = std::fs::read_to_string(dir.join("eval-poses.json")).expect("eval-poses.json");
    serde_json::from_str(&text).expect("eval-poses JSON")
}

/// FSC-AUC of the map `a` against the map `b` (same box).
pub fn fsc_auc(a: &Path, b: &Path) -> f64 {
    let (a, b) = (read_volume(a).expect("map"), read_volume(b).expect("map"));
    fsc(&a.data, &b.data, a.shape[0], None).expect("fsc").auc()
}

/// A map's voxels.
pub fn volume(path: &Path) -> Vec<f64> {
    read_volume(path).expect("map").data.iter().map(|&v| f64::from(v)).collect()
}
