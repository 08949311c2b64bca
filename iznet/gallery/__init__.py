"""The gallery: enrolled people, their exemplar vectors in FAISS, versioned in the artifact store."""

from iznet.gallery.embedders import Embedder
from iznet.gallery.gallery import (DEFAULT_RULE, RULES, UNKNOWN, Gallery, GalleryStore, Match, reindex)

__all__ = ["DEFAULT_RULE", "RULES", "UNKNOWN", "Embedder", "Gallery", "GalleryStore", "Match", "reindex"]
