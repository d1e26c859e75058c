//! Latent-space analysis: PCA, k-means, UMAP, traversals, convergence diagnostics, plots and reports.
