"""The catalogue of P-probe targets."""
