//! Latent-space analysis: PCA, k-means, UMAP, traversals, convergence diagnostics, plots and reports.

pub mod error;
pub mod kmeans;
pub mod knn;
pub mod latents;
pub mod linalg;
pub mod metrics;
pub mod pca;
pub mod plot;
pub mod render;
pub mod report;
mod viz_error;

pub use error::{Error, Result};
pub use latents::Latents;
pub use viz_error::{VizError, VizResult};
