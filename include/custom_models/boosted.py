"""LightGBM and XGBoost through the same `estimator.factory` path (both scikit-learn-compatible).

With the default `preprocessing: modelgate`, modelgate imputes and encodes by feature type in front of the
estimator these return; the spec's seed fills the `random_state` left unset, and the fit's OpenMP threads
are limited to the slot's (`estimator.threads`).
"""

from __future__ import annotations

from typing import Any


def lightgbm(n_estimators: int = 200, learning_rate: float = 0.05, num_leaves: int = 15) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves, verbose=-1)


def xgboost(n_estimators: int = 200, learning_rate: float = 0.05, max_depth: int = 4) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth)
