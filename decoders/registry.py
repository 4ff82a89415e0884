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
    "vae": "decoders.vae:VaeDecoder",
    "vae-tiled": "decoders.vae:TiledVaeDecoder",
    "tae": "decoders.tae:TaeDecoder",
    "cascade": "decoders.cascade:Cascade",
    "pid": "decoders.pid:PidDecoder",
    "l2p": "decoders.l2p:L2pDecoder",
}

_BUILTIN_ENCODERS = {
    "pixels": "decoders.classical:PixelsEncoder",
    "vae": "decoders.vae:VaeEncoder",
    "tae": "decoders.tae:TaeEncoder",
    "dinov2": "decoders.rae:Dinov2Encoder",
    "siglip": "decoders.rae:SiglipEncoder",
}

DECODERS: Registry = Registry("decoder", "decoderbench.decoders", _BUILTIN_DECODERS)
ENCODERS: Registry = Registry("encoder", "decoderbench.encoders", _BUILTIN_ENCODERS)
