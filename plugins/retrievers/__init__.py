"""Built-in retrievers: nearest-neighbour indexes over item vectors (exact search, FAISS)."""
