"""Ranking: which targets look predictable (rank_targets) and which features to use for each (select_features)."""
