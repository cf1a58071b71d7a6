"""Your own estimators, imported by `estimator.factory` in a spec (this folder is on the import path)."""
