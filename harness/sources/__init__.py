"""Phase 2 — sources: what every decoder is fed.

    prepare.py    list a suite's items and prepare each case's input (latent or prompt) and reference
    items.py      the item kinds users bring: latent files and manifests, prompt lists and files
    worker.py     the spawned source worker that runs learned encoders and text-to-image pipelines
    textchart.py  rendered text charts (the demo's text item, the legibility set)
    cache.py      the content-addressed tensor cache: every decoder reads the very same bytes
"""
