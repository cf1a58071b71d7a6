"""modelgate: keep tabular scikit-learn models healthy in production."""

__version__ = "0.1.0"
