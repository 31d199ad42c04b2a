"""Built-in user towers: history item vectors → user vector."""
