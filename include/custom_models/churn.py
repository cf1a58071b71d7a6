"""An estimator factory of your own, as `estimator.factory: custom_models.churn:build` names it.

modelgate calls `build(**estimator.params)` and fits what it returns on the window's rows. With
`preprocessing: none` the Pipeline gets the raw feature columns (a DataFrame), so it brings its own
encoding; modelgate seeds every `random_state` you leave unset and limits the fit's threads to the slot's.
"""

from __future__ import annotations

from typing import Any

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_tickets", "senior_citizen"]
CATEGORICAL = ["contract", "internet_service", "payment_method"]


def build(c: float = 1.0, class_weight: str | None = None, spline_knots: int = 5) -> Any:
    """Splines on the numeric columns, one-hot categories, a regularised logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, SplineTransformer

    features = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(SimpleImputer(strategy="median"), SplineTransformer(n_knots=spline_knots)),
                NUMERIC,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    return Pipeline(
        [("features", features), ("model", LogisticRegression(C=c, class_weight=class_weight, max_iter=2000))]
    )
