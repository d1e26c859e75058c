//! The VAE training loss (cryoDRGN `train_vae.loss_function`, reference §2.8).
//!
//! With predicted slices ŷ (B, N) in Hartley units, CTF c (B, N), targets y (B, N), and posterior (μ, log σ²):
//!
//! - gen = 1/(B·N) Σ (c·ŷ − y)², the MSE over batch × masked pixels;
//! - KLD = 1/B Σ_b −½ Σ_d (1 + log σ² − μ² − σ²);
//! - loss = gen + β·KLD / N, with N = |mask| the masked pixel count (β defaults to 1/zdim), or with
//!   `--beta-control γ` loss = gen + γ·(β − KLD)² / N ([`KlWeight`]).

use candle_core::Tensor;

use crate::error::{Error, Result};

/// The loss terms as scalar tensors (the graph is kept for `backward`).
#[derive(Clone, Debug)]
pub struct VaeLoss {
    /// Reconstruction MSE.
    pub gen: Tensor,
    /// Mean KL divergence to N(0, I).
    pub kld: Tensor,
    /// gen + β·KLD/N.
    pub total: Tensor,
}

/// The three terms read back as numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossValues {
    /// Reconstruction MSE.
    pub gen: f32,
    /// Mean KL divergence.
    pub kld: f32,
    /// Total loss.
    pub total: f32,
}

impl VaeLoss {
    /// Read the terms, failing with [`Error::NonFinite`] naming the first NaN or infinite term (the trainer
    /// stops on it instead of training on garbage; cryoDRGN raises "KLD is nan").
    pub fn values(&self) -> Result<LossValues> {
        let v = LossValues {
            gen: self.gen.to_scalar::<f32>()?,
            kld: self.kld.to_scalar::<f32>()?,
            total: self.total.to_scalar::<f32>()?,
        };
        for (term, value, hint) in [
            (
                "gen loss",
                v.gen,
                "check the images and the normalisation for NaN/Inf, or lower the learning rate",
            ),
            ("KLD", v.kld, "the encoder diverged: lower the learning rate or beta"),
            ("total loss", v.total, "lower the learning rate"),
        ] {
            if !value.is_finite() {
                return Err(Error::NonFinite { term, value, hint });
            }
        }
        Ok(v)
    }
}

/// How the KL term enters the loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KlWeight {
    /// gen + β·KLD/N.
    Beta(f64),
    /// cryoDRGN's `--beta-control γ`: gen + γ·(β − KLD)²/N, which holds the KLD near the target β.
    Control {
        /// Target KLD.
        beta: f64,
        /// Weight of the squared deviation.
        gamma: f64,
    },
}

/// KL(N(μ, σ²) ‖ N(0, I)) of latents (B, zdim): −½ Σ_d (1 + log σ² − μ² − σ²), averaged over the batch.
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let per_image = ((logvar + 1.0)? - mu.sqr()? - logvar.exp()?)?.sum(1)?;
    Ok((per_image.mean_all()? * -0.5)?)
}

/// The loss of one batch (module docs). `ctf` multiplies the prediction when given.
pub fn vae_loss(
    slice: &Tensor,
    target: &Tensor,
    ctf: Option<&Tensor>,
    mu: &Tensor,
    logvar: &Tensor,
    kl: KlWeight,
) -> Result<VaeLoss> {
    if slice.dims() != target.dims() || slice.rank() != 2 {
        return Err(Error::shape(
            "loss target",
            format!("{:?} (B, N) like the slice", slice.dims()),
            target.dims(),
        ));
    }
    if let Some(c) = ctf {
        if c.dims() != slice.dims() {
            return Err(Error::shape("loss ctf", format!("{:?}", slice.dims()), c.dims()));
        }
    }
    if mu.dims() != logvar.dims() || mu.rank() != 2 {
        return Err(Error::shape("loss logvar", format!("{:?} (B, zdim) like mu", mu.dims()), logvar.dims()));
    }
    let n_pixels = slice.dim(1)?;
    let pred = match ctf {
        Some(c) => (slice * c)?,
        None => slice.clone(),
    };
    let gen = (pred - target)?.sqr()?.mean_all()?;
    let kld = kl_divergence(mu, logvar)?;
    let n = n_pixels as f64;
    let total = match kl {
        KlWeight::Beta(beta) => (&gen + (&kld * (beta / n))?)?,
        KlWeight::Control { beta, gamma } => (&gen + ((&kld - beta)?.sqr()? * (gamma / n))?)?,
    };
    Ok(VaeLoss { gen, kld, total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn loss_matches_hand_computation() -> Result<()> {
        let dev = Device::Cpu;
        let slice = Tensor::new(&[[1.0f32, 2.0], [0.5, -1.0]], &dev)?;
        let target = Tensor::new(&[[0.0f32, 1.0], [1.0, 1.0]], &dev)?;
        let ctf = Tensor::new(&[[1.0f32, -1.0], [2.0, 0.5]], &dev)?;
        let mu = Tensor::new(&[[0.5f32], [-1.0]], &dev)?;
        let logvar = Tensor::new(&[[0.0f32], [1.0]], &dev)?;
        let loss = vae_loss(&slice, &target, Some(&ctf), &mu, &logvar, KlWeight::Beta(0.5))?.values()?;
        // residuals: 1, −3, 0, −1.5 → MSE = (1 + 9 + 0 + 2.25)/4.
        let gen = 12.25 / 4.0;
        let kld0 = -0.5 * (1.0 + 0.0 - 0.25 - 1.0);
        let kld1 = -0.5 * (1.0 + 1.0 - 1.0 - 1f32.exp());
        let kld = (kld0 + kld1) / 2.0;
        assert!((loss.gen - gen).abs() < 1e-6);
        assert!((loss.kld - kld).abs() < 1e-6);
        assert!((loss.total - (gen + 0.5 * kld / 2.0)).abs() < 1e-6);
        let control = KlWeight::Control { beta: 3.0, gamma: 2.0 };
        let loss = vae_loss(&slice, &target, Some(&ctf), &mu, &logvar, control)?.values()?;
        assert!((loss.total - (gen + 2.0 * (kld - 3.0).powi(2) / 2.0)).abs() < 1e-5);
        let bad = Tensor::new(&[[f32::NAN], [0.0]], &dev)?;
        let err = vae_loss(&slice, &target, None, &bad, &logvar, KlWeight::Beta(0.5))?.values();
        assert!(matches!(err, Err(Error::NonFinite { term: "KLD", .. })));
        Ok(())
    }
}
