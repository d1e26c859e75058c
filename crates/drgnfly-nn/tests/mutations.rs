//! Property test: the readers of run files (safetensors checkpoints, config.yaml, cryoDRGN's and our
//! exported PyTorch weights.pkl) return `Ok` or `Err` on mutants of valid files, never panic or abort.

use candle_core::Device;
use drgnfly_io::fixtures::{assert_survives_mutants, fixture};
use drgnfly_nn::config::RunConfig;
use drgnfly_nn::{
    read_checkpoint, read_cryodrgn_weights, write_checkpoint, write_cryodrgn_weights, Adam, AdamConfig,
    Checkpoint, Decoder, DecoderConfig, ParamStore,
};

#[test]
fn checkpoints_and_exported_weights() {
    let dir = tempfile::tempdir().unwrap();
    let store = ParamStore::new(0, &Device::Cpu);
    let mut cfg = DecoderConfig::new(17, 2);
    cfg.dim = 16;
    cfg.layers = 1;
    let _decoder = Decoder::new(&cfg, store.var_builder().pp("decoder")).unwrap();
    let adam = Adam::new(store.named_vars(), AdamConfig::default()).unwrap();
    let mut ckpt = Checkpoint::capture(&store, Some(&adam)).unwrap();
    ckpt.epoch = 3;
    let safetensors = dir.path().join("weights.3.safetensors");
    write_checkpoint(&safetensors, &ckpt).unwrap();
    let pkl = dir.path().join("weights.3.pkl");
    write_cryodrgn_weights(&pkl, &ckpt, Some(&AdamConfig::default()), Some([0.0, 1.0])).unwrap();

    assert_survives_mutants("checkpoint", &[safetensors], 300, |p| {
        let _ = read_checkpoint(p, &Device::Cpu);
    });
    let mut torch = vec![pkl];
    torch.extend(fixture("cryodrgn/het_weights.pkl"));
    assert_survives_mutants("torch weights", &torch, 200, |p| {
        let _ = read_cryodrgn_weights(p);
    });
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn run_configs() {
    let files: Vec<_> = fixture("cryodrgn/het_config.yaml").into_iter().collect();
    assert_survives_mutants("config.yaml", &files, 300, |p| {
        let _ = RunConfig::read(p);
    });
}
