"""Built-in rankers: classifiers that rerank retrieved candidates."""
