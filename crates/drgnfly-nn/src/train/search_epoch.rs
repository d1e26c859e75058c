//! One epoch of pose search inside training, shared by the ab initio trainers: the planned search, the maps
//! it compares images to, and what it found.
//!
//! The decoder is not evaluated per image and rotation: its Hartley volume inside the search's band limit is
//! decoded once every `refresh_images` searched images and sliced by interpolation. A homogeneous model has
//! one such map; a heterogeneous one has a map at each of a few conformations (z centres), and each image is
//! searched against the map nearest its own z ([`nearest`]), or, with [`AbinitSchedule::every_map_from`], against
//! every map in one branch and bound ([`PoseSearch::search_maps`]: the base step scores all maps, the best
//! candidates over all maps are refined, each against its own map). The poses found against each map are brought
//! into the frame of the first (the most populated conformation) by the rotation between the two maps, so
//! that all conformations share one frame: searched separately, each state's images settle in a frame of
//! their own, which the decoder, conditioned on z, can represent.

use std::borrow::Cow;
use std::time::Instant;

use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::random::random_rotation;
use drgnfly_em::rotation::{angle_between_deg, mul, transpose, Mat3, IDENTITY};
use drgnfly_em::search::{
    BaseSlices, HartleyVolumeSlicer, PoseSearch, SearchConfig, SearchResult, SlicePredictor,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::abinit::AbinitSchedule;
use super::collective::{Collective, Share};
use super::error::TrainResult;
use super::pose_table::PoseTable;
use crate::decoder::{DataNorm, Decoder};

/// A found pose as exchanged between processes: 9 rotation entries, 2 shift components, and 1 when the
/// best match was not the map nearest the image's latent.
const POSE_ROW: usize = 12;
/// Slices of a conformation's map searched against the first map to find their relative frame.
const FRAME_PROBES: usize = 8;
const FRAME_PROBE_SEED: u64 = 0x5eed;
/// The probes' estimates of a frame must agree this well (median angle to their consensus), else the
/// maps are taken as sharing a frame.
const FRAME_AGREEMENT_DEG: f64 = 10.0;

/// The search of one epoch and the maps it currently slices.
pub(super) struct EpochSearch {
    search: PoseSearch,
    /// One map per conformation, with its base slices; empty when stale.
    maps: Vec<SearchMap>,
    /// The latent of each map.
    latents: Vec<Vec<f32>>,
    /// Per map, the rotation `A` with `map(q) ≈ first map(q·A)` (identity for the first): a pose found
    /// against it is `R·A` in the first map's frame.
    frames: Vec<Mat3>,
    /// Search every image against every map ([`AbinitSchedule::every_map_from`]).
    every_map: bool,
    /// Images whose best match was not the map nearest their latent (searching every map).
    switched: usize,
    /// Images searched since the maps were decoded.
    since_refresh: usize,
    refreshes: usize,
    moved_deg: Vec<f64>,
    moved_px: Vec<f64>,
    seconds: f64,
}

/// The decoder's map at one latent, ready to slice.
struct SearchMap {
    slicer: HartleyVolumeSlicer,
    base: BaseSlices,
}

impl EpochSearch {
    /// The search of `epoch` for images of side `d`, at the schedule's band limits.
    pub(super) fn plan(schedule: &AbinitSchedule, epoch: usize, d: usize) -> TrainResult<Self> {
        let l_max = schedule.l_max(epoch);
        let config = SearchConfig { l_min: schedule.l_start.min(l_max), l_max, ..schedule.search.clone() };
        Ok(Self {
            search: PoseSearch::new(d, config)?,
            maps: Vec::new(),
            latents: Vec::new(),
            frames: Vec::new(),
            every_map: schedule.every_map_from.is_some_and(|first| epoch >= first),
            switched: 0,
            since_refresh: 0,
            refreshes: 0,
            moved_deg: Vec::new(),
            moved_px: Vec::new(),
            seconds: 0.0,
        })
    }

    /// Whether the maps must be decoded (again) before the next search: none yet, or `refresh_images`
    /// images searched since.
    pub(super) fn is_stale(&self, refresh_images: usize) -> bool {
        self.maps.is_empty() || self.since_refresh >= refresh_images.max(1)
    }

    /// Decodes `decoder`'s map at each latent of `latents` (one empty latent for a homogeneous decoder),
    /// within the band limit of the search's last iteration.
    pub(super) fn refresh(
        &mut self,
        decoder: &Decoder,
        latents: &[Vec<f32>],
        comm: &dyn Collective,
    ) -> TrainResult<()> {
        let t0 = Instant::now();
        let d = self.search.size();
        // Trilinear interpolation at radius L reads grid points up to L + 1 away from the centre.
        let radius = (self.search.band_limit(self.search.config().niter) + 2) as f64 / d as f64;
        let unit = DataNorm { mean: 0.0, std: 1.0 };
        // On more than one process, each decodes every size-th map and they exchange them (one map per
        // conformation, whole volumes: the decoding, not the exchange, is the cost).
        let n = d.pow(3);
        let mut values = vec![0.0f32; latents.len() * n];
        for (m, z) in latents.iter().enumerate().filter(|(m, _)| m % comm.size() == comm.rank()) {
            let volume = decoder.eval_volume_within(z, d + 1, 0.5, unit, radius)?;
            if volume.values.len() != n {
                return Err(crate::Error::Config {
                    field: "search map",
                    problem: format!("a decoded map has {} values, not {d}³", volume.values.len()),
                }
                .into());
            }
            values[m * n..(m + 1) * n].copy_from_slice(&volume.values);
        }
        comm.all_reduce_sum(&mut values)?;
        self.set_maps(&values, latents)?;
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Makes the `D³` Hartley volumes in `values` (one per latent of `latents`, in order) the maps searched,
    /// each brought into the first's frame.
    fn set_maps(&mut self, values: &[f32], latents: &[Vec<f32>]) -> TrainResult<()> {
        let d = self.search.size();
        self.maps = values
            .chunks_exact(d.pow(3))
            .map(|volume| -> TrainResult<SearchMap> {
                let slicer = HartleyVolumeSlicer::new(volume.to_vec(), d + 1)?;
                let base = self.search.base_slices(&slicer)?;
                Ok(SearchMap { slicer, base })
            })
            .collect::<TrainResult<_>>()?;
        self.latents = latents.to_vec();
        self.frames = vec![IDENTITY; self.maps.len()];
        for k in 1..self.maps.len() {
            self.frames[k] = self.frame_of(k)?;
        }
        self.since_refresh = 0;
        self.refreshes += 1;
        Ok(())
    }

    /// The rotation `A` that brings map `k` into the first map's frame (`map_k(q) ≈ map_0(q·A)`): slices of
    /// map `k` at a few known rotations `Q_j`, searched against map 0, are found at `Q_j·A`. The estimates
    /// must agree (within [`FRAME_AGREEMENT_DEG`] of their consensus); maps too featureless to align
    /// (early in training) keep the identity.
    fn frame_of(&self, k: usize) -> TrainResult<Mat3> {
        let l2 = (self.search.size() + 1).pow(2);
        let points: Vec<usize> = (0..l2).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(FRAME_PROBE_SEED);
        let probes: Vec<Mat3> = (0..FRAME_PROBES).map(|_| random_rotation(&mut rng)).collect();
        let mut slices = vec![0.0f32; probes.len() * l2];
        self.maps[k].slicer.predict(&probes, &points, &mut slices)?;
        let reference = &self.maps[0];
        let found = self.search.search_with(&reference.slicer, &reference.base, &slices, None)?;
        let estimates: Vec<Mat3> =
            probes.iter().zip(&found).map(|(q, r)| mul(&transpose(q), &r.pose.rot)).collect();
        let spread = |a: &Mat3| {
            let mut d: Vec<f64> = estimates.iter().map(|b| angle_between_deg(a, b)).collect();
            median(&mut d)
        };
        let best = estimates.iter().min_by(|a, b| spread(a).total_cmp(&spread(b)));
        Ok(match best {
            Some(a) if spread(a) <= FRAME_AGREEMENT_DEG => *a,
            _ => IDENTITY,
        })
    }

    /// The map to search an image of latent `z` against: the one at the nearest latent.
    pub(super) fn map_for(&self, z: &[f32]) -> usize {
        nearest(z, &self.latents)
    }

    /// Search this process's images of a batch (`share`; `images`, `ctf` of its positions from
    /// [`super::BatchPrep::hartley_images`] and [`super::BatchPrep::ctf_on_lattice`]), image `j` against
    /// map `which[j]` (the map nearest its latent) or, searching every map, against all maps in one search
    /// (the best match wins), then put the poses found for the whole batch (every process's, exchanged) in
    /// `poses`, recording how far they moved. The maps must be fresh ([`Self::refresh`]).
    pub(super) fn search_batch(
        &mut self,
        share: Share<'_>,
        (images, ctf): (&[f32], Option<&[f32]>),
        which: &[usize],
        poses: &mut PoseTable,
    ) -> TrainResult<()> {
        let t0 = Instant::now();
        let l2 = (self.search.size() + 1).pow(2);
        let n = share.len;
        // Row per image: the rotation (row-major), the shift, whether another map than `which`'s won.
        let mut found = vec![0.0f32; n * POSE_ROW];
        let mut record = |j: usize, m: usize, r: &SearchResult| {
            let rot = mul(&r.pose.rot, &self.frames[m]);
            let row = &mut found[j * POSE_ROW..(j + 1) * POSE_ROW];
            row[..9].iter_mut().zip(rot.iter().flatten()).for_each(|(o, &v)| *o = v as f32);
            row[9..11].copy_from_slice(&r.pose.shift_px);
            row[11] = if m == which[j] { 0.0 } else { 1.0 };
        };
        if self.every_map {
            // One search over all maps: the map is one more dimension of its branch and bound.
            let maps: Vec<_> = self.maps.iter().map(|map| (&map.slicer, &map.base)).collect();
            for (j, (m, r)) in self.search.search_maps(&maps, images, ctf)?.iter().enumerate() {
                record(j, *m, r);
            }
        } else {
            for (m, map) in self.maps.iter().enumerate() {
                let mine: Vec<usize> = (0..n).filter(|&j| which[j] == m).collect();
                if mine.is_empty() {
                    continue;
                }
                let gather = |src: &[f32]| -> Vec<f32> {
                    mine.iter().flat_map(|&j| src[j * l2..(j + 1) * l2].iter().copied()).collect()
                };
                let (imgs, c): (Cow<'_, [f32]>, Option<Cow<'_, [f32]>>) = if mine.len() == n {
                    (Cow::Borrowed(images), ctf.map(Cow::Borrowed))
                } else {
                    (Cow::Owned(gather(images)), ctf.map(|c| Cow::Owned(gather(c))))
                };
                let results = self.search.search_with(&map.slicer, &map.base, &imgs, c.as_deref())?;
                for (&j, r) in mine.iter().zip(&results) {
                    record(j, m, r);
                }
            }
        }
        let all = share.gather_rows(&found, POSE_ROW)?;
        for (&p, row) in share.batch.iter().zip(all.chunks_exact(POSE_ROW)) {
            let rot = [0, 1, 2].map(|i| [0, 1, 2].map(|j| f64::from(row[3 * i + j])));
            let found = Pose { rot, shift_px: [row[9], row[10]] };
            self.switched += usize::from(row[11] != 0.0);
            let old = poses.pose(p);
            self.moved_deg.push(angle_between_deg(&old.rot, &found.rot));
            let dt = [found.shift_px[0] - old.shift_px[0], found.shift_px[1] - old.shift_px[1]];
            self.moved_px.push(f64::from(dt[0].hypot(dt[1])));
            poses.set_pose(p, found);
        }
        self.since_refresh += share.batch.len();
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    pub(super) fn summary(mut self, epoch: usize) -> String {
        let n = self.moved_deg.len();
        let c = self.search.config();
        let maps = match self.maps.len() {
            0 | 1 => String::new(),
            k => {
                let turns: Vec<String> = self.frames[1..]
                    .iter()
                    .map(|a| format!("{:.1}°", angle_between_deg(a, &IDENTITY)))
                    .collect();
                format!(
                    " at {k} conformations, the others turned by {} into the first's frame",
                    turns.join(", ")
                )
            }
        };
        let switched = if self.every_map && self.maps.len() > 1 {
            format!(
                "; {} images ({:.1}%) matched another conformation's map better than their latent's",
                self.switched,
                100.0 * self.switched as f64 / n.max(1) as f64
            )
        } else {
            String::new()
        };
        format!(
            "# pose search in epoch {epoch}: band limit {}–{}, {n} images in {:.1} s ({:.1} images/s, \
             maps decoded {} times{maps}); median change {:.2}° and {:.2} px{switched}",
            c.l_min,
            self.search.band_limit(c.niter),
            self.seconds,
            n as f64 / self.seconds.max(1e-9),
            self.refreshes,
            median(&mut self.moved_deg),
            median(&mut self.moved_px),
        )
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Index of the centre nearest `z` (squared Euclidean distance; the first of equals).
fn nearest(z: &[f32], centres: &[Vec<f32>]) -> usize {
    let dist = |c: &[f32]| z.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
    (0..centres.len()).min_by(|&a, &b| dist(&centres[a]).total_cmp(&dist(&centres[b]))).unwrap_or(0)
}

/// `k` centres of the latents `zs` by k-means (k-means++ seeding from `seed`, 20 Lloyd iterations), the
/// most populated first: the conformations the search's maps are decoded at. Fewer distinct latents than `k` give fewer centres; no
/// latents give the origin.
pub(super) fn conformation_centres(zs: &[Vec<f32>], k: usize, zdim: usize, seed: u64) -> Vec<Vec<f32>> {
    if zs.is_empty() || k == 0 {
        return vec![vec![0.0; zdim]];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let mut centres = vec![zs[rng.random_range(0..zs.len())].clone()];
    while centres.len() < k {
        let d2: Vec<f32> = zs.iter().map(|z| dist(z, &centres[nearest(z, &centres)])).collect();
        let total: f64 = d2.iter().map(|&v| f64::from(v)).sum();
        if total <= 0.0 {
            break;
        }
        let mut u = rng.random::<f64>() * total;
        let pick = d2.iter().position(|&v| {
            u -= f64::from(v);
            u <= 0.0
        });
        centres.push(zs[pick.unwrap_or(zs.len() - 1)].clone());
    }
    for _ in 0..20 {
        let mut sums = vec![vec![0.0f64; zdim]; centres.len()];
        let mut counts = vec![0usize; centres.len()];
        for z in zs {
            let c = nearest(z, &centres);
            counts[c] += 1;
            sums[c].iter_mut().zip(z).for_each(|(s, &v)| *s += f64::from(v));
        }
        for ((c, s), &n) in centres.iter_mut().zip(&sums).zip(&counts) {
            if n > 0 {
                c.iter_mut().zip(s).for_each(|(c, &s)| *c = (s / n as f64) as f32);
            }
        }
    }
    // The most populated first: its map is the frame the others are brought into.
    let mut counts = vec![0usize; centres.len()];
    zs.iter().for_each(|z| counts[nearest(z, &centres)] += 1);
    let mut order: Vec<usize> = (0..centres.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(counts[c]));
    order.into_iter().map(|c| centres[c].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_find_separated_clusters() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let zs: Vec<Vec<f32>> = (0..300)
            .map(|i| {
                let c = [[-3.0, 0.0], [3.0, 1.0], [0.0, 5.0]][i % 3];
                vec![c[0] + rng.random_range(-0.5..0.5), c[1] + rng.random_range(-0.5..0.5)]
            })
            .collect();
        let mut centres = conformation_centres(&zs, 3, 2, 7);
        centres.sort_by(|a, b| a[0].total_cmp(&b[0]));
        for (c, want) in centres.iter().zip([[-3.0, 0.0], [0.0, 5.0], [3.0, 1.0]]) {
            assert!((c[0] - want[0]).abs() < 0.2 && (c[1] - want[1]).abs() < 0.2, "{centres:?}");
        }
        // Two distinct latents cannot make three centres; none make the origin.
        assert_eq!(conformation_centres(&[vec![1.0], vec![1.0], vec![2.0]], 3, 1, 0).len(), 2);
        assert_eq!(conformation_centres(&[], 4, 2, 0), vec![vec![0.0, 0.0]]);
        assert_eq!(nearest(&[2.9, 1.0], &centres), 2);
    }

    /// Hartley volume (`eval_volume`'s layout) of the hinge phantom with its second domain turned by
    /// `theta`·180°.
    fn hinge_map(d: usize, theta: f64) -> Vec<f32> {
        let mut v =
            drgnfly_em::phantom::HingePhantom::with_max_angle(d, 180.0).unwrap().volume(theta).unwrap();
        drgnfly_em::hartley::HartleyPlan::new(d).unwrap().ht3_center(&mut v).unwrap();
        v
    }

    /// Images of the second conformation, each said (by its latent) to belong to the first: searched against
    /// the nearest map only, their poses are wrong; against every map, the second wins and the poses are
    /// found.
    #[test]
    fn every_map_search_finds_images_of_the_other_conformation() {
        let d = 24;
        let n = 6;
        let maps: Vec<f32> = [hinge_map(d, 0.0), hinge_map(d, 1.0)].concat();
        let latents = vec![vec![0.0f32], vec![1.0]];
        let truth = drgnfly_em::rotation::random::random_rotations(n, 3);
        let l2 = (d + 1) * (d + 1);
        let points: Vec<usize> = (0..l2).collect();
        let mut images = vec![0.0f32; n * l2];
        HartleyVolumeSlicer::new(maps[d.pow(3)..].to_vec(), d + 1)
            .unwrap()
            .predict(&truth, &points, &mut images)
            .unwrap();
        let schedule = |from| AbinitSchedule {
            l_start: 6,
            l_end: 12,
            search: SearchConfig { niter: 3, translate: false, ..SearchConfig::default() },
            every_map_from: Some(from),
            ..AbinitSchedule::default()
        };
        let batch: Vec<usize> = (0..n).collect();
        let which = vec![0; n];
        // Every map from epoch 2: the search of epoch 1 compares each image with its nearest map only.
        let median_error = |epoch| {
            let mut es = EpochSearch::plan(&schedule(2), epoch, d).unwrap();
            es.set_maps(&maps, &latents).unwrap();
            let start: Vec<Pose> = vec![Pose { rot: IDENTITY, shift_px: [0.0; 2] }; n];
            let mut poses = PoseTable::new(&start, crate::rotation::RotationParam::SixD, Default::default());
            es.search_batch(Share::whole(&batch), (&images, None), &which, &mut poses).unwrap();
            let mut err: Vec<f64> =
                (0..n).map(|i| angle_between_deg(&poses.pose(i).rot, &truth[i])).collect();
            (median(&mut err), es.switched)
        };
        let (nearest_only, switched) = median_error(1);
        assert!(nearest_only > 20.0 && switched == 0, "{nearest_only}° {switched}");
        let (every, switched) = median_error(2);
        assert!(every < 5.0 && switched == n, "{every}° {switched}");
    }
}
