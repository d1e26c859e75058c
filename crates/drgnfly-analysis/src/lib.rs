//! Latent-space analysis: PCA, k-means, UMAP, traversals, convergence diagnostics, plots and reports.

pub mod convergence;
pub mod error;
pub mod hierarchy;
pub mod kmeans;
pub mod knn;
pub mod latents;
pub mod learning_curve;
pub mod linalg;
pub mod metrics;
pub mod pca;
pub mod plot;
pub mod render;
pub mod report;
pub mod select;
pub mod traversal;
pub mod umap;
mod viz_error;

pub use error::{Error, Result};
pub use latents::Latents;
pub use viz_error::{VizError, VizResult};
