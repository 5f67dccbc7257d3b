"""Trained models shipped with the package; load them with ``icl_interp.load_model(name)``."""
