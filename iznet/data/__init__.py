"""Face datasets: building them from folders of photos, and reading them back.

- :mod:`iznet.data.builder`  ``iznet data build SRC DST``: detect, choose, align, dedupe, split, pairs.
- :mod:`iznet.data.dataset`  :class:`FaceDataset`, the reader every trainer and evaluator uses.
- :mod:`iznet.data.align`    choosing the person's face and cutting an aligned crop.
- :mod:`iznet.data.pairs`    LFW ``pairs.txt`` files: read, write, resolve to image paths.
- :mod:`iznet.data.phash`    perceptual hashes for near-duplicate photos.
"""
