"""A module that takes seconds to import, as torch, diffusers or a decoder's own package can: a decoder
lists it in `preload`, so the worker server imports it before forking any worker."""

import time

IMPORT_S = 3.0
time.sleep(IMPORT_S)
