//! cryoDRGN2's hierarchical pose search (`cryodrgn/pose_search.py`, `PoseSearch.opt_theta_trans`) for
//! homogeneous models: branch and bound over the Hopf SO(3) grid and the shift grid of [`crate::grid`].
//!
//! # Algorithm
//! With band limits `L(i) = l_min + ⌊i/niter·(l_max − l_min)⌋` capped at `D/2` (lattice steps; the search
//! compares the images on the circular mask of radius `L(i)`, DC excluded, as cryoDRGN):
//!
//! 1. **Base step**: every rotation of the base grid ([`So3Grid`] at `base_resolution`) × every shift of
//!    the base shift grid ([`shift::base_shift_grid`] at level `base_resolution − 1`, level 0 for a base of
//!    0) at `L(0)`. Per rotation the best shift is kept, then the `nkeptposes` best rotations.
//! 2. **Refinement** `i = 1…niter`: each kept rotation is subdivided into its 8 children
//!    ([`get_neighbor`]), the shift candidates are the 5 × 5 offsets at the base spacing × `2^−i` around
//!    the kept shift ([`shift::local_offsets`]; cryoDRGN's whole base grid scaled by `2^−i`,
//!    [`shift::refined_shifts`], with `refine_shift_radius: None`), all pairs are scored at `L(i)`, and the `nkeptposes` best
//!    (1 at the last iteration) are kept. Exact duplicates (same grid point and shift, reached from two
//!    parents) are kept once; cryoDRGN keeps both.
//!
//! Losses ([`SearchLoss`]) with `ŷ` the model's slice times the image's CTF: `msf = −⟨y_t, ŷ⟩ + ½‖ŷ‖²`
//! (default), `mse = ‖y_t − ŷ‖²`, `cor = −⟨y_t, ŷ⟩ / std(ŷ)` (unbiased std over the mask), summed over the
//! mask points as cryoDRGN's `eval_grid`. The reported loss is the final pose's, at `L(niter)`.
//!
//! Differences from cryoDRGN: every base rotation is sliced exactly (cryoDRGN's `FAST_INPLANE` slices only
//! the S² points and rotates them in-plane by bilinear interpolation with a std rescale and a random
//! in-plane offset); no tilt pairs, no per-image latent (homogeneous models only).
//!
//! # Speed
//! The base slices are the same for every image: they are predicted once per model
//! ([`PoseSearch::base_slices`]) or per [`PoseSearch::search`] call.
//! Per image, the translated images for all shifts (`S × M`, from cos/sin tables built once in
//! [`PoseSearch::new`]) times the slices (`R × M`)ᵀ is one `gemm` product; CTF multiplies the image side so
//! the slices stay shared. Images of a chunk run in parallel (rayon), one thread per image. Refinement
//! slices (8 children × kept poses × images of the chunk) are predicted in one call per chunk and
//! iteration, so a neural model sees large batches.
//!
//! Against several maps ([`PoseSearch::search_maps`], one per conformation) the map is one more dimension
//! of the branch and bound: each image is translated once, scored against every map's base slices, and
//! the `nkeptposes` best poses over all maps (each with the map it scores best against) are refined, so
//! `k` maps cost `k` base steps but one refinement.
//!
//! # Memory (f32 values; `S` = base shifts, `M_i` = mask points at `L(i)`, `R₀` = base rotations,
//! `K` = nkeptposes, `B` = chunk_images, `T` = rayon threads)
//! * [`PoseSearch`]: `Σ_i 2·S_i·M_i` (phase tables).
//! * per `search` call: `R₀·M₀` base slices (+ `2·R₀` norms).
//! * per chunk: `B·K·8·M_i` refinement slices (at most twice that against several maps).
//! * per thread: `S·M_i` translated images + `S·512` dots + `4·R₀`.
//!
//! Defaults at D = 64 (S = 196 base, 25 per refinement, R₀ = 4608, M = 448…3208): 2.4 MB tables, 8 MB base slices, 53 MB per
//! chunk of 64, 3 MB per thread. [`PoseSearch::exhaustive`] holds `EXHAUSTIVE_BLOCK·M` slices and
//! `2·|shifts|·M` phases.

mod kernel;
mod slicer;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use crate::cpu::bf16;
use crate::cpu::tiling::Tiling;
use crate::grid::shift::{self, Shift};
use crate::grid::so3::{self, QuatF32, MAX_RESOLUTION};
use crate::grid::{get_neighbor, Neighbor, So3Grid};
use crate::lattice::Lattice;
use crate::pose::Pose;
use crate::rotation::quaternion::matrix_from_quaternion_cryodrgn;
use crate::rotation::Mat3;
use crate::{Error, Result};
use kernel::{gather, score, slice_stats, translate_one, translate_set, Level, LossFn, Scratch};

pub use slicer::HartleyVolumeSlicer;

/// Rotations predicted at once by [`PoseSearch::exhaustive`].
pub const EXHAUSTIVE_BLOCK: usize = 2048;

/// A model that predicts central slices: what the search compares images to.
pub trait SlicePredictor: Sync {
    /// Hartley values of the model's central slices at `rots`, at the lattice points `points` (flat indices into
    /// the symmetrized (D+1)×(D+1) lattice), in the images' normalisation: out[r * points.len() + j].
    fn predict(&self, rots: &[Mat3], points: &[usize], out: &mut [f32]) -> Result<()>;
}

/// The search's comparison between an image and a predicted slice (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SearchLoss {
    /// `−⟨y, ŷ⟩ + ½‖ŷ‖²` (cryoDRGN's default, "msf").
    #[default]
    Msf,
    /// `‖y − ŷ‖²`.
    Mse,
    /// `−⟨y, ŷ⟩ / std(ŷ)`.
    Cor,
}

/// Search parameters (cryoDRGN `abinit_homo_old` defaults).
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// HEALPix order of the base SO(3) grid (cryoDRGN `--base-healpy`, default 2: 4608 rotations).
    pub base_resolution: u32,
    /// Refinement iterations (4).
    pub niter: usize,
    /// Band limit of the base step in lattice steps (12).
    pub l_min: usize,
    /// Band limit of the last iteration (32); both are capped at D/2.
    pub l_max: usize,
    /// Half-width of the base shift grid in pixels (10).
    pub t_extent: f64,
    /// Base shift grid points per axis at level 0 (7); the base level is `base_resolution − 1`.
    pub t_ngrid: usize,
    /// Search shifts; false: shifts fixed at 0.
    pub translate: bool,
    /// Poses kept per image between iterations (8).
    pub nkeptposes: usize,
    /// Shift candidates of a refinement iteration around each kept shift: `Some(k)`, the `(2k+1)²`
    /// offsets at the iteration's spacing (the base spacing halved per iteration;
    /// [`shift::local_offsets`], default `k = 2`); `None`, the whole base grid halved per iteration as
    /// cryoDRGN ([`shift::refined_shifts`], 196 candidates with its defaults, 8× the work for the same
    /// answer once the base step has found the right cell).
    pub refine_shift_radius: Option<usize>,
    /// Loss (msf).
    pub loss: SearchLoss,
    /// Images processed at once (64): bounds the refinement slices held (see the [module docs](self)).
    pub chunk_images: usize,
    /// The base step's product (every base rotation against every base shift, most of a search's
    /// arithmetic) with bfloat16 operands and float32 sums, on AVX-512 BF16 or AMX where the CPU has them
    /// ([`crate::cpu::bf16`]); float32 elsewhere and when false. The kept poses are refined in float32.
    pub mixed_precision: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            base_resolution: 2,
            niter: 4,
            l_min: 12,
            l_max: 32,
            t_extent: 10.0,
            t_ngrid: 7,
            translate: true,
            nkeptposes: 8,
            refine_shift_radius: Some(2),
            loss: SearchLoss::Msf,
            chunk_images: 64,
            mixed_precision: false,
        }
    }
}

/// The best pose of one image and its loss (at the last band limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchResult {
    /// Rotation and the shift (pixels) that centres the image.
    pub pose: Pose,
    /// The pose's loss.
    pub loss: f32,
}

/// A model's slices at the base rotations of one [`PoseSearch`] ([`PoseSearch::base_slices`]).
#[derive(Clone, Debug)]
pub struct BaseSlices {
    /// `R₀ × M₀` predicted values.
    slices: Vec<f32>,
    /// Their stats without CTF (shared by all images when there is none).
    stats: Vec<[f32; 2]>,
    /// Mask points per slice.
    m: usize,
}

/// A pose kept between iterations, against map `map` of a [`PoseSearch::search_maps`] call.
#[derive(Clone, Copy, Debug)]
struct Kept {
    map: usize,
    quat: QuatF32,
    s2: usize,
    s1: usize,
    shift: Shift,
    loss: f32,
}

impl Kept {
    fn result(&self) -> SearchResult {
        SearchResult { pose: Pose { rot: quat_matrix(self.quat), shift_px: self.shift }, loss: self.loss }
    }
}

fn quat_matrix(q: QuatF32) -> Mat3 {
    matrix_from_quaternion_cryodrgn(q.map(f64::from))
}

/// The `k` smallest-loss candidates, ties in candidate order, exact duplicates (same grid point and shift)
/// once: against several maps, with the map where that pose scores best (so `k` distinct poses go on
/// however alike the maps are).
fn keep_best(mut cands: Vec<Kept>, k: usize) -> Vec<Kept> {
    cands.sort_by(|a, b| a.loss.total_cmp(&b.loss));
    let mut out: Vec<Kept> = Vec::with_capacity(k);
    for c in cands {
        if out.len() == k {
            break;
        }
        let dup = out
            .iter()
            .any(|o| o.s2 == c.s2 && o.s1 == c.s1 && o.shift.map(f32::to_bits) == c.shift.map(f32::to_bits));
        if !dup {
            out.push(c);
        }
    }
    out
}

/// The hierarchical pose search for images of side `D` (see the [module docs](self)). `Send + Sync`.
#[derive(Debug, Clone)]
pub struct PoseSearch {
    d: usize,
    config: SearchConfig,
    lattice: Lattice,
    base: So3Grid,
    base_rots: Vec<Mat3>,
    /// Level `i` = band limit `L(i)` with the shift offsets of iteration `i` (base grid · 2^−i).
    levels: Vec<Level>,
    /// The blocking of the base step's bf16 product, when it runs in mixed precision.
    base_bf16: Option<Tiling>,
}

impl PoseSearch {
    /// Plans a search over `D × D` images (`D` even ≥ 2); builds the base grid and the phase tables.
    pub fn new(d: usize, config: SearchConfig) -> Result<Self> {
        let param =
            |name: &'static str, value: String, why: &str| Error::Param { name, value, why: why.into() };
        if d < 2 || !d.is_multiple_of(2) {
            return Err(param("D", d.to_string(), "the image side must be even and ≥ 2"));
        }
        let c = &config;
        if c.base_resolution as usize + c.niter > MAX_RESOLUTION as usize {
            return Err(param(
                "base_resolution + niter",
                format!("{} + {}", c.base_resolution, c.niter),
                &format!("the finest SO(3) grid must have resolution ≤ {MAX_RESOLUTION}"),
            ));
        }
        if c.l_min < 1 || c.l_min > c.l_max {
            return Err(param("l_min", format!("{} (l_max {})", c.l_min, c.l_max), "need 1 ≤ l_min ≤ l_max"));
        }
        if c.nkeptposes < 1 {
            return Err(param("nkeptposes", c.nkeptposes.to_string(), "must be ≥ 1"));
        }
        if c.chunk_images < 1 {
            return Err(param("chunk_images", c.chunk_images.to_string(), "must be ≥ 1"));
        }
        let base_shifts = if c.translate {
            if !(c.t_extent.is_finite() && c.t_extent > 0.0) {
                return Err(param("t_extent", c.t_extent.to_string(), "must be finite and > 0 px"));
            }
            if c.t_ngrid < 1 || c.t_ngrid > 1024 {
                return Err(param("t_ngrid", c.t_ngrid.to_string(), "must be in 1..=1024"));
            }
            shift::base_shift_grid(c.base_resolution.saturating_sub(1), c.t_extent, c.t_ngrid, 0.0, 0.0)
        } else {
            vec![[0.0, 0.0]]
        };
        let lattice = Lattice::new(d + 1, 0.5)?;
        let base = So3Grid::new(c.base_resolution);
        let base_rots = base.quaternions().iter().map(|&q| quat_matrix(q)).collect();
        let mut s = Self { d, config, lattice, base, base_rots, levels: Vec::new(), base_bf16: None };
        // The base grid's spacing (one axis; a 1-point grid has none and nothing to refine).
        let spacing = match base_shifts.as_slice() {
            [a, b, ..] if s.config.translate => (b[0] - a[0]).abs(),
            _ => 0.0,
        };
        s.levels = (0..=s.config.niter)
            .map(|i| {
                let offsets = match (i, s.config.refine_shift_radius) {
                    (0, _) | (_, None) => shift::refined_shifts([0.0, 0.0], &base_shifts, i as u32),
                    (_, Some(_)) if spacing == 0.0 => vec![[0.0, 0.0]],
                    (_, Some(k)) => shift::local_offsets(spacing * 0.5f32.powi(i as i32), k),
                };
                Level::new(&s.lattice, s.band_limit(i), offsets)
            })
            .collect();
        s.base_bf16 =
            (s.config.mixed_precision && bf16::available()).then(|| Tiling::for_width(s.levels[0].m()));
        Ok(s)
    }

    /// The image side `D`.
    pub fn size(&self) -> usize {
        self.d
    }

    /// The configuration.
    pub fn config(&self) -> &SearchConfig {
        &self.config
    }

    /// `L(iter) = l_min + ⌊iter/niter·(l_max − l_min)⌋`, capped at `D/2` (`l_min` when `niter` is 0).
    pub fn band_limit(&self, iter: usize) -> usize {
        let c = &self.config;
        let l = c.l_min + (iter.min(c.niter) * (c.l_max - c.l_min)).checked_div(c.niter).unwrap_or(0);
        l.min(self.d / 2)
    }

    /// The base shift grid (pixels; `[0, 0]` alone without translation).
    pub fn base_shifts(&self) -> &[Shift] {
        &self.levels[0].shifts
    }

    /// The shift offsets of refinement iteration `iter` (the base grid scaled by `2^−iter`), added to each
    /// kept shift; `None` past `niter`.
    pub fn shift_offsets(&self, iter: usize) -> Option<&[Shift]> {
        self.levels.get(iter).map(|l| l.shifts.as_slice())
    }

    /// Bytes held by the phase tables.
    pub fn table_bytes(&self) -> usize {
        self.levels.iter().map(Level::bytes).sum()
    }

    /// Bytes of one model's [`BaseSlices`]: `R₀ × M₀` slices and their stats.
    pub fn base_slice_bytes(&self) -> usize {
        4 * self.base_rots.len() * (self.levels[0].m() + 2)
    }

    /// Bytes of refinement slices each image of a chunk holds (`8 × nkeptposes × M_i` at the widest level,
    /// twice that when [`Self::search_maps`] searches several maps: each map's share is sliced apart, then
    /// put in place): a search's memory beyond its tables and base slices is this times `chunk_images`,
    /// whatever the number of images searched.
    pub fn refinement_bytes_per_image(&self, maps: usize) -> usize {
        let widest = self.levels.iter().map(Level::m).max().unwrap_or(0);
        4 * 8 * self.config.nkeptposes * widest * if maps > 1 { 2 } else { 1 }
    }

    fn check_inputs(&self, images: &[f32], ctf: Option<&[f32]>, op: &'static str) -> Result<usize> {
        let e2 = self.lattice.len();
        if !images.len().is_multiple_of(e2) {
            return Err(Error::Shape {
                op,
                expected: format!("(B, {0}, {0}) symmetrized Hartley images", self.d + 1),
                got: format!("{} values", images.len()),
            });
        }
        if let Some(c) = ctf {
            if c.len() != images.len() {
                return Err(Error::Shape {
                    op,
                    expected: format!("CTF ({}, {1}, {1}) like the images", images.len() / e2, self.d + 1),
                    got: format!("{} values", c.len()),
                });
            }
        }
        Ok(images.len() / e2)
    }

    fn loss_fn(&self, y: &[f32]) -> LossFn {
        LossFn { kind: self.config.loss, y2: y.iter().map(|v| v * v).sum(), m: y.len() }
    }

    /// The model's slices at the base rotations, for [`Self::search_with`]: predict them once per model
    /// and reuse them for every batch searched against that model.
    pub fn base_slices(&self, model: &impl SlicePredictor) -> Result<BaseSlices> {
        let l0 = &self.levels[0];
        let mut slices = vec![0.0f32; self.base_rots.len() * l0.m()];
        model.predict(&self.base_rots, &l0.mask, &mut slices)?;
        let mut stats = Vec::new();
        slice_stats(&slices, l0.m(), None, &mut stats);
        Ok(BaseSlices { slices, stats, m: l0.m() })
    }

    /// The best pose per image. `images`: `B × (D+1)²` symmetrized, normalized Hartley images, not
    /// translated; `ctf`: `B × (D+1)²` CTF values on the lattice (they multiply the predicted slices) or
    /// `None`. `t` of each result is the shift that centres the image (pixels, as everywhere in drgnfly).
    pub fn search(
        &self,
        model: &impl SlicePredictor,
        images: &[f32],
        ctf: Option<&[f32]>,
    ) -> Result<Vec<SearchResult>> {
        self.search_with(model, &self.base_slices(model)?, images, ctf)
    }

    /// [`Self::search`] with the base slices already predicted by [`Self::base_slices`] from the same model.
    pub fn search_with(
        &self,
        model: &impl SlicePredictor,
        base: &BaseSlices,
        images: &[f32],
        ctf: Option<&[f32]>,
    ) -> Result<Vec<SearchResult>> {
        let found = self.search_maps(&[(model, base)], images, ctf)?;
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }

    /// The best pose per image over several maps (e.g. one per conformation), each given with its
    /// [`Self::base_slices`], and the index of the map it was found against. The map is one more dimension
    /// of the branch and bound: the base step scores every map's base slices, and the `nkeptposes` best
    /// poses over all maps, each with the map it scores best against, are refined against that map, so
    /// refinement costs as much as for one map. Losses of one image against different maps are comparable
    /// (the same image, band limit and loss). Ties keep the earlier map.
    pub fn search_maps<P: SlicePredictor>(
        &self,
        maps: &[(&P, &BaseSlices)],
        images: &[f32],
        ctf: Option<&[f32]>,
    ) -> Result<Vec<(usize, SearchResult)>> {
        let n = self.check_inputs(images, ctf, "PoseSearch::search_maps")?;
        let l0 = &self.levels[0];
        if maps.is_empty() {
            return Err(Error::Param {
                name: "maps",
                value: "[]".into(),
                why: "need at least one map to search against".into(),
            });
        }
        for (_, base) in maps {
            if base.m != l0.m() || base.stats.len() != self.base_rots.len() {
                return Err(Error::Shape {
                    op: "PoseSearch::search_maps",
                    expected: format!(
                        "base slices of {} rotations × {} points",
                        self.base_rots.len(),
                        l0.m()
                    ),
                    got: format!("{} rotations × {} points", base.stats.len(), base.m),
                });
            }
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let e2 = self.lattice.len();
        let bases: Vec<&BaseSlices> = maps.iter().map(|(_, b)| *b).collect();
        let models: Vec<&P> = maps.iter().map(|(m, _)| *m).collect();
        let niter = self.config.niter;
        let mut results = Vec::with_capacity(n);
        for c0 in (0..n).step_by(self.config.chunk_images) {
            let cn = self.config.chunk_images.min(n - c0);
            let imgs = &images[c0 * e2..(c0 + cn) * e2];
            let ctfs = ctf.map(|c| &c[c0 * e2..(c0 + cn) * e2]);
            let keep0 = if niter == 0 { 1 } else { self.config.nkeptposes };
            let mut kept: Vec<Vec<Kept>> = imgs
                .par_chunks(e2)
                .enumerate()
                .map_init(Scratch::default, |s, (b, img)| {
                    let c = ctfs.map(|c| &c[b * e2..(b + 1) * e2]);
                    self.base_one(img, c, &bases, keep0, s)
                })
                .collect();
            for iter in 1..=niter {
                let keep = if iter == niter { 1 } else { self.config.nkeptposes };
                kept = self.refine_chunk(&models, imgs, ctfs, &kept, iter, keep)?;
            }
            results.extend(kept.iter().map(|k| (k[0].map, k[0].result())));
        }
        Ok(results)
    }

    /// Base step for one image: the `keep` best base rotations with their best shifts over all maps
    /// (`bases`, one per map). The image is translated once for all maps.
    fn base_one(
        &self,
        img: &[f32],
        ctf: Option<&[f32]>,
        bases: &[&BaseSlices],
        keep: usize,
        s: &mut Scratch,
    ) -> Vec<Kept> {
        let lv = &self.levels[0];
        let Scratch { y, yr, ctf: cm, t, dots, stats, best, .. } = s;
        gather(img, &lv.mask, y);
        let cm = ctf.map(|c| {
            gather(c, &lv.mask, cm);
            cm.as_slice()
        });
        translate_set(lv, y, cm, yr, t);
        let loss = self.loss_fn(y);
        let mut cands = Vec::with_capacity(keep * bases.len());
        for (map, base) in bases.iter().enumerate() {
            // Without CTF the slices' stats are the same for every image.
            let stats = match cm {
                None => base.stats.as_slice(),
                Some(_) => {
                    slice_stats(&base.slices, lv.m(), cm, stats);
                    stats.as_slice()
                }
            };
            score(t, lv.m(), &base.slices, stats, loss, (dots, best), self.base_bf16.as_ref());
            cands.extend(self.best_base(map, best, keep));
        }
        // Each map's candidates come sorted and distinct: merging is only needed for several.
        if bases.len() > 1 {
            cands = keep_best(cands, keep);
        }
        cands
    }

    /// The `keep` best base rotations of one map's scores (`best`: per base rotation, the loss and index of
    /// its best shift), in order of (loss, rotation).
    fn best_base(&self, map: usize, best: &[(f32, u32)], keep: usize) -> Vec<Kept> {
        let lv = &self.levels[0];
        // The `keep` smallest (loss, index) first, then in order.
        let mut idx: Vec<u32> = (0..best.len() as u32).collect();
        let key = |&i: &u32| (best[i as usize].0, i);
        let cmp = |a: &u32, b: &u32| {
            let (ka, kb) = (key(a), key(b));
            ka.0.total_cmp(&kb.0).then(ka.1.cmp(&kb.1))
        };
        let keep = keep.min(idx.len());
        if keep < idx.len() {
            idx.select_nth_unstable_by(keep, cmp);
            idx.truncate(keep);
        }
        idx.sort_by(cmp);
        let n_psi = self.base.n_psi();
        idx.iter()
            .map(|&r| {
                let r = r as usize;
                let (loss, si) = best[r];
                Kept {
                    map,
                    quat: self.base.quaternions()[r],
                    s2: r / n_psi,
                    s1: r % n_psi,
                    shift: lv.shifts[si as usize],
                    loss,
                }
            })
            .collect()
    }

    /// One refinement iteration for a chunk: subdivide, predict all children at once (one call per map),
    /// score per image.
    fn refine_chunk<P: SlicePredictor>(
        &self,
        models: &[&P],
        imgs: &[f32],
        ctfs: Option<&[f32]>,
        kept: &[Vec<Kept>],
        iter: usize,
        keep: usize,
    ) -> Result<Vec<Vec<Kept>>> {
        let e2 = self.lattice.len();
        let lv = &self.levels[iter];
        let m = lv.m();
        let r = self.config.base_resolution + iter as u32 - 1;
        let children: Vec<Vec<[Neighbor; 8]>> =
            kept.iter().map(|ks| ks.iter().map(|k| get_neighbor(k.quat, k.s2, k.s1, r)).collect()).collect();
        let rots: Vec<Mat3> =
            children.iter().flatten().flat_map(|ch| ch.iter().map(|c| quat_matrix(c.quat))).collect();
        let mut slices = vec![0.0f32; rots.len() * m];
        if let [model] = models {
            model.predict(&rots, &lv.mask, &mut slices)?;
        } else {
            // Each kept pose's 8 children are sliced from its own map: gathered per map, predicted, put back.
            let maps: Vec<usize> = kept.iter().flatten().map(|k| k.map).collect();
            for (map, model) in models.iter().enumerate() {
                let mine: Vec<usize> = (0..maps.len()).filter(|&k| maps[k] == map).collect();
                if mine.is_empty() {
                    continue;
                }
                let sub: Vec<Mat3> =
                    mine.iter().flat_map(|&k| rots[8 * k..8 * (k + 1)].iter().copied()).collect();
                let mut out = vec![0.0f32; sub.len() * m];
                model.predict(&sub, &lv.mask, &mut out)?;
                for (&k, o) in mine.iter().zip(out.chunks_exact(8 * m.max(1))) {
                    slices[8 * k * m..8 * (k + 1) * m].copy_from_slice(o);
                }
            }
        }
        // Slice offset of each image.
        let mut offsets = Vec::with_capacity(kept.len());
        let mut at = 0;
        for ks in kept {
            offsets.push(at);
            at += ks.len() * 8 * m;
        }
        Ok(imgs
            .par_chunks(e2)
            .enumerate()
            .map_init(Scratch::default, |s, (b, img)| {
                let c = ctfs.map(|c| &c[b * e2..(b + 1) * e2]);
                let sl = &slices[offsets[b]..offsets[b] + kept[b].len() * 8 * m];
                self.refine_one(img, c, &kept[b], &children[b], sl, iter, keep, s)
            })
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn refine_one(
        &self,
        img: &[f32],
        ctf: Option<&[f32]>,
        kept: &[Kept],
        children: &[[Neighbor; 8]],
        slices: &[f32],
        iter: usize,
        keep: usize,
        s: &mut Scratch,
    ) -> Vec<Kept> {
        let lv = &self.levels[iter];
        let m = lv.m();
        let Scratch { y, yc, yr, ctf: cm, t, dots, stats, best } = s;
        gather(img, &lv.mask, y);
        let cm = ctf.map(|c| {
            gather(c, &lv.mask, cm);
            cm.as_slice()
        });
        let loss = self.loss_fn(y);
        let mut cands = Vec::with_capacity(kept.len() * 8);
        for ((k, ch), sl) in kept.iter().zip(children).zip(slices.chunks_exact(8 * m.max(1))) {
            translate_one(&lv.freqs, y, k.shift, yc);
            translate_set(lv, yc, cm, yr, t);
            slice_stats(sl, m, cm, stats);
            score(t, m, sl, stats, loss, (dots, best), None);
            for (c, &(l, si)) in ch.iter().zip(best.iter()) {
                let o = lv.shifts[si as usize];
                let shift = [k.shift[0] + o[0], k.shift[1] + o[1]];
                cands.push(Kept { map: k.map, quat: c.quat, s2: c.s2, s1: c.s1, shift, loss: l });
            }
        }
        keep_best(cands, keep)
    }

    /// The loss of each image at a given pose (`poses[b]` for image `b`), at band limit `L(niter)` with the
    /// search's loss: what [`Self::search`] minimises, e.g. to compare a found pose with a known one.
    pub fn loss_at(
        &self,
        model: &impl SlicePredictor,
        images: &[f32],
        ctf: Option<&[f32]>,
        poses: &[Pose],
    ) -> Result<Vec<f32>> {
        let n = self.check_inputs(images, ctf, "PoseSearch::loss_at")?;
        if poses.len() != n {
            return Err(Error::Shape {
                op: "PoseSearch::loss_at",
                expected: format!("{n} poses, one per image"),
                got: format!("{} poses", poses.len()),
            });
        }
        let e2 = self.lattice.len();
        let lv = Level::new(&self.lattice, self.band_limit(self.config.niter), vec![[0.0, 0.0]]);
        let m = lv.m();
        let rots: Vec<Mat3> = poses.iter().map(|p| p.rot).collect();
        let mut slices = vec![0.0f32; n * m];
        model.predict(&rots, &lv.mask, &mut slices)?;
        Ok(images
            .par_chunks(e2)
            .zip(slices.par_chunks(m.max(1)))
            .zip(poses.par_iter())
            .enumerate()
            .map_init(Scratch::default, |s, (b, ((img, sl), pose))| {
                let Scratch { y, yc, yr, ctf: cm, t, dots, stats, best } = s;
                gather(img, &lv.mask, y);
                let cm = ctf.map(|c| {
                    gather(&c[b * e2..(b + 1) * e2], &lv.mask, cm);
                    cm.as_slice()
                });
                translate_one(&lv.freqs, y, pose.shift_px, yc);
                translate_set(&lv, yc, cm, yr, t);
                slice_stats(sl, m, cm, stats);
                score(t, m, sl, stats, self.loss_fn(y), (dots, best), None);
                best[0].0
            })
            .collect())
    }

    /// The slow twin of [`Self::search`]: every rotation of the [`So3Grid`] at `resolution` × every shift in
    /// `shifts`, at band limit `min(l_max, D/2)` (= `L(niter)`), same loss; the best pose per image (first in
    /// grid order among equal losses). Rotations are predicted `EXHAUSTIVE_BLOCK` at a time.
    pub fn exhaustive(
        &self,
        model: &impl SlicePredictor,
        images: &[f32],
        ctf: Option<&[f32]>,
        resolution: u32,
        shifts: &[[f32; 2]],
    ) -> Result<Vec<SearchResult>> {
        let n = self.check_inputs(images, ctf, "PoseSearch::exhaustive")?;
        if resolution > MAX_RESOLUTION {
            return Err(Error::Param {
                name: "resolution",
                value: resolution.to_string(),
                why: format!("SO(3) grids go up to resolution {MAX_RESOLUTION}"),
            });
        }
        if shifts.is_empty() {
            return Err(Error::Param {
                name: "shifts",
                value: "[]".into(),
                why: "need at least one shift".into(),
            });
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let e2 = self.lattice.len();
        let lv = Level::new(&self.lattice, self.config.l_max.min(self.d / 2), shifts.to_vec());
        let m = lv.m();
        let (s2, psi) = (so3::grid_s2(resolution), so3::grid_s1(resolution));
        let total = s2.len() * psi.len();
        let mut best = vec![(f32::INFINITY, Pose::IDENTITY); n];
        let mut rots = Vec::with_capacity(EXHAUSTIVE_BLOCK);
        let mut slices = Vec::new();
        for r0 in (0..total).step_by(EXHAUSTIVE_BLOCK) {
            let rn = EXHAUSTIVE_BLOCK.min(total - r0);
            rots.clear();
            rots.extend((r0..r0 + rn).map(|i| {
                let (theta, phi) = s2[i / psi.len()];
                quat_matrix(so3::hopf_to_quat(theta, phi, psi[i % psi.len()]))
            }));
            slices.resize(rn * m, 0.0);
            model.predict(&rots, &lv.mask, &mut slices)?;
            let shared = ctf.is_none().then(|| {
                let mut st = Vec::new();
                slice_stats(&slices, m, None, &mut st);
                st
            });
            best.par_iter_mut().zip(images.par_chunks(e2)).enumerate().for_each_init(
                Scratch::default,
                |s, (b, (bst, img))| {
                    let c = ctf.map(|c| &c[b * e2..(b + 1) * e2]);
                    let Scratch { y, yr, ctf: cm, t, dots, stats, best: sc, .. } = s;
                    gather(img, &lv.mask, y);
                    let cm = c.map(|c| {
                        gather(c, &lv.mask, cm);
                        cm.as_slice()
                    });
                    translate_set(&lv, y, cm, yr, t);
                    let st = match &shared {
                        Some(st) => st.as_slice(),
                        None => {
                            slice_stats(&slices, m, cm, stats);
                            stats.as_slice()
                        }
                    };
                    score(t, m, &slices, st, self.loss_fn(y), (dots, sc), None);
                    for (r, &(l, si)) in sc.iter().enumerate() {
                        if l < bst.0 {
                            *bst = (l, Pose { rot: rots[r], shift_px: lv.shifts[si as usize] });
                        }
                    }
                },
            );
        }
        Ok(best.into_iter().map(|(loss, pose)| SearchResult { pose, loss }).collect())
    }
}
