use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::fixture_or_skip;
use crate::mrc::{MrcDtype, MrcStackWriter};

fn toy_stack() -> Option<MrcStack> {
    crate::fixtures::fixture("cryodrgn/toy_projections.mrcs").map(|p| MrcStack::open(p).unwrap())
}

/// A small stack of `n` images of `d`×`d` where every pixel of image i equals i.
fn write_numbered_stack(path: &Path, n: usize, d: usize) {
    let mut w = MrcStackWriter::create(path, d, d, 1.0, MrcDtype::F32).unwrap();
    for i in 0..n {
        w.push(&vec![i as f32; d * d]).unwrap();
    }
    w.finish().unwrap();
}

fn star_with_names(path: &Path, names: &[String]) {
    let mut text = String::from("data_particles\n\nloop_\n_rlnImageName #1\n");
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn mrcs_txt_and_star_agree_image_by_image() {
    let mrcs = fixture_or_skip!("cryodrgn/toy_projections.mrcs");
    let txt = fixture_or_skip!("cryodrgn/toy_projections.txt");
    let star = fixture_or_skip!("cryodrgn/toy_projections.star");
    let stack = toy_stack().unwrap();
    let a = ParticleSource::open(&mrcs, &SourceOptions::default()).unwrap();
    let b = ParticleSource::open(&txt, &SourceOptions::default()).unwrap();
    let c = ParticleSource::open(&star, &SourceOptions::default()).unwrap();
    assert_eq!((a.len(), a.box_size(), a.kind()), (1000, 30, SourceKind::Mrcs));
    assert_eq!((b.len(), b.kind()), (1000, SourceKind::StackList));
    assert_eq!((c.len(), c.kind()), (1000, SourceKind::Star));
    for i in [0, 1, 499, 999] {
        let want = stack.read_image(i).unwrap();
        assert_eq!(a.read(i).unwrap(), want);
        assert_eq!(b.read(i).unwrap(), want);
        assert_eq!(c.read(i).unwrap(), want);
    }
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn two_line_stack_list_concatenates() {
    let txt = fixture_or_skip!("cryodrgn/toy_projections_2.txt");
    let src = ParticleSource::open(&txt, &SourceOptions::default()).unwrap();
    let stack = toy_stack().unwrap();
    assert_eq!(src.len(), 2000);
    assert_eq!(src.read(1000 + 7).unwrap(), stack.read_image(7).unwrap());
    assert_eq!(src.read(999).unwrap(), stack.read_image(999).unwrap());
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn datadir_resolves_split_stacks() {
    let star = fixture_or_skip!("cryodrgn/toy_projections_dir.star");
    let datadir = fixture_or_skip!("cryodrgn/toy_datadir");
    // Without --datadir the stacks are not beside the STAR file: the error names them and the fix.
    let err = ParticleSource::open(&star, &SourceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--datadir"), "{err}");
    let opts = SourceOptions { datadir: Some(datadir), ind: None };
    let src = ParticleSource::open(&star, &opts).unwrap();
    assert_eq!(src.len(), 1000);
    // Each row must come from the stack it names, at its 1-based index, found through --datadir.
    let relion = RelionParticles::open(&star).unwrap();
    let dd = fixture_or_skip!("cryodrgn/toy_datadir");
    for row in [0usize, 5, 899, 900, 999] {
        let name = relion.image_name(row).unwrap();
        let stack = MrcStack::open(dd.join(name.path)).unwrap();
        assert_eq!(src.read(row).unwrap(), stack.read_image(name.index as usize).unwrap(), "row {row}");
    }
    // Row 0 is `000001@toy_images_b.mrcs`, the first toy image.
    assert_eq!(src.read(0).unwrap(), toy_stack().unwrap().read_image(0).unwrap());
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn selection_maps_positions_to_rows_and_is_range_checked() {
    let mrcs = fixture_or_skip!("cryodrgn/toy_projections.mrcs");
    let toy = toy_stack().unwrap();
    let opts = SourceOptions { datadir: None, ind: Some(vec![10, 3, 999]) };
    let src = ParticleSource::open(&mrcs, &opts).unwrap();
    assert_eq!((src.len(), src.n_rows()), (3, 1000));
    assert_eq!(src.row_of(1), Some(3));
    assert_eq!(src.read(2).unwrap(), toy.read_image(999).unwrap());
    assert!(src.read(3).is_err());

    let bad = SourceOptions { datadir: None, ind: Some(vec![1, 1000, 5000]) };
    let err = ParticleSource::open(&mrcs, &bad).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }));
    assert!(err.to_string().contains("2 selected indices are out of range"), "{err}");
}

#[test]
fn star_rows_past_the_end_of_a_stack_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    write_numbered_stack(&dir.path().join("s.mrcs"), 3, 8);
    let star = dir.path().join("p.star");
    let names: Vec<String> = [1, 3, 4, 9].iter().map(|i| format!("{i:06}@s.mrcs")).collect();
    star_with_names(&star, &names);
    let err = ParticleSource::open(&star, &SourceOptions::default()).unwrap_err();
    match &err {
        Error::Many(v) => assert_eq!(v.len(), 2),
        other => panic!("expected two problems, got {other}"),
    }
    assert!(err.to_string().contains("row 3"), "{err}");
    assert!(err.to_string().contains("holds 3 images"), "{err}");
}

#[test]
fn missing_stacks_and_mismatched_boxes_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_numbered_stack(&dir.path().join("a.mrcs"), 2, 8);
    write_numbered_stack(&dir.path().join("b.mrcs"), 2, 10);
    let txt = dir.path().join("list.txt");
    std::fs::write(&txt, "a.mrcs\nmissing.mrcs\n").unwrap();
    let err = ParticleSource::open(&txt, &SourceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing.mrcs"), "{err}");
    std::fs::write(&txt, "a.mrcs\nb.mrcs\n").unwrap();
    let err = ParticleSource::open(&txt, &SourceOptions::default()).unwrap_err();
    assert!(err.to_string().contains("same box size"), "{err}");
    std::fs::write(dir.path().join("x.foo"), "").unwrap();
    let err = ParticleSource::open(dir.path().join("x.foo"), &SourceOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }));
}

#[test]
fn truncated_stack_fails_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.mrcs");
    write_numbered_stack(&p, 4, 8);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let err = ParticleSource::open(&p, &SourceOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
}

#[test]
fn streams_cover_every_image_once_in_order_or_shuffled() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n.mrcs");
    let (n, d) = (103, 4);
    write_numbered_stack(&p, n, d);
    let src = Arc::new(ParticleSource::open(&p, &SourceOptions::default()).unwrap());

    let ordered: Vec<usize> = src
        .stream(&StreamOptions {
            batch_size: 10,
            chunk_size: 30,
            shuffle_seed: None,
            prefetch_chunks: 1,
            shard: (0, 1),
        })
        .flat_map(|b| b.unwrap().positions)
        .collect();
    assert_eq!(ordered, (0..n).collect::<Vec<_>>());

    let opts = StreamOptions {
        batch_size: 8,
        chunk_size: 24,
        shuffle_seed: Some(7),
        prefetch_chunks: 2,
        shard: (0, 1),
    };
    let stream = src.stream(&opts);
    assert_eq!(stream.n_batches(), n.div_ceil(8));
    let mut seen = Vec::new();
    for batch in stream {
        let batch = batch.unwrap();
        for (k, &pos) in batch.positions.iter().enumerate() {
            // Every pixel of image i is i: the image travelled with its position.
            assert!(batch.images[k * d * d..(k + 1) * d * d].iter().all(|&v| v == pos as f32));
        }
        seen.extend(batch.positions);
    }
    assert_ne!(seen, (0..n).collect::<Vec<_>>(), "shuffled order should differ");
    let again: Vec<usize> = src.stream(&opts).flat_map(|b| b.unwrap().positions).collect();
    assert_eq!(seen, again, "same seed, same order");
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
}

/// Three shards of a shuffled stream are the unsharded batches cut in three contiguous parts, each with
/// its own images (and the last, short batch shared too).
#[test]
fn sharded_streams_split_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n.mrcs");
    let (n, d) = (103, 4);
    write_numbered_stack(&p, n, d);
    let src = Arc::new(ParticleSource::open(&p, &SourceOptions::default()).unwrap());
    let opts = StreamOptions {
        batch_size: 8,
        chunk_size: 24,
        shuffle_seed: Some(3),
        prefetch_chunks: 1,
        shard: (0, 1),
    };
    let whole: Vec<Batch> = src.stream(&opts).map(|b| b.unwrap()).collect();
    let shards: Vec<Vec<Batch>> =
        (0..3).map(|r| src.stream(&opts.clone().sharded(r, 3)).map(|b| b.unwrap()).collect()).collect();
    for (bi, w) in whole.iter().enumerate() {
        assert_eq!(w.batch, w.positions);
        let mut joined: Vec<usize> = Vec::new();
        for (r, shard) in shards.iter().enumerate() {
            let b = &shard[bi];
            assert_eq!(b.batch, w.positions, "every rank sees the whole batch's positions");
            assert_eq!(b.offset, joined.len(), "rank {r}'s share starts where the previous ended");
            for (k, &pos) in b.positions.iter().enumerate() {
                assert!(b.images[k * d * d..(k + 1) * d * d].iter().all(|&v| v == pos as f32));
            }
            joined.extend(&b.positions);
        }
        assert_eq!(joined, w.positions);
    }
    assert_eq!(whole.last().unwrap().positions.len(), 103 % 8);
}

#[test]
fn stream_with_selection_reads_selected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n.mrcs");
    write_numbered_stack(&p, 50, 4);
    let ind = vec![49, 0, 7, 8, 9, 20];
    let src =
        Arc::new(ParticleSource::open(&p, &SourceOptions { datadir: None, ind: Some(ind.clone()) }).unwrap());
    let batches: Vec<Batch> = src.stream(&StreamOptions::ordered(4, 4)).map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 2);
    let values: Vec<f32> = batches.iter().flat_map(|b| b.images.chunks(16).map(|im| im[0])).collect();
    assert_eq!(values, ind.iter().map(|&i| i as f32).collect::<Vec<_>>());
}

#[test]
fn dropping_a_stream_early_stops_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n.mrcs");
    write_numbered_stack(&p, 200, 4);
    let src = Arc::new(ParticleSource::open(&p, &SourceOptions::default()).unwrap());
    let mut stream = src.stream(&StreamOptions {
        batch_size: 2,
        chunk_size: 10,
        shuffle_seed: None,
        prefetch_chunks: 1,
        shard: (0, 1),
    });
    assert!(stream.next().is_some());
    drop(stream); // must not hang
}

/// A list of more stacks than may be mapped at once reads every image right (in order, backwards and
/// streamed) while never mapping more than `MAPPED_STACKS` of them.
#[test]
fn many_stacks_are_mapped_on_demand_and_unmapped_least_recent_first() {
    let dir = tempfile::tempdir().unwrap();
    let n_stacks = MAPPED_STACKS + 36;
    let mut list = String::new();
    for s in 0..n_stacks {
        write_numbered_stack(&dir.path().join(format!("s{s}.mrcs")), 3, 4);
        list.push_str(&format!("s{s}.mrcs\n"));
    }
    let txt = dir.path().join("all.txt");
    std::fs::write(&txt, list).unwrap();
    let src = ParticleSource::open(&txt, &SourceOptions::default()).unwrap();
    assert_eq!(src.stacks.mapped_count(), 0, "nothing is mapped before the first read");
    assert_eq!(src.len(), 3 * n_stacks);
    for pos in (0..src.len()).chain((0..src.len()).rev()) {
        assert_eq!(src.read(pos).unwrap()[0], (pos % 3) as f32);
        assert!(src.stacks.mapped_count() <= MAPPED_STACKS);
    }
    let all: Vec<usize> = (0..src.len()).collect();
    let mut out = vec![0.0; all.len() * 16];
    src.read_many_into(&all, &mut out).unwrap();
    assert!(out.chunks(16).enumerate().all(|(pos, img)| img[0] == (pos % 3) as f32));
    assert_eq!(src.stacks.mapped_count(), MAPPED_STACKS);
}
