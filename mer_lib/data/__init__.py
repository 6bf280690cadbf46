"""Feature-set layout (the public IF-MMIN/MMIN release layout), folds, datasets and the synthetic corpus."""
