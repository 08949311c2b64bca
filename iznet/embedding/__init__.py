"""Face embedders: the network registry, per-network preprocessing, and the inference ``Embedder``."""

from iznet.embedding.embedder import Embedder, load_embedder

__all__ = ["Embedder", "load_embedder"]
