//! `view-header`: print the header of an MRC map or stack (or, for a .cs file, its fields and first row).
//!
//! Example usage:
//!   drgnfly view-header particles.mrcs
//!   drgnfly view-header map.mrc.gz
//!   drgnfly view-header particles.cs

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::mrc;

/// Print the header of an MRC/MRCS map or stack, or the fields and first row of a cryoSPARC .cs file.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly view-header particles.mrcs\n  drgnfly view-header map.mrc.gz\n  drgnfly view-header particles.cs"
)]
pub struct Args {
    /// An .mrc/.mrcs/.map file (also .gz/.bz2), or a cryoSPARC .cs file.
    pub input: PathBuf,
}

/// Print the header to stdout.
pub fn run(args: Args) -> Result<()> {
    let is_cs = args.input.extension().is_some_and(|e| e.eq_ignore_ascii_case("cs"));
    if is_cs {
        let cs = drgnfly_io::cs::CsFile::open(&args.input)?;
        std::io::stdout().lock().write_all(cs.describe().as_bytes())?;
        return Ok(());
    }
    let h = mrc::read_header(&args.input)?;
    let mode = mrc::MrcMode::from_code(h.mode).map(|m| m.dtype_name()).unwrap_or("unsupported");
    let order = match (h.stamp_byte_order(), h.byte_order) {
        (Some(_), o) => format!("{o:?}-endian (from machine stamp)"),
        (None, o) => format!("{o:?}-endian (guessed; machine stamp {:02x?})", h.machine_stamp),
    };
    let vs = h.voxel_size();
    let mut out = String::new();
    writeln!(out, "file:          {}", args.input.display())?;
    writeln!(out, "nx, ny, nz:    {} {} {}", h.nx, h.ny, h.nz)?;
    writeln!(out, "mode:          {} ({mode})", h.mode)?;
    writeln!(out, "byte order:    {order}")?;
    writeln!(out, "start:         {} {} {}", h.nxstart, h.nystart, h.nzstart)?;
    writeln!(out, "mx, my, mz:    {} {} {}", h.mx, h.my, h.mz)?;
    writeln!(out, "cell (Å):      {} {} {}", h.cell_lengths_a[0], h.cell_lengths_a[1], h.cell_lengths_a[2])?;
    writeln!(
        out,
        "cell angles:   {} {} {}",
        h.cell_angles_deg[0], h.cell_angles_deg[1], h.cell_angles_deg[2]
    )?;
    match h.known_voxel_size() {
        Some(_) => writeln!(out, "voxel (Å):     {} {} {}", vs[0], vs[1], vs[2])?,
        None => writeln!(
            out,
            "voxel (Å):     unknown (cell is {} {} {}; pass --Apix where needed)",
            vs[0], vs[1], vs[2]
        )?,
    }
    writeln!(out, "axis order:    {} {} {}", h.mapc, h.mapr, h.maps)?;
    writeln!(out, "dmin/max/mean: {} {} {}", h.dmin, h.dmax, h.dmean)?;
    writeln!(out, "rms:           {}", h.rms)?;
    writeln!(out, "ispg:          {}", h.ispg)?;
    writeln!(
        out,
        "ext. header:   {} bytes ({})",
        h.nsymbt,
        String::from_utf8_lossy(&h.exttyp).trim_end_matches('\0')
    )?;
    writeln!(out, "origin (Å):    {} {} {}", h.origin_a[0], h.origin_a[1], h.origin_a[2])?;
    writeln!(out, "MAP id:        {}", if h.has_map_id { "yes" } else { "missing" })?;
    writeln!(out, "nversion:      {}", h.nversion)?;
    for (i, label) in h.labels.iter().enumerate() {
        writeln!(out, "label {i}:       {label}")?;
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}
