//! Pictures of an MRC map without ChimeraX: central slices and projections, and isosurface views.
//!
//! ```text
//! cargo run --release -p drgnfly-analysis --example render_map -- MAP.mrc OUT_PREFIX [LEVEL]
//! ```
//! writes `OUT_PREFIX_slices.png` and `OUT_PREFIX_surface.png` (front, side, top and 3/4 views, at
//! LEVEL or the default [`IsoLevel`]).

use drgnfly_analysis::render::{self, IsoLevel, RenderOptions, View, VolumeRef};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [map, prefix, rest @ ..] = args.as_slice() else {
        return Err("usage: render_map MAP.mrc OUT_PREFIX [LEVEL]".into());
    };
    let mrc = drgnfly_io::mrc::read_volume(map)?;
    let vol = VolumeRef::new(&mrc.data, mrc.shape)?;
    let level = match rest.first() {
        Some(v) => IsoLevel::Value(v.parse()?),
        None => IsoLevel::default(),
    };
    eprintln!("{map}: shape {:?}, level {:?} = {}", mrc.shape, level, level.resolve(&vol)?);
    render::slices_and_projections(&vol)?.write_png(format!("{prefix}_slices.png"))?;
    let views = vec![View::Front, View::Side, View::Top, View::ThreeQuarter];
    let opts = RenderOptions { level, size: 256, views, ..Default::default() };
    render::render_isosurface(&vol, &opts)?.write_png(format!("{prefix}_surface.png"))?;
    Ok(())
}
