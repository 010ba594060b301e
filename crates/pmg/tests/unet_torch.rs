//! The PyTorch mirror of the denoiser (scripts/torch/pmg_unet.py, used to train it) computes what
//! burn's `UNet` computes: a tiny random denoiser written by scripts/torch/golden_unet.py in burn's
//! names and layouts loads through `load_denoiser` (with its retrieval bank), and burn's forward on
//! the fixture's inputs matches the output PyTorch stored.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use pmg::PmgDevice;
use pmg::diffusion::{AutoencoderConfig, Conditioning, UNet, load_denoiser};
use pmg::tensor_io::{Dtype, NamedTensor, Weights};

/// Max abs difference allowed. Both sides run f32 on the same (f16-representable) weights; what
/// differs is summation order (convolutions, matmuls, norms), burn's erf vs PyTorch's in gelu, and
/// exp/cos/sin of the timestep embedding (arguments up to 999). Measured when the fixture was made:
/// 1.4e-6 on outputs up to 1.4 (PyTorch f32 vs f64 on the same input: 1e-6), so 2e-5 leaves >10x for
/// another CPU's kernels. Mirror errors measured against this fixture: tanh instead of erf gelu 2.1e-4
/// (the fixture's ff1 weights are scaled up so that gelu sees inputs of a few units), an ignored
/// padding mask 3.7e-2, sin before cos 1.7e-1, one square Linear not transposed 9.3e-1.
const TOLERANCE: f32 = 2e-5;

fn take(w: &mut Weights, name: &str) -> NamedTensor {
    w.tensors.remove(name).unwrap_or_else(|| panic!("fixture has no `{name}`"))
}

type Golden = (NamedTensor, NamedTensor, NamedTensor, NamedTensor, NamedTensor);

/// The mirror's inputs and output, taken out of `w` (what is left is a denoiser export).
fn golden_inputs(w: &mut Weights) -> Golden {
    (take(w, "golden.x"), take(w, "golden.t"), take(w, "golden.text"), take(w, "golden.mask"), take(w, "golden.out"))
}

/// burn's forward on the fixture's inputs: (max abs difference to `want`, max abs of `want`).
fn compare(
    unet: &UNet,
    dev: &Device,
    x: &NamedTensor,
    t: &NamedTensor,
    text: &NamedTensor,
    mask: &NamedTensor,
    want: &NamedTensor,
) -> (f32, f32) {
    let [b, l] = [mask.shape[0], mask.shape[1]];
    assert!(mask.data.iter().any(|&m| m > 0.5), "the inputs pad some positions");
    let xt = Tensor::<4>::from_data(TensorData::new(x.data.clone(), x.shape.clone()), dev);
    let tt = Tensor::<3>::from_data(TensorData::new(text.data.clone(), text.shape.clone()), dev);
    let mt = Tensor::<2, Bool>::from_data(
        TensorData::new(mask.data.iter().map(|&m| m > 0.5).collect::<Vec<bool>>(), [b, l]),
        dev,
    );
    let got = unet.forward(xt, &t.data, tt, mt).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.data.len());
    let max_diff = got.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    (max_diff, want.data.iter().map(|a| a.abs()).fold(0.0f32, f32::max))
}

#[test]
fn burn_unet_matches_the_pytorch_mirror() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/unet_torch.safetensors");
    let bytes = std::fs::read(path)
        .expect("crates/pmg/tests/golden/unet_torch.safetensors (scripts/torch/golden_unet.py writes it)");
    let mut w = Weights::from_bytes("unet_torch", &bytes).unwrap();
    let (x, t, text, mask, want) = golden_inputs(&mut w);
    // What is left is a denoiser export (weights, bank, metadata), read by the product's loader.
    let device = PmgDevice::cpu();
    let dev = &device.device;
    let (unet, config, retrieval) =
        load_denoiser(&w.to_bytes(Dtype::F32), "unet_torch", &AutoencoderConfig::default(), dev).unwrap();
    assert_eq!((config.channels, config.d_text, config.d_context, config.heads), ([16, 32], 24, 16, 2));

    // The bank PyTorch wrote: entry 0 is the mean of text row 0, entry 1 of row 1's unpadded positions.
    let bank = retrieval.expect("the fixture carries a retrieval bank");
    assert_eq!(bank.names, vec!["alpha".to_string(), "beta é".to_string()]);
    let d = config.d_text;
    let row0 = Conditioning { rows: text.data[..5 * d].to_vec(), len: 5, width: d };
    assert_eq!(bank.nearest(&row0, 1)[0].0, 0);
    assert!(bank.nearest(&row0, 1)[0].1 > 0.99, "bank key of entry 0: {:?}", bank.nearest(&row0, 1));

    let (max_diff, scale) = compare(&unet, dev, &x, &t, &text, &mask, &want);
    eprintln!("burn vs PyTorch: max abs diff {max_diff:.3e} (outputs up to {scale:.3})");
    assert!(scale > 0.1, "a degenerate fixture ({scale})");
    assert!(max_diff <= TOLERANCE, "burn and the PyTorch mirror differ by {max_diff:.3e} (> {TOLERANCE:e})");
}

/// By hand, for any denoiser file (the shipped one, or an export of scripts/torch/train_denoiser.py):
/// ```text
/// python scripts/torch/golden_unet.py --check models/emoji-denoiser.safetensors /tmp/unet_check.safetensors
/// PMG_DENOISER=models/emoji-denoiser.safetensors PMG_UNET_CHECK=/tmp/unet_check.safetensors \
///     cargo test --release --test unet_torch -- --ignored --nocapture
/// ```
/// The file loads with `load_denoiser` (so a PyTorch export is a valid product file) and burn's output
/// on the script's random inputs matches the mirror's.
#[test]
#[ignore = "needs PMG_DENOISER and PMG_UNET_CHECK (see the doc comment)"]
fn denoiser_file_matches_the_mirror() {
    let file = std::env::var("PMG_DENOISER").expect("PMG_DENOISER");
    let check = std::env::var("PMG_UNET_CHECK").expect("PMG_UNET_CHECK");
    let mut w = Weights::from_bytes(&check, &std::fs::read(&check).unwrap()).unwrap();
    let (x, t, text, mask, want) = golden_inputs(&mut w);
    let device = PmgDevice::cpu();
    let dev = &device.device;
    let (unet, config, retrieval) =
        load_denoiser(&std::fs::read(&file).unwrap(), &file, &AutoencoderConfig::default(), dev).unwrap();
    let (max_diff, scale) = compare(&unet, dev, &x, &t, &text, &mask, &want);
    eprintln!(
        "{file}: {config:?}, bank of {} entries; burn vs PyTorch max abs diff {max_diff:.3e} (outputs up to {scale:.3})",
        retrieval.as_ref().map_or(0, |r| r.len())
    );
    assert!(max_diff <= 10.0 * TOLERANCE, "{max_diff:.3e}");
}
