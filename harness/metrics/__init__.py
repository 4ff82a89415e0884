"""Phase 5 — metrics: the registry. One file per metric family (base.py: the protocol, scopes,
directions); lock.py: the lock table of every weight file a built-in metric loads, weights.py:
finding, checking and fetching them. Third parties register under the `decoderbench.metrics`
entry-point group."""

from decoders.plugins import Registry

_BUILTIN_METRICS = {
    # full reference: pixels (fullref.py), learned perceptual (perceptual.py), spectra (spectral.py)
    "psnr": "harness.metrics.fullref:PSNR",
    "ssim": "harness.metrics.fullref:SSIM",
    "ms_ssim": "harness.metrics.fullref:MSSSIM",
    "lpips": "harness.metrics.perceptual:LPIPS",
    "lpips_vgg": "harness.metrics.perceptual:LPIPSVGG",
    "dists": "harness.metrics.perceptual:DISTS",
    "spectral_distance": "harness.metrics.spectral:SpectralDistance",
    "hf_energy_ratio": "harness.metrics.spectral:HFEnergyRatio",
    # no reference (noref.py via pyiqa; seam.py)
    "musiq": "harness.metrics.noref:MUSIQ",
    "clipiqa": "harness.metrics.noref:CLIPIQA",
    "maniqa": "harness.metrics.noref:MANIQA",
    "niqe": "harness.metrics.noref:NIQE",
    "brisque": "harness.metrics.noref:BRISQUE",
    "topiq_nr": "harness.metrics.noref:TOPIQNR",
    "piqe": "harness.metrics.noref:PIQE",
    "seam_score": "harness.metrics.seam:SeamScore",
    # text: OCR legibility (legibility.py), prompt alignment (textalign.py, geneval.py, dpg.py)
    "legibility_cer": "harness.metrics.legibility:LegibilityCER",
    "clipscore": "harness.metrics.textalign:CLIPScore",
    "geneval": "harness.metrics.geneval:GenEval",
    "dpg_bench": "harness.metrics.dpg:DPGBench",
    # distributions (distribution.py) and seed variation (invention.py)
    "fid": "harness.metrics.distribution:FID",
    "kid": "harness.metrics.distribution:KID",
    "patch_fid": "harness.metrics.distribution:PatchFID",
    "invention_std": "harness.metrics.invention:InventionStd",
    "invention_lpips": "harness.metrics.invention:InventionLPIPS",
}

METRICS: Registry = Registry("metric", "decoderbench.metrics", _BUILTIN_METRICS)
