"""Built-in datasets: MovieLens folders and generic item/interaction tables."""
