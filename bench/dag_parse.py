"""DAG parse time per file in ``dags/`` against an empty DAG file's, as Airflow's DAG processor parses them.

``python -m bench.dag_parse [--rounds 7]`` (no stack needed). Each parse runs in a fresh Python process that has
already imported Airflow (as the DAG processor has, before it forks one process per file), so what is timed is
``DagBag`` processing the one file (its own imports, ``vdi.*``; building the DAG; Airflow's checks) and the
DAG's serialization, which the processor sends to the database. Each file is parsed twice a round: as the local
stack's DAG processor does (``plugins/airflow_local_settings.py`` has imported the tasks' modules) and in a bare
interpreter. The empty DAG file (one DAG, no tasks) and a DAG of one TaskFlow task (Airflow's own share of a
TaskFlow file) are written to a temporary folder. Files are interleaved round by round, so background load hits
them alike; the median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"
PLUGINS_DIR = REPO_ROOT / "plugins"

EMPTY_DAG = '''"""An empty DAG: the floor of DAG parse time."""
import pendulum

from airflow.sdk import dag


@dag(dag_id="empty", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def empty():
    pass


empty()
'''

# Airflow's own share of a TaskFlow DAG file: the @task decorators' imports and one task.
ONE_TASK_DAG = '''"""A DAG of one TaskFlow task: what the @task machinery alone costs a DAG file."""
import pendulum

from airflow.sdk import dag, task


@dag(dag_id="one_task", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def one_task():
    @task
    def nothing():
        pass

    nothing()


one_task()
'''

_PARSE_ONE = r"""
import json, sys, time
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(dag_folder="/nonexistent", collect_dags=False)
started = time.perf_counter()
found = bag.process_file(sys.argv[1])
for dag in found:
    DagSerialization.to_dict(dag)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "dags": sorted(d.dag_id for d in found),
                  "errors": list(bag.import_errors.values())}))
"""


def parse_once(path: Path, plugins_folder: Path) -> dict:
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder)}
    result = subprocess.run([sys.executable, "-c", _PARSE_ONE, str(path)], capture_output=True, text=True,
                            timeout=300, cwd=REPO_ROOT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"parsing {path.name} crashed: {result.stderr[-1000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(files: list[Path], rounds: int, plugins_folders: dict[str, Path]) -> dict[tuple[str, str], list[float]]:
    """(file name, plugins folder's name) -> parse seconds per round; a file that fails to parse raises."""
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for path in files:
            for setting, folder in plugins_folders.items():
                parsed = parse_once(path, folder)
                if parsed["errors"] or not parsed["dags"]:
                    raise RuntimeError(f"{path.name} did not parse: {parsed['errors'] or 'no DAG'}")
                times.setdefault((path.name, setting), []).append(parsed["seconds"])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dags", type=Path, default=DAGS_DIR, help="the folder of DAG files to time")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vdi-dag-parse-") as tmp:
        empty, one_task = Path(tmp) / "empty_dag.py", Path(tmp) / "one_task_dag.py"
        empty.write_text(EMPTY_DAG)
        one_task.write_text(ONE_TASK_DAG)
        dag_files = sorted(p for p in args.dags.glob("*.py") if not p.name.startswith("_"))
        # As the stack's DAG processor parses (plugins/airflow_local_settings.py has imported the tasks'
        # modules), and in a bare interpreter that has imported only Airflow.
        (Path(tmp) / "no_plugins").mkdir()
        plugins_folders = {"stack": PLUGINS_DIR, "bare": Path(tmp) / "no_plugins"}
        # The DAG files first in each round: one that does not parse stops the bench before any other parse.
        times = measure([*dag_files, empty, one_task], args.rounds, plugins_folders)
    print(f"| DAG file | processor | median ms ({args.rounds} rounds) | min ms | max ms | × empty DAG |")
    print("|---|---|---:|---:|---:|---:|")
    for path in [empty, one_task, *dag_files]:
        for setting in plugins_folders:
            values = times[(path.name, setting)]
            median = statistics.median(values)
            floor = statistics.median(times[(empty.name, setting)])
            print(f"| {path.name} | {setting} | {median * 1000:.0f} | {min(values) * 1000:.0f} | "
                  f"{max(values) * 1000:.0f} | {median / floor:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
