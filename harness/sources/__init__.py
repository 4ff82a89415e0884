"""Phase 2 — sources: what every decoder is fed.

    listing.py    a suite's items: built-in photos and charts, image folders and manifests, and the
                  kinds of items.py and benchmarks.py; ids unique, `limit` before any file opens
    prepare.py    each case's input (latent or prompt) and reference, through the cache
    items.py      the item kinds users bring: latent files and manifests, prompt lists and files
    benchmarks.py GenEval / DPG-Bench data: lock table, fetch, prompt items
    worker.py     the spawned source worker that runs learned encoders and text-to-image pipelines
    textchart.py  rendered text charts (the demo's text item, the legibility set)
    cache.py      the content-addressed tensor cache: every decoder reads the very same bytes
"""
