//! `eval-poses` on poses with a known global rotation, mirror and shift error.

use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::align::flip_hand;
use drgnfly_em::rotation::random::random_rotations;
use drgnfly_em::rotation::relion::matrix_from_euler;
use drgnfly_em::rotation::{mul, transpose};
use drgnfly_io::pickle::{write_poses, Poses};

use crate::util::drgnfly;

fn pkl(poses: &[Pose], d: usize) -> Poses {
    Poses {
        rot: poses.iter().map(Pose::pkl_rot).collect(),
        trans: Some(poses.iter().map(|p| p.pkl_trans(d)).collect()),
    }
}

#[test]
fn eval_poses_undoes_a_global_rotation_and_the_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = 64;
    let truth: Vec<Pose> = random_rotations(300, 9)
        .into_iter()
        .enumerate()
        .map(|(i, rot)| Pose { rot, shift_px: [(i % 7) as f32 - 3.0, (i % 5) as f32 - 2.0] })
        .collect();
    let q = matrix_from_euler([10.0, 120.0, 75.0]);
    // A mirrored, globally rotated reconstruction, each shift 0.5 px off along x.
    let est: Vec<Pose> = truth
        .iter()
        .map(|p| Pose {
            rot: flip_hand(&mul(&p.rot, &transpose(&q))),
            shift_px: [p.shift_px[0] + 0.5, p.shift_px[1]],
        })
        .collect();
    write_poses(dir.path().join("truth.pkl"), &pkl(&truth, d)).expect("write");
    write_poses(dir.path().join("est.pkl"), &pkl(&est, d)).expect("write");
    drgnfly(dir.path(), &["eval-poses", "est.pkl", "--truth", "truth.pkl", "-D", "64", "-o", "m.json"]).ok();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).expect("json"))
            .expect("parse");
    assert_eq!(m["hand_flipped"], true, "{m}");
    assert!(m["median_angle_deg"].as_f64().expect("angle") < 0.01, "{m}");
    assert!(m["median_frobenius_sq"].as_f64().expect("frob") < 1e-6, "{m}");
    let rmse = m["shift_rmse_px"].as_f64().expect("rmse");
    assert!((rmse - 0.5).abs() < 1e-3, "{m}");

    // Per particle: one pose turned a further 90° stands out, the others stay near 0.
    let mut off = est.clone();
    off[7].rot = mul(&off[7].rot, &matrix_from_euler([0.0, 90.0, 0.0]));
    write_poses(dir.path().join("off.pkl"), &pkl(&off, d)).expect("write");
    let args = ["eval-poses", "off.pkl", "--truth", "truth.pkl", "-D", "64", "--per-particle", "each.txt"];
    drgnfly(dir.path(), &args).ok();
    let text = std::fs::read_to_string(dir.path().join("each.txt")).expect("per-particle file");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(|v| v.parse().expect("number")).collect())
        .collect();
    assert_eq!(rows.len(), 300);
    assert!((rows[7][0] - 90.0).abs() < 2.0, "{:?}", rows[7]);
    assert!(rows.iter().enumerate().all(|(i, r)| i == 7 || r[0] < 1.0), "{text}");
    assert!(rows.iter().all(|r| (r[1] - 0.5).abs() < 0.05), "{text}");

    // Random estimates are far off: ‖ΔR‖²_F of uniformly random rotations has mean 4 (angles of ~126° median).
    let random: Vec<Pose> =
        random_rotations(300, 10).into_iter().map(|rot| Pose { rot, shift_px: [0.0; 2] }).collect();
    write_poses(dir.path().join("random.pkl"), &pkl(&random, d)).expect("write");
    drgnfly(dir.path(), &["eval-poses", "random.pkl", "--truth", "truth.pkl", "-D", "64", "-o", "r.json"])
        .ok();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).expect("json"))
            .expect("parse");
    assert!(r["median_angle_deg"].as_f64().expect("angle") > 60.0, "{r}");
}
