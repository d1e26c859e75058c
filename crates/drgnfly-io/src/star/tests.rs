use super::*;
use crate::fixtures::fixture;

fn parse(text: &str) -> Result<StarFile> {
    StarFile::parse("t.star", text.to_string())
}

/// Block shapes as Python `starfile` 0.5.13 reads every STAR file in shared/data (aspire/sample.star
/// excluded: it is broken on purpose). `(name, pairs, Some((rows, cols)))` per block; `starfile` reports a
/// block as either pairs or one loop, as every block here is.
#[allow(clippy::type_complexity)]
const GOLDEN: &[(&str, &[(&str, usize, Option<(usize, usize)>)])] = &[
    (
        "aspire/sample_data_model.star",
        &[
            ("model_general", 22, None),
            ("model_classes", 0, Some((1, 4))),
            ("model_class_1", 0, Some((76, 8))),
            ("model_groups", 0, Some((1, 4))),
            ("model_group_1", 0, Some((76, 3))),
            ("model_pdf_orient_class_1", 0, Some((192, 1))),
        ],
    ),
    ("aspire/sample_incomplete_ctf_params.star", &[("model_class_1", 0, Some((1, 28)))]),
    ("aspire/sample_particles_relion30.star", &[("model_class_1", 0, Some((17, 29)))]),
    (
        "aspire/sample_particles_relion31.star",
        &[("optics", 0, Some((2, 8))), ("particles", 0, Some((17, 26)))],
    ),
    ("aspire/sample_relion_data.star", &[("model_class_1", 0, Some((17, 29)))]),
    ("aspire/sample_relion_one_image.star", &[("model_class_1", 0, Some((1, 29)))]),
    ("aspire/sample_relion_symmetry_group_D4.star", &[("model_class_1", 0, Some((17, 30)))]),
    ("cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star", &[("images", 0, Some((5, 22)))]),
    ("cryodrgn/relion31.star", &[("optics", 0, Some((1, 9))), ("particles", 0, Some((5, 26)))]),
    ("cryodrgn/relion31.v2.star", &[("particles", 0, Some((5, 26))), ("optics", 0, Some((1, 9)))]),
    ("cryodrgn/sta_testing.star", &[("", 0, Some((219, 20)))]),
    ("cryodrgn/sta_testing_bin8.star", &[("", 0, Some((219, 20)))]),
    ("cryodrgn/toy.star", &[("images", 0, Some((1000, 8)))]),
    ("cryodrgn/toy_projections.star", &[("images", 0, Some((1000, 9)))]),
    ("cryodrgn/toy_projections_dir.star", &[("", 0, Some((1000, 9)))]),
    ("cryojax/test_starfile.star", &[("particles", 0, Some((3, 16))), ("optics", 0, Some((1, 6)))]),
    ("starfile/basic_double_quote.star", &[("", 4, None)]),
    ("starfile/basic_single_quote.star", &[("", 4, None)]),
    (
        "starfile/default_pipeline.star",
        &[
            ("pipeline_general", 1, None),
            ("pipeline_processes", 0, Some((31, 4))),
            ("pipeline_nodes", 0, Some((74, 2))),
            ("pipeline_input_edges", 0, Some((48, 2))),
            ("pipeline_output_edges", 0, Some((72, 2))),
        ],
    ),
    ("starfile/empty_loop.star", &[("", 0, Some((0, 1)))]),
    ("starfile/loop_double_quote.star", &[("", 0, Some((2, 8)))]),
    ("starfile/loop_single_quote.star", &[("", 0, Some((2, 8)))]),
    ("starfile/one_loop.star", &[("", 0, Some((16, 12)))]),
    (
        "starfile/postprocess.star",
        &[("general", 6, None), ("fsc", 0, Some((49, 7))), ("guinier", 0, Some((49, 3)))],
    ),
    ("starfile/relion_tutorial/run_it025_optimiser_2D.star", &[("optimiser_general", 84, None)]),
    ("starfile/relion_tutorial/run_it025_optimiser_3D.star", &[("optimiser_general", 84, None)]),
    ("starfile/relion_tutorial/run_it025_sampling_2D.star", &[("sampling_general", 12, None)]),
    (
        "starfile/relion_tutorial/run_it025_sampling_3D.star",
        &[("sampling_general", 15, None), ("sampling_directions", 0, Some((192, 2)))],
    ),
    (
        "starfile/rln3.1_data_style.star",
        &[("block_1", 0, Some((1, 7))), ("block_2", 0, Some((2, 5))), ("block_3", 0, Some((2, 5)))],
    ),
    (
        "starfile/single_line_end_of_multiblock.star",
        &[("block_1", 0, Some((2, 5))), ("block_2", 0, Some((1, 5)))],
    ),
    (
        "starfile/single_line_middle_of_multiblock.star",
        &[("block_1", 0, Some((1, 5))), ("block_2", 0, Some((1, 5)))],
    ),
    ("starfile/two_basic_blocks.star", &[("block_0", 3, None), ("block_1", 3, None)]),
    (
        "starfile/two_single_line_loop_blocks.star",
        &[("block_0", 0, Some((1, 3))), ("block_1", 0, Some((1, 3)))],
    ),
];

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn every_shared_star_file_has_the_shapes_starfile_reads() {
    // Every .star in MANIFEST.tsv is covered (sample.star has its own test).
    if let Some(manifest) = fixture("MANIFEST.tsv") {
        let text = std::fs::read_to_string(manifest).unwrap();
        for line in text.lines() {
            let name = line.split('\t').next().unwrap_or("");
            if name.ends_with(".star") && name != "aspire/sample.star" {
                assert!(GOLDEN.iter().any(|(f, _)| *f == name), "{name} missing from GOLDEN");
            }
        }
    }
    for (file, blocks) in GOLDEN {
        let Some(p) = fixture(file) else { continue };
        let star = StarFile::open(&p).unwrap_or_else(|e| panic!("{file}: {e}"));
        let names: Vec<&str> = star.blocks().iter().map(Block::name).collect();
        let want: Vec<&str> = blocks.iter().map(|b| b.0).collect();
        assert_eq!(names, want, "{file}");
        for (b, (name, npairs, table)) in star.blocks().iter().zip(blocks.iter()) {
            assert_eq!(b.pairs().len(), *npairs, "{file} data_{name} pairs");
            match table {
                Some((rows, cols)) => {
                    assert_eq!(b.loops().len(), 1, "{file} data_{name}");
                    assert_eq!((b.loops()[0].len(), b.loops()[0].ncols()), (*rows, *cols), "{file} {name}");
                }
                None => assert!(b.loops().is_empty(), "{file} data_{name}"),
            }
        }
    }
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn values_and_versions_of_real_files() {
    let p = crate::fixture_or_skip!("cryodrgn/relion31.star");
    let star = StarFile::open(&p).unwrap();
    assert_eq!(star.blocks()[0].version(), Some(30001));
    let optics = &star.blocks()[0].loops()[0];
    assert_eq!(optics.get(0, 1), Some("opticsGroup1"));
    assert_eq!(optics.column_f64("_rlnImagePixelSize").unwrap(), vec![2.806]);
    assert_eq!(optics.column_i64("rlnImageSize").unwrap(), vec![256]);

    let p = crate::fixture_or_skip!("cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star");
    let star = StarFile::open(&p).unwrap();
    let t = &star.block("images").unwrap().loops()[0];
    assert_eq!(star.blocks()[0].version(), None);
    assert_eq!(t.column_f64("_rlnDefocusV").unwrap()[4], 15297.2);
    assert_eq!(t.column_f64("_rlnAngleRot").unwrap()[3], -82.83045);
    let name = t.column_index("_rlnImageName").unwrap();
    assert_eq!(t.get(2, name), Some("000003@Extract/job012/FinalRefinement-OriginalParticles-PfCRT.mrcs"));
    // 1-based rows; data starts on line 28 (after 5 preamble lines and 22 column names).
    assert_eq!(t.line_of_row(0), Some(28));

    let p = crate::fixture_or_skip!("starfile/postprocess.star");
    let star = StarFile::open(&p).unwrap();
    let general = star.block("general").unwrap();
    assert_eq!(general.pair("_rlnFinalResolution").and_then(|v| v.parse::<f64>().ok()), Some(16.363636));
    assert_eq!(star.block("fsc").unwrap().loops()[0].column_f64("_rlnResolution").unwrap()[1], 0.001389);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn quoted_values_keep_their_spaces() {
    for f in ["starfile/basic_single_quote.star", "starfile/basic_double_quote.star"] {
        let p = crate::fixture_or_skip!(f);
        let star = StarFile::open(&p).unwrap();
        let b = &star.blocks()[0];
        assert_eq!(b.pair("_no_quote_string"), Some("noquote"));
        assert_eq!(b.pair("quote_string"), Some("quote string"));
        assert_eq!(b.pair("whitespace_string"), Some(" "));
        assert_eq!(b.pair("empty_string"), Some(""));
    }
    for f in ["starfile/loop_single_quote.star", "starfile/loop_double_quote.star"] {
        let p = crate::fixture_or_skip!(f);
        let star = StarFile::open(&p).unwrap();
        let t = &star.blocks()[0].loops()[0];
        let r0: Vec<&str> = t.row(0).collect();
        assert_eq!(r0, ["noquote", "quote string", " ", "", "4.0", "5.0", "6.0", ""]);
        let r1: Vec<&str> = t.row(1).collect();
        assert_eq!(r1, ["noquote", "quote string", " ", "", "noquote", "", "7.0", "test"]);
    }
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn sample_star_names_its_bad_row() {
    let p = crate::fixture_or_skip!("aspire/sample.star");
    let e = StarFile::open(&p).unwrap_err().to_string();
    // The "Mars" row is line 20 and has 5 values for 4 columns.
    assert!(e.contains("line 20"), "{e}");
    assert!(e.contains("5 values") && e.contains("4 columns"), "{e}");
}

#[test]
fn grammar_edge_cases() {
    let s = parse(
        "# version 50001\ndata_\n_a 1\nloop_\n_x #1\n_y\n'it's' \"b c\"#x\"\n 2 3 # trailing\n\nloop_ _p _q\n\
         stop_\n_after  'v'\n_text\n;line one\n line two\n;\ndata_second\nloop_\n_z\n",
    )
    .unwrap();
    assert_eq!(s.blocks().len(), 2);
    let b = &s.blocks()[0];
    assert_eq!((b.name(), b.version()), ("", Some(50001)));
    assert_eq!(b.pair("a"), Some("1"));
    let t = &b.loops()[0];
    assert_eq!(t.columns(), ["_x", "_y"]);
    // A quote closes only before whitespace or the line end: `'it's'` is `it's`, and `"b c"#x"` is
    // `b c"#x` (the `#` is inside the quoted token, not a comment).
    assert_eq!(t.get(0, 0), Some("it's"));
    assert_eq!(t.get(0, 1), Some("b c\"#x"));
    assert_eq!(t.line_of_row(1), Some(8));
    assert!(t.column_f64("_y").unwrap_err().to_string().contains("row 1 (line 7)"));
    assert!(t.column_f64("_x").unwrap_err().to_string().contains("`it's`"));
    assert_eq!(b.loops()[1].columns(), ["_p", "_q"]);
    assert!(b.loops()[1].is_empty());
    assert_eq!(b.pair("after"), Some("v"));
    assert_eq!(b.pair("text"), Some("line one\n line two"));
    assert_eq!(s.blocks()[1].name(), "second");
    assert_eq!(s.blocks()[1].loops()[0].len(), 0);
}

#[test]
fn bad_grammar_is_reported_with_its_line() {
    let cases = [
        ("data_\nloop_\n_a\n_b\n1\n", "line 5"),
        ("data_\nloop_\n_a\n'open\n", "line 4"),
        ("_a 1\n", "line 1"),
        ("data_\n1 2\n", "line 2"),
        ("data_\n_a\n", "line 2"),
        ("data_\n_a 1 2\n", "line 2"),
        ("data_\n_a\n;never closed\n", "line 3"),
        ("data_ x\n", "line 1"),
        ("save_frame\n", "line 1"),
        ("data_\nloop_\n_a\n_b\ndaté\n", "line 5"),
    ];
    for (text, want) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("t.star: ") && e.contains(want), "{text:?} → {e}");
    }
}

#[test]
fn number_errors_name_row_line_and_column() {
    let s = parse("data_x\nloop_\n_a\n_b\n1 2\n# comment\n3 oops\n").unwrap();
    let t = &s.blocks()[0].loops()[0];
    let e = t.column_f64("_b").unwrap_err().to_string();
    assert!(e.contains("data_x row 2 (line 7), column _b") && e.contains("`oops`"), "{e}");
    let e = t.column_f64("_c").unwrap_err().to_string();
    assert!(e.contains("no column _c") && e.contains("_a _b"), "{e}");
    assert_eq!(t.column_i64("a").unwrap(), vec![1, 3]);
}

#[test]
fn write_then_read_round_trips() {
    let mut star = StarFile::new("out.star");
    let mut b = Block::new("optics");
    b.set_version(Some(30001));
    b.push_pair("note", "two words");
    b.push_pair("_text", "multi\nline");
    let mut lb = LoopBuilder::new(["_rlnImageName", "rlnMicrographName", "_rlnVoltage"]);
    lb.push_row(&["000001@a b.mrcs", "", "300"]).unwrap();
    lb.push_row(&["000002@x.mrcs", "it's \"q\"", "_under"]).unwrap();
    assert!(lb.push_row(&["too", "few"]).is_err());
    b.push_loop(lb.finish());
    star.push_block(b);
    star.push_block(Block::new(""));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.star");
    write_star(&path, &star).unwrap();
    let back = StarFile::open(&path).unwrap();
    assert_eq!(back.blocks().len(), 2);
    let b = &back.blocks()[0];
    assert_eq!((b.name(), b.version()), ("optics", Some(30001)));
    assert_eq!(b.pair("note"), Some("two words"));
    assert_eq!(b.pair("text"), Some("multi\nline"));
    let t = &b.loops()[0];
    assert_eq!(t.columns(), ["_rlnImageName", "_rlnMicrographName", "_rlnVoltage"]);
    let rows: Vec<Vec<&str>> = (0..t.len()).map(|r| t.row(r).collect()).collect();
    assert_eq!(rows, [["000001@a b.mrcs", "", "300"], ["000002@x.mrcs", "it's \"q\"", "_under"]]);
    assert_eq!(back.blocks()[1].name(), "");

    // Selecting rows copies them in order.
    let sel = t.select_rows(&[1, 1, 0]).unwrap();
    assert_eq!(sel.get(2, 0), Some("000001@a b.mrcs"));
    assert_eq!(sel.get(0, 1), Some("it's \"q\""));
    assert!(t.select_rows(&[2]).unwrap_err().to_string().contains("index 2 is out of range"));
}

#[test]
fn unwritable_values_are_refused_before_writing() {
    let mut star = StarFile::new("x");
    let mut b = Block::new("a");
    let mut lb = LoopBuilder::new(["_v"]);
    lb.push_row(&["a\nb"]).unwrap();
    b.push_loop(lb.finish());
    star.push_block(b);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.star");
    let e = write_star(&path, &star).unwrap_err().to_string();
    assert!(e.contains("row 1, column _v"), "{e}");
    assert!(!path.exists());
}
