//! Bad input ends with exit code 1 and a message naming the file and the record, never a panic.

use drgnfly_io::npy::{Column, StructuredBuilder};
use drgnfly_io::pickle;

use crate::util::{drgnfly, drgnfly_with_address_limit, fixture, simulate_phantom, write_ind};

/// A STAR row whose `N@path` points past the end of its stack.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn write_star_from_star_with_image_past_the_stack() {
    let Some(mrcs) = fixture("cryodrgn/toy_projections.mrcs") else { return };
    let dir = tempfile::tempdir().unwrap();
    let star =
        format!("data_particles\n\nloop_\n_rlnImageName #1\n000001@{mrcs}\n001001@{mrcs}\n000003@{mrcs}\n");
    std::fs::write(dir.path().join("in.star"), star).unwrap();
    drgnfly(dir.path(), &["write-star", "in.star", "-o", "out.star"]).fails_with(&[
        "in.star",
        "row 2",
        "image 1001",
        "holds 1000 images",
    ]);
    assert!(!dir.path().join("out.star").exists(), "no output on failure");
}

/// A .cs without blob/shape needs -D.
#[test]
fn parse_pose_csparc_without_blob_shape_asks_for_d() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = StructuredBuilder::new(2);
    b.add("alignments3D/pose", &[3], Column::F32(vec![0.1, 0.2, 0.3, 0.0, 0.0, 0.0])).unwrap();
    b.add("alignments3D/shift", &[2], Column::F32(vec![3.0, -6.0, 0.0, 0.0])).unwrap();
    b.write(dir.path().join("p.cs")).unwrap();
    drgnfly(dir.path(), &["parse-pose-csparc", "p.cs", "-o", "pose.pkl"]).fails_with(&[
        "p.cs",
        "blob/shape",
        "-D",
    ]);
    drgnfly(dir.path(), &["parse-pose-csparc", "p.cs", "-D", "60", "-o", "pose.pkl"]).ok();
    let poses = pickle::load_poses(dir.path().join("pose.pkl")).unwrap();
    assert_eq!(poses.trans.unwrap()[0], [0.05, -0.1]);
}

/// A pickle that holds a string instead of an array.
#[test]
fn pickle_that_is_not_an_array() {
    let dir = tempfile::tempdir().unwrap();
    // python 3.11: pickle.dumps('hello', protocol=4)
    std::fs::write(
        dir.path().join("s.pkl"),
        b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello\x94.",
    )
    .unwrap();
    write_ind(&dir.path().join("ind.pkl"), &[0]);
    drgnfly(dir.path(), &["filter-pkl", "s.pkl", "--ind", "ind.pkl", "-o", "o.pkl"])
        .fails_with(&["s.pkl", "holds a str"]);
    drgnfly(dir.path(), &["concat-pkls", "ind.pkl", "s.pkl", "-o", "o.pkl"])
        .fails_with(&["s.pkl", "holds a str"]);
    drgnfly(dir.path(), &["filter-pkl", "ind.pkl", "--ind", "s.pkl", "-o", "o.pkl"])
        .fails_with(&["s.pkl", "not a numpy array"]);
}

/// NaN in a numeric STAR column is reported with its row and column.
#[test]
fn nan_in_a_star_column() {
    let dir = tempfile::tempdir().unwrap();
    let star = "data_particles\n\nloop_\n_rlnImageName\n_rlnAngleRot\n_rlnAngleTilt\n_rlnAnglePsi\n_rlnOriginX\n_rlnOriginY\n\
                1@a.mrcs 10.0 20.0 30.0 0.0 0.0\n2@a.mrcs nan 20.0 30.0 0.0 0.0\n";
    std::fs::write(dir.path().join("nan.star"), star).unwrap();
    drgnfly(dir.path(), &["parse-pose-star", "nan.star", "-D", "64", "-o", "p.pkl"]).fails_with(&[
        "nan.star",
        "_rlnAngleRot",
        "not a finite number",
    ]);
    assert!(!dir.path().join("p.pkl").exists());
}

/// `--ind` with an index beyond the dataset, and CTF/pose files of the wrong length.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn selection_out_of_range_and_count_mismatch() {
    let (Some(mrcs), Some(ctf100), Some(poses)) = (
        fixture("cryodrgn/toy_projections.mrcs"),
        fixture("cryodrgn/test_ctf.100.pkl"),
        fixture("cryodrgn/toy_rot_trans.pkl"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_ind(&dir.path().join("ind.pkl"), &[0, 1000]);
    drgnfly(dir.path(), &["filter-mrcs", &mrcs, "--ind", "ind.pkl", "-o", "o.mrcs"]).fails_with(&[
        "ind.pkl",
        "entry 1",
        "outside 0..999",
    ]);
    drgnfly(dir.path(), &["filter-pkl", &poses, "--ind", "ind.pkl", "-o", "o.pkl"])
        .fails_with(&["ind.pkl", "outside 0..999"]);
    drgnfly(dir.path(), &["write-star", &mrcs, "--ctf", &ctf100, "-o", "o.star"]).fails_with(&[
        "test_ctf.100.pkl",
        "100 CTF rows",
        "1000 images",
    ]);
    drgnfly(dir.path(), &["write-cs", &ctf100, "--ctf", &ctf100, "-o", "o.cs"])
        .fails_with(&["expected an .mrcs stack"]);
    assert!(!dir.path().join("o.mrcs").exists() && !dir.path().join("o.star").exists());
}

/// A closed stderr or stdout (`drgnfly … 2>&1 | head -1` after head exits) never turns into a panic (exit
/// 101): messages are best effort, and output to a closed pipe ends the command quietly.
#[test]
fn closed_pipes_end_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], close_stdout: bool| {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_drgnfly"));
        cmd.current_dir(dir.path()).args(args).env_remove("RUST_LOG");
        if close_stdout {
            cmd.stdout(writer).stderr(std::process::Stdio::null());
        } else {
            cmd.stderr(writer).stdout(std::process::Stdio::null());
        }
        cmd.status().expect("runs").code()
    };
    // An error message to a closed stderr: still exit 1.
    assert_eq!(run(&["fsc", "missing_a.mrc", "missing_b.mrc"], false), Some(1));
    // A successful command's log lines to a closed stderr, and its table to a closed stdout: exit 0.
    let sim = ["simulate", "--phantom", "hinge", "--states", "1", "-D", "16", "-n", "4", "-o", "sim"];
    assert_eq!(run(&sim, false), Some(0));
    let map = "sim/gt_volumes/vol_000.mrc";
    assert_eq!(run(&["fsc", map, map], true), Some(0));
}

/// One NaN pixel in a stack: downsample and phase-flip stop naming the image and pixel, instead of writing
/// a whole NaN image and exiting 0.
#[test]
fn nan_pixels_stop_downsample_and_phase_flip() {
    use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = MrcStackWriter::create(dir.path().join("p.mrcs"), 8, 8, 1.0, MrcDtype::F32).expect("stack");
    let mut images = vec![0.5f32; 3 * 64];
    images[64 + 8 * 2 + 5] = f32::NAN;
    w.push_many(&images).expect("push");
    w.finish().expect("finish");
    let ctf = vec![[8.0f32, 1.0, 15000.0, 15000.0, 0.0, 300.0, 2.7, 0.1, 0.0]; 3];
    pickle::write_ctf(dir.path().join("ctf.pkl"), &ctf).expect("ctf");
    let want = ["p.mrcs: image 1 has a non-finite pixel", "row 2, column 5"];
    drgnfly(dir.path(), &["downsample", "p.mrcs", "-D", "4", "-o", "d.mrcs"]).fails_with(&want);
    drgnfly(dir.path(), &["phase-flip", "p.mrcs", "ctf.pkl", "-o", "f.mrcs"]).fails_with(&want);
}

/// One run per output directory: a second run while the first holds the directory, or a fresh run over
/// another run's checkpoints, is refused with what to do instead.
#[test]
fn one_run_per_output_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    simulate_phantom(p, (1, 16, 32), &[]);
    let train = ["train-nn", "sim/particles.mrcs", "--poses", "sim/pose.pkl", "-o", "out", "-n", "1"];
    let small = ["--layers", "1", "--dim", "16", "--seed", "1"];
    // Another process holds the directory.
    std::fs::create_dir_all(p.join("out")).expect("mkdir");
    let lock = std::fs::File::create(p.join("out/.drgnfly.lock")).expect("lock file");
    lock.try_lock().expect("lock");
    drgnfly(p, &[&train[..], &small[..]].concat()).fails_with(&["another drgnfly run", "out"]);
    drop(lock);
    drgnfly(p, &[&train[..], &small[..]].concat()).ok();
    // A fresh run over those checkpoints is refused; resuming them is fine.
    drgnfly(p, &[&train[..], &small[..]].concat()).fails_with(&["weights.1.safetensors", "--load latest"]);
    let more = ["train-nn", "sim/particles.mrcs", "--poses", "sim/pose.pkl", "-o", "out", "-n", "2"];
    drgnfly(p, &[&more[..], &small[..], &["--load", "latest"]].concat()).ok();
    // --load latest into a directory without checkpoints fails before writing anything.
    std::fs::create_dir_all(p.join("empty")).expect("mkdir");
    let empty = ["train-nn", "sim/particles.mrcs", "--poses", "sim/pose.pkl", "-o", "empty", "-n", "2"];
    drgnfly(p, &[&empty[..], &small[..], &["--load", "latest"]].concat())
        .fails_with(&["--load latest", "empty"]);
    assert!(!p.join("empty/config.yaml").exists() && !p.join("empty/run.log").exists());
}

/// `analyze` on its own fails when its volumes cannot be generated (after writing everything else), rather
/// than warning and exiting 0.
#[test]
fn analyze_fails_when_volume_generation_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    simulate_phantom(p, (2, 16, 40), &[]);
    let mut train =
        vec!["train-vae", "sim/particles.mrcs", "--poses", "sim/pose.pkl", "-o", "out", "-n", "1"];
    train.extend([
        "--zdim",
        "1",
        "--enc-layers",
        "1",
        "--enc-dim",
        "16",
        "--dec-layers",
        "1",
        "--dec-dim",
        "16",
    ]);
    train.extend(["--seed", "1", "--no-analysis"]);
    drgnfly(p, &train).ok();
    std::fs::write(p.join("out/weights.1.safetensors"), b"not a checkpoint").expect("corrupt");
    drgnfly(p, &["analyze", "out", "1", "--ksample", "2"])
        .fails_with(&["volume generation failed", "--skip-vol"]);
    assert!(p.join("out/analyze.1/report.html").is_file(), "the rest of the analysis is written");
    drgnfly(p, &["analyze", "out", "1", "--ksample", "2", "--skip-vol"]).ok();
}

/// Ctrl-C (SIGINT) stops training after the batch in progress: exit 130, the checkpoint to resume from
/// named, and `--load latest` carries on from it.
#[test]
fn interrupted_training_says_how_to_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    simulate_phantom(p, (1, 16, 64), &[]);
    let args = ["--threads", "1", "train-nn", "sim/particles.mrcs", "--poses", "sim/pose.pkl", "-o", "out"];
    let small = ["--layers", "1", "--dim", "16", "--seed", "1", "-b", "4"];
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_drgnfly"))
        .current_dir(p)
        .args(args.iter().chain(&small).chain(&["-n", "100000"]))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let first = p.join("out/weights.1.safetensors");
    let t0 = std::time::Instant::now();
    while !first.exists() {
        assert!(t0.elapsed().as_secs() < 60, "no checkpoint after a minute");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill =
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted during epoch") && stderr.contains("--load latest"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Resuming works from the newest checkpoint, for one more epoch.
    let last = std::fs::read_dir(p.join("out"))
        .expect("outdir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("weights.")?.strip_suffix(".safetensors")?.parse::<usize>().ok()
        })
        .max()
        .expect("a checkpoint");
    let next = (last + 1).to_string();
    let resumed: Vec<&str> = args.iter().chain(&small).copied().collect();
    drgnfly(p, &[&resumed[..], &["-n", &next, "--load", "latest"]].concat()).ok();
    assert!(p.join(format!("out/weights.{next}.safetensors")).is_file());
}

/// Sizes from the command line or a config.yaml that cannot fit in memory are clear errors (exit 1), never
/// an allocation abort (exit 134); a batch larger than the data is capped.
#[test]
fn sizes_beyond_memory_are_errors_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drgnfly(d, &["simulate", "--phantom", "hinge", "-D", "100000", "-n", "2", "-o", "big"])
        .fails_with(&["100000³", "lower -D"]);
    drgnfly(d, &["simulate", "--phantom", "hinge", "-D", "16", "-n", "100000000000", "-o", "many"])
        .fails_with(&["100000000000 particles", "lower -n"]);
    simulate_phantom(d, (2, 16, 20), &[]);
    let train = ["train-vae", "sim/particles.mrcs", "--poses", "sim/pose.pkl", "--zdim", "1", "-n", "1"];
    drgnfly(d, &[&train[..], &["--dec-dim", "1000000", "-o", "wide"]].concat())
        .fails_with(&["width 1000000", "--dec-dim"]);
    let small = ["--enc-dim", "8", "--dec-dim", "8", "--no-analysis"];
    drgnfly(d, &[&train[..], &small[..], &["-b", "1000000", "-o", "batch"]].concat()).ok();

    // Under a 4 GB address-space limit, a positional encoding of 100000 frequencies (a 2.5 GB first layer)
    // is refused with the numbers, whatever the machine's RAM.
    let pe = [&train[..], &["--pe-dim", "100000", "-o", "pe"]].concat();
    drgnfly_with_address_limit(d, 4_000_000, &pe).fails_with(&["600001 inputs", "--pe-dim"]);

    // eval-vol with a config.yaml asking for an encoder of width 10⁶: refused before building the model.
    drgnfly(d, &[&train[..], &small[..], &["-o", "vae"]].concat()).ok();
    let config = std::fs::read_to_string(d.join("vae/config.yaml")).unwrap();
    let hostile = config.replace("qdim: 8", "qdim: 1000000").replace("pdim: 8", "pdim: 1000000");
    assert_ne!(hostile, config);
    std::fs::write(d.join("vae/config.yaml"), hostile).unwrap();
    let eval = ["eval-vol", "vae/weights.1.safetensors", "-c", "vae/config.yaml", "-z", "0", "-o", "v.mrc"];
    drgnfly(d, &eval).fails_with(&["width 1000000"]);

    // A config.yaml nested 100k levels deep is refused at once, not parsed for minutes.
    std::fs::write(
        d.join("vae/config.yaml"),
        format!("deep: {}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    drgnfly(d, &eval).fails_with(&["config.yaml", "nested more than 32 levels"]);
}

/// An output path that is a device, FIFO or directory is refused, never replaced; a symlink is followed
/// and kept. A failed add-psize copy names the user's file and leaves no temporary file.
#[cfg(unix)]
#[test]
fn outputs_never_replace_what_is_not_a_regular_file() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drgnfly(d, &["select-random", "10", "-n", "3", "-o", "/dev/null"])
        .fails_with(&["/dev/null", "a character device, not a regular file"]);
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null was replaced");
    std::fs::create_dir(d.join("a_dir")).unwrap();
    drgnfly(d, &["select-random", "10", "-n", "3", "-o", "a_dir"]).fails_with(&["a_dir", "a directory"]);

    std::os::unix::fs::symlink("real.pkl", d.join("link.pkl")).unwrap();
    drgnfly(d, &["select-random", "10", "-n", "3", "-o", "link.pkl"]).ok();
    assert!(std::fs::symlink_metadata(d.join("link.pkl")).unwrap().file_type().is_symlink());
    assert_eq!(drgnfly_io::pickle::load_array(d.join("real.pkl")).unwrap().len(), 3);

    std::fs::write(d.join("not.mrc"), b"short").unwrap();
    let out = drgnfly(d, &["add-psize", "not.mrc", "--Apix", "1.5", "-o", "copy.mrc"]);
    assert!(out.stderr.contains("not.mrc") && !out.stderr.contains(".tmp"), "{}", out.stderr);
    out.fails_with(&["not.mrc"]);
    let leftovers: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.contains("drgnfly-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(!d.join("copy.mrc").exists());
}

/// A STAR or .cs particle table without rows is an error, not an empty pose.pkl/ctf.pkl.
#[test]
fn particle_tables_without_rows_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let star =
        "data_particles\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n_rlnAngleTilt #3\n_rlnAnglePsi #4\n";
    std::fs::write(d.join("empty.star"), star).unwrap();
    for cmd in ["parse-pose-star", "parse-ctf-star"] {
        drgnfly(d, &[cmd, "empty.star", "-D", "64", "--Apix", "1", "-o", "out.pkl"])
            .fails_with(&["empty.star", "holds no particles"]);
    }
    let mut b = StructuredBuilder::new(0);
    b.add("alignments3D/pose", &[3], Column::F32(vec![])).unwrap();
    b.add("alignments3D/shift", &[2], Column::F32(vec![])).unwrap();
    b.write(d.join("empty.cs")).unwrap();
    drgnfly(d, &["parse-pose-csparc", "empty.cs", "-D", "64", "-o", "pose.pkl"])
        .fails_with(&["empty.cs", "holds no particles"]);
    assert!(!d.join("out.pkl").exists() && !d.join("pose.pkl").exists());
}

/// A .txt list of 150 stacks of 33 MB each (sparse files) under a 4 GB address-space limit: stacks are
/// mapped when read, not all at open, so picking 3 images works (it failed with ENOMEM when every stack was
/// mapped up front).
#[cfg(unix)]
#[test]
fn many_large_stacks_fit_under_an_address_space_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drgnfly(d, &["simulate", "--phantom", "hinge", "-D", "64", "-n", "1", "--seed", "0", "-o", "one"]).ok();
    let mut header = std::fs::read(d.join("one/particles.mrcs")).unwrap();
    header.truncate(1024);
    header[8..12].copy_from_slice(&2048i32.to_le_bytes()); // nz
    header[36..40].copy_from_slice(&2048i32.to_le_bytes()); // mz
    let mut list = String::new();
    for s in 0..150 {
        let path = d.join(format!("st{s}.mrcs"));
        std::fs::write(&path, &header).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1024 + 2048 * 64 * 64 * 4)
            .unwrap();
        list.push_str(&format!("st{s}.mrcs\n"));
    }
    std::fs::write(d.join("list.txt"), list).unwrap();
    std::fs::write(d.join("ind.txt"), "0\n5000\n300000\n").unwrap();
    let filter = ["filter-mrcs", "list.txt", "--ind", "ind.txt", "-o", "out.mrcs"];
    drgnfly_with_address_limit(d, 4_000_000, &filter).ok();
    assert_eq!(drgnfly_io::mrc::MrcStack::open(d.join("out.mrcs")).unwrap().len(), 3);
}

/// 1500 phantom states at D = 32 need 1.5 GB of projectors held together (it aborted under this limit):
/// `simulate` builds them a group at a time that fits, the clean images waiting in a scratch file that
/// leaves nothing behind.
#[cfg(unix)]
#[test]
fn simulating_many_states_fits_under_an_address_space_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = ["simulate", "--phantom", "hinge", "--states", "1500", "-D", "32", "-n", "2000", "-o", "many"];
    drgnfly_with_address_limit(d, 1_200_000, &sim).ok();
    assert_eq!(drgnfly_io::mrc::MrcStack::open(d.join("many/particles.mrcs")).unwrap().len(), 2000);
    assert_eq!(std::fs::read_dir(d.join("many/gt_volumes")).unwrap().count(), 1500);
    let mut names: Vec<String> = std::fs::read_dir(d.join("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    let want = [
        "ctf.pkl",
        "gt_volumes",
        "labels.pkl",
        "particles.mrcs",
        "particles.star",
        "pose.pkl",
        "simulate.json",
    ];
    assert_eq!(names, want);
}

/// A checkpoint that cannot be written (here z.2.pkl is in the way, as a full disk would be) names the file
/// and the epoch and says the previous checkpoint is complete; resuming from it works.
#[test]
fn a_failed_checkpoint_names_the_epoch_and_the_way_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate_phantom(d, (2, 16, 40), &[]);
    let train = [
        "train-vae",
        "sim/particles.mrcs",
        "--poses",
        "sim/pose.pkl",
        "--zdim",
        "1",
        "-n",
        "3",
        "--enc-dim",
        "8",
        "--dec-dim",
        "8",
        "--no-analysis",
        "--seed",
        "1",
        "-o",
        "run",
    ];
    std::fs::create_dir_all(d.join("run/z.2.pkl")).unwrap();
    drgnfly(d, &train).fails_with(&["z.2.pkl", "checkpoint of epoch 2 failed", "--load latest"]);
    assert!(d.join("run/weights.1.safetensors").is_file() && !d.join("run/weights.2.safetensors").exists());
    std::fs::remove_dir(d.join("run/z.2.pkl")).unwrap();
    drgnfly(d, &[&train[..], &["--load", "latest"]].concat()).ok();
    assert!(d.join("run/z.3.pkl").is_file());
}
