"""Built-in metrics: Recall, NDCG, HitRate, MRR, Precision, MAP@K and item coverage."""
