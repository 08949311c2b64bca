"""The two sizes the whole system agrees on. No imports, so the CLI can read them for its defaults cheaply."""

#: Side of an aligned, square face crop in pixels: what the dataset builder cuts, what the Pipeline, the detection
#: service and the gateway align to, what a gallery stores.
CROP_SIZE = 160

#: Length of a face embedding (float32, L2-normalised): what the networks output, the gallery indexes and the
#: services exchange.
EMBEDDING_DIM = 128
