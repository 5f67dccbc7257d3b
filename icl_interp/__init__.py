"""icl_interp: train in-context-learning transformers and take them apart."""
