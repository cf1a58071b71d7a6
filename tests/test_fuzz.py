"""Fuzzing: spec files and CLI arguments (Hypothesis) and `modelgate serve`'s API (Schemathesis).

Whatever they are given: spec loading answers a spec or `InvalidSpec`; the CLI exits 0, 1 (one `error:` line)
or 2 (usage), never with a traceback; `serve` never answers 500.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelgate.catalog import load_spec, load_specs
from modelgate.spec import InvalidSpec, ModelSpec
from tests.conftest import REPO_ROOT

CHURN = yaml.safe_load((REPO_ROOT / "include" / "models" / "churn.yaml").read_text())
_HOME = tempfile.mkdtemp(prefix="modelgate-fuzz-")  # the estimator-params cache of these examples

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["@daily", "*/15 * * * *", "-5w", "1D", "../x.csv", "gs://b/x", "roc_auc", "logistic_regression"]
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


PATHS = _paths(CHURN)


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(CHURN)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the branch
    return doc


@pytest.fixture(autouse=True)
def _fuzz_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_HOME", _HOME)


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=mutated_specs())
def test_spec_loading_never_raises_anything_but_invalid_spec(doc: Any, tmp_path_factory: Any) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp())) / "churn.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        assert isinstance(load_spec(path), ModelSpec)
    except InvalidSpec as exc:
        assert exc.errors and all(e.file == str(path) for e in exc.errors)


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_spec_files_of_any_bytes_are_reported_alone(raw: bytes, tmp_path_factory: Any) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    (folder / "junk.yaml").write_bytes(raw)
    (folder / "churn.yaml").write_text(yaml.safe_dump(CHURN))
    specs, errors = load_specs(folder)
    assert "churn" in [s.name for s in specs]  # one bad file never hides another model
    assert all(e.file.endswith("junk.yaml") for e in errors)


# ------------------------------------------------------------------------------------------------ the CLI

COMMANDS = [
    ["models"],
    ["versions"],
    ["show"],
    ["champion"],
    ["compare"],
    ["history"],
    ["register"],
    ["promote"],
    ["rollback"],
    ["deploy"],
    ["db", "current"],
    ["db", "upgrade"],
]
TOKENS = st.sampled_from(
    [
        "churn",
        "ghost",
        "Bad Name",
        "1",
        "0",
        "-1",
        "2147483648",
        "9223372036854775807",
        "1e3",
        "nan",
        "--json",
        "--wide",
        "--limit",
        "--reason",
        "--to",
        "--version",
        "--steps",
        "--expect-champion",
        "--artifact",
        "/nonexistent.joblib",
        "@model",
        "@model",
        "--metrics",
        '{"auc": NaN}',
        '{"a": 1e999}',
        "[1]",
        "{",
        "--params",
        "--tags",
        '{"t": "x"}',
        "--tag",
        "k=v",
        "--status",
        "champion",
        "bogus",
        "--from",
        "2026-13-45",
        "50,10",
        "10,100",
        "--actor",
        "",
        "\x00",
        "é",
    ]
)


ARGS = st.tuples(  # mostly a model name and a version first, as users type them, then anything
    st.lists(st.sampled_from(["churn", "ghost"]), max_size=1),
    st.lists(st.sampled_from(["1", "2", "3", "2147483648"]), max_size=1),
    st.lists(TOKENS, max_size=4),
).map(lambda parts: [*parts[0], *parts[1], *parts[2]])


def _run_main(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    from modelgate import cli

    err = io.StringIO()
    old_argv, old_env = sys.argv, dict(os.environ)
    os.environ.update(env)
    sys.argv = ["modelgate", *args]
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(old_env)
        cli._state.registry_url = None
    return code, err.getvalue()


@pytest.mark.integration
@settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    command=st.sampled_from(COMMANDS),
    extra=ARGS,
)
def test_cli_arguments_never_raise_a_traceback(
    command: list[str], extra: list[str], registry_url: str, tmp_path_factory: Any
) -> None:
    env = {
        "MODELGATE_REGISTRY_URL": registry_url,
        "MODELGATE_ARTIFACT_ROOT": str(tmp_path_factory.getbasetemp() / "fuzz-artifacts"),
        "MODELGATE_SERVING_DIR": str(tmp_path_factory.getbasetemp() / "fuzz-serving"),
        "MODELGATE_INCLUDE_DIR": str(tmp_path_factory.getbasetemp() / "fuzz-include"),
        "COLUMNS": "200",
    }
    model = tmp_path_factory.getbasetemp() / "fuzz-model.joblib"
    if not model.exists():
        import joblib
        from sklearn.linear_model import LogisticRegression

        joblib.dump(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]), model)
    args = [*command, *(str(model) if t == "@model" else t for t in extra)]
    if command == ["register"] and "--artifact" not in args:
        args += ["churn", "--artifact", str(model)]  # reach the registry, so later examples have versions
    code, stderr = _run_main(args, env)
    assert code in (0, 1, 2), (command, extra, code, stderr)
    assert "Traceback" not in stderr, (command, extra, stderr)
    if code == 1:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, extra, stderr)


# ------------------------------------------------------------------------------------------------ serve


@pytest.fixture
def serve_schema(registry: Any, tmp_path: Path) -> Any:
    import pandas as pd
    import schemathesis
    from sklearn.linear_model import LogisticRegression

    from modelgate.deploy.local import LocalTarget, deploy_local
    from modelgate.deploy.serve import create_app
    from modelgate.registry import ANY_CHAMPION, ArtifactStore, Source, VersionDraft

    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    stored = artifacts.save(LogisticRegression().fit(x, [0, 0, 1, 1]))
    draft = VersionDraft(
        artifact_uri=stored.uri,
        artifact_sha256=stored.sha256,
        artifact_size=stored.size,
        source=Source("tests", "fuzz", "train"),
        feature_schema={"a": "numeric", "b": "numeric"},
        tags={"task": "binary_classification"},
    )
    version = registry.register("demo", draft).version
    registry.promote("demo", version, expected_champion=ANY_CHAMPION, actor="tests")
    target = LocalTarget(tmp_path / "serving")
    deploy_local(
        registry,
        artifacts,
        target,
        model="demo",
        version=version,
        features=["a", "b"],
        task=draft.tags["task"],
        steps=[100],
    )
    app = create_app(target, "demo", poll_seconds=0.05, max_body_bytes=64 * 1024)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.integration
def test_serve_never_answers_500(serve_schema: Any) -> None:
    tried: dict[str, int] = {}
    statuses: set[tuple[str, int]] = set()
    for result in serve_schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call()
            label = f"{case.method.upper()} {case.path}"
            tried[label] = tried.get(label, 0) + 1
            statuses.add((label, response.status_code))
            assert response.status_code < 500, (case.path, case.body, response.status_code, response.text[:300])
            assert response.status_code in (200, 413, 422, 503), (case.path, response.status_code)

        check()
    assert set(tried) == {"GET /health", "GET /metrics", "POST /predict"}, tried
    assert ("GET /health", 200) in statuses, statuses  # the app was serving, not answering 503 to everything
