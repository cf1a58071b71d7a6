"""Run the `modelgate` console script the way a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("modelgate")


def run_cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")}
    full_env.update(env)
    full_env["COLUMNS"] = "200"
    result = subprocess.run(
        [str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"modelgate {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def run_json(*args: str, env: dict[str, str]) -> Any:
    return json.loads(run_cli(*args, "--json", env=env).stdout)
