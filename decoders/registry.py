"""Name → class registries for decoders and encoders.

Third-party packages register through the entry-point groups
`decoderbench.decoders` and `decoderbench.encoders`.
"""

from decoders.plugins import Registry

_BUILTIN_DECODERS = {
    "nearest": "decoders.classical:Nearest",
    "bilinear": "decoders.classical:Bilinear",
    "bicubic": "decoders.classical:Bicubic",
    "lanczos": "decoders.classical:Lanczos",
}

_BUILTIN_ENCODERS = {
    "pixels": "decoders.classical:PixelsEncoder",
}

DECODERS: Registry = Registry("decoder", "decoderbench.decoders", _BUILTIN_DECODERS)
ENCODERS: Registry = Registry("encoder", "decoderbench.encoders", _BUILTIN_ENCODERS)
