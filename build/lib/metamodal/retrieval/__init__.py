"""First-stage retrieval: faiss indexes over model item vectors or content features."""
