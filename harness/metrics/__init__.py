"""Metric registry. One file per metric family; third parties use the
`decoderbench.metrics` entry-point group."""

from decoders.plugins import Registry

_BUILTIN_METRICS = {
    "psnr": "harness.metrics.fullref:PSNR",
    "ssim": "harness.metrics.fullref:SSIM",
    "ms_ssim": "harness.metrics.fullref:MSSSIM",
}

METRICS: Registry = Registry("metric", "decoderbench.metrics", _BUILTIN_METRICS)
