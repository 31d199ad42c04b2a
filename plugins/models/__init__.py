"""Built-in models: whole recommenders used as baselines (popularity, ItemKNN, BPR-MF, LightGCN, VBPR)."""
