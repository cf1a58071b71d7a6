"""`make demo`: a registry walkthrough on the embedded default, through the real `modelgate` CLI.

Trains two small models on a seeded, churn-like table, registers both, promotes, compares and rolls back,
then prints the audit history. Every step is the console script a user would type.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _cli(*args: str) -> str:
    script = shutil.which("modelgate") or str(Path(sys.executable).with_name("modelgate"))
    print(f"\n$ modelgate {' '.join(args)}", flush=True)
    result = subprocess.run([script, *args], capture_output=True, text=True, check=False)
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(result.returncode)
    return result.stdout


def _train(workdir: Path) -> list[tuple[Path, dict[str, float]]]:
    import joblib
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(7)
    n = 4000
    tenure = rng.integers(0, 72, n)
    charges = rng.normal(70, 25, n)
    tickets = rng.poisson(1.5, n)
    logit = -1.0 - 0.04 * tenure + 0.02 * (charges - 70) + 0.5 * tickets + 0.3 * (tickets > 3)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    features = np.column_stack([tenure, charges, tickets])
    x_train, x_test, y_train, y_test = train_test_split(features, churned, test_size=0.3, random_state=7)
    out = []
    for name, estimator in (
        ("logreg", LogisticRegression(max_iter=500)),
        ("hgb", HistGradientBoostingClassifier(max_iter=100, random_state=7)),
    ):
        estimator.fit(x_train, y_train)
        auc = float(roc_auc_score(y_test, estimator.predict_proba(x_test)[:, 1]))
        path = workdir / f"{name}.joblib"
        joblib.dump(estimator, path)
        out.append((path, {"roc_auc": round(auc, 4)}))
        print(f"trained {name}: holdout roc_auc={auc:.4f}")
    return out


def main() -> None:
    model = os.environ.get("MODELGATE_DEMO_MODEL", "churn_demo")
    with tempfile.TemporaryDirectory() as tmp:
        trained = _train(Path(tmp))
        versions = []
        for path, metrics in trained:
            registered = json.loads(
                _cli("register", model, "--artifact", str(path), "--metrics", json.dumps(metrics), "--json")
            )
            versions.append(registered["version"])
    first, second = versions
    champion = json.loads(_cli("champion", model, "--json"))
    if champion is None:
        _cli("promote", model, str(first), "--expect-champion", "none", "--reason", "first model")
    _cli("promote", model, str(second), "--reason", "gradient boosting beats logistic regression")
    _cli("compare", model, str(first), str(second))
    _cli("rollback", model, "--reason", "demo: roll back to the previous champion")
    _cli("champion", model)
    _cli("history", model)
    print("\ndemo finished: the registry lives in the embedded PostgreSQL under .modelgate/ (see README)")


if __name__ == "__main__":
    main()
