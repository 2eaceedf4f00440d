"""A burst of desktop requests through the whole local stack, side by side with Airflow's own floor.

``python -m bench.burst [--tickets 100] [--first-boot-s 2]`` (run it under ``flock /tmp/vdi-e2e.lock``: it starts
a stack of its own, as ``make run`` does, in a private directory on free ports):

1. the stack starts with a Jira seed of ``--tickets`` + 1 distinct desktop users, a catalog whose guardrails let
   them all in, the first-boot stand-in taking ``--first-boot-s`` seconds, and a dags folder of its own: the
   product's DAG files plus ``bench/floor_dags/vdi_provision_floor.py`` (``vdi_provision``'s shape, tasks that do
   nothing);
2. one warm-up ticket and one warm-up floor run;
3. the floor: ``--tickets`` runs of ``vdi_provision_floor`` triggered at once through Airflow's REST API, as the
   bridge's relay triggers ``vdi_provision``;
4. the burst: ``--tickets`` tickets filed, then approved at once in the Jira sandbox (webhook → bridge → relay →
   Airflow → moto, Leostream sandbox, first-boot stand-in), followed until every request is ready or failed;
5. checks (every request ready, one instance per ticket in moto, one broker pool, one comment of each kind),
   where the time goes from Airflow's task instances, and a plot (``--plot``).

Exit status 0: every floor met; 3: a floor missed; 2: not a valid run (the stack did not start, a deadline).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests
import yaml

from bench import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
FLOOR_DAG_FILE = REPO_ROOT / "bench" / "floor_dags" / "vdi_provision_floor.py"
FLOOR_DAG_ID = "vdi_provision_floor"
PRODUCT_DAG_ID = "vdi_provision"
SEED_PATH = REPO_ROOT / "sandbox" / "data" / "jira_seed.json"
STACK_PORT_VARIABLES = ("VDI_PG_PORT", "VDI_AIRFLOW_PORT", "VDI_BRIDGE_PORT", "VDI_JIRA_PORT",
                        "VDI_LEOSTREAM_PORT", "VDI_MOTO_PORT")
RATIO_FLOOR = 1.5
TERMINAL_RUN_STATES = ("success", "failed")
# Where a task instance's time goes, in the order of a task's life.
PHASES = ("delivery", "run queued", "scheduling", "pool", "executor", "running", "waiting")
WAIT_OPERATORS = ("StepWait",)  # vdi.waits: deferred to the triggerer


def log(message: str) -> None:
    print(f"[burst {datetime.now(timezone.utc):%H:%M:%S}] {message}", flush=True)


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]  # nearest rank


# --- the stack ---------------------------------------------------------------------------------------------------

def bench_users(count: int) -> list[dict]:
    """``count`` desktop users for the Jira seed, distinct from the shipped ones."""
    return [{"accountId": f"712020:bench{i:024d}", "displayName": f"Bench Artist {i:03d}",
             "emailAddress": f"bench-{i:03d}@studio.example", "timeZone": "Etc/UTC",
             "groups": ["jira-software-users"]} for i in range(count)]


def prepare(work: Path, users: list[dict], tickets: int) -> dict[str, str]:
    """The seed, the catalog and the dags folder of the bench's stack; its environment."""
    seed = json.loads(SEED_PATH.read_text())
    seed["users"] += users
    (work / "jira_seed.json").write_text(json.dumps(seed))
    catalog = yaml.safe_load((REPO_ROOT / "include" / "catalog.yaml").read_text())
    catalog["limits"]["requests_in_flight"] = max(catalog["limits"]["requests_in_flight"], tickets + 1)
    (work / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    dags = work / "dags"
    dags.mkdir()
    for dag_file in [*sorted((REPO_ROOT / "dags").glob("*.py")), FLOOR_DAG_FILE]:
        (dags / dag_file.name).symlink_to(dag_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VDI_", "JIRA_", "LEOSTREAM_"))}
    env.update({variable: str(free_port()) for variable in STACK_PORT_VARIABLES})
    env.update({
        "VDI_LOCAL_DIR": str(work / "local"),
        "VDI_CATALOG_PATH": str(work / "catalog.yaml"),
        "VDI_DEMO": "0",
        "JIRA_SANDBOX_SEED": str(work / "jira_seed.json"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    })
    return env


def stack(command: str, env: dict[str, str], timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sandbox.stack", command], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


class Airflow:
    """Airflow's REST API v2 with a token from ``/auth/token``."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.credentials = {"username": username, "password": password}
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def request(self, method: str, path: str, **kwargs) -> dict:
        for _ in range(2):
            if "Authorization" not in self.session.headers:
                token = self.session.post(f"{self.base_url}/auth/token", json=self.credentials, timeout=30)
                token.raise_for_status()
                self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=60, **kwargs)
            if response.status_code != 401:
                break
            del self.session.headers["Authorization"]
        response.raise_for_status()
        return response.json()

    def paged(self, path: str, key: str, **params) -> list[dict]:
        items, offset = [], 0
        while True:
            page = self.request("GET", path, params={**params, "limit": 100, "offset": offset})[key]
            items += page
            if len(page) < 100:
                return items
            offset += 100

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> None:
        self.request("POST", f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None,
                                                              "conf": conf})

    def runs(self, dag_id: str) -> list[dict]:
        return self.paged(f"/dags/{dag_id}/dagRuns", "dag_runs")

    def task_instances(self, dag_id: str) -> list[dict]:
        return self.paged(f"/dags/{dag_id}/dagRuns/~/taskInstances", "task_instances")

    def dag_loaded(self, dag_id: str) -> bool:
        try:
            return bool(self.request("GET", f"/dags/{dag_id}"))
        except requests.RequestException:
            return False


# --- the two bursts ----------------------------------------------------------------------------------------------

@dataclass
class Burst:
    """One side of the comparison: when each item started (approved or triggered) and ended, and its runs."""

    name: str
    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)  # item -> its DAG run
    task_instances: dict[str, list[dict]] = field(default_factory=dict)  # run id -> its task instances

    @property
    def latencies(self) -> list[float]:
        return [self.ended[key] - self.started[key] for key in self.started if key in self.ended]

    @property
    def makespan(self) -> float:
        return max(self.ended.values()) - min(self.started.values()) if self.ended else float("nan")


def run_floor(airflow: Airflow, count: int, prefix: str, deadline_s: float) -> Burst:
    """``count`` floor runs triggered at once (16 at a time, as fast as Airflow takes them)."""
    burst = Burst("floor")
    run_ids = [f"{prefix}-{i:03d}" for i in range(count)]

    def trigger(run_id: str) -> None:
        burst.started[run_id] = time.time()
        airflow.trigger(FLOOR_DAG_ID, run_id, {"issue_key": f"FLOOR-{run_id.rsplit('-', 1)[1]}"})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(trigger, run_ids))

    def finished():
        runs = {r["dag_run_id"]: r for r in airflow.runs(FLOOR_DAG_ID) if r["dag_run_id"] in burst.started}
        return runs if sum(r["state"] in TERMINAL_RUN_STATES for r in runs.values()) == count else None

    runs = wait_for(finished, deadline_s, f"{count} floor runs", interval_s=2)
    for run_id, run in runs.items():
        burst.runs[run_id] = run
        burst.ended[run_id] = parse_time(run["end_date"])
    return burst


def file_tickets(jira, users: list[dict]) -> list[str]:
    fields = {f["name"].lower(): f["id"] for f in jira.get_all_fields()}
    keys = []
    for user in users:
        keys.append(jira.issue_create(fields={
            "project": {"key": "VDI"}, "issuetype": {"name": "Desktop Request"},
            "summary": f"Bench: a standard desktop for {user['displayName']}",
            fields["desktop bundle"]: {"value": "standard"},
            fields["desktop user"]: {"accountId": user["accountId"]},
        })["key"])
    return keys


def approve_at_once(jira_factory, keys: list[str]) -> dict[str, float]:
    """Approve every ticket at once (16 connections); each ticket's approval time."""
    import threading

    local = threading.local()
    approved: dict[str, float] = {}

    def approve(key: str) -> None:
        if not hasattr(local, "jira"):
            local.jira = jira_factory()
        started = time.time()
        local.jira.set_issue_status(key, "Approved")
        approved[key] = started

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(approve, keys))
    return approved


def request_outcomes(database_url: str, keys: list[str]) -> dict[str, dict]:
    """issue key -> {state, ready_at} from the app database."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, row_factory=dict_row, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT r.issue_key, r.state, (SELECT max(e.at) FROM request_events e WHERE e.request_id = r.request_id"
            " AND e.step = 'jira_ready' AND e.outcome = 'ready') AS ready_at,"
            " (SELECT min(e.at) FROM request_events e WHERE e.request_id = r.request_id"
            " AND e.step = 'launch_instance' AND e.outcome IN ('launched', 'done')) AS launched_at"
            " FROM desktop_requests r WHERE r.issue_key = ANY(%s)", (keys,)).fetchall()
    return {row["issue_key"]: row for row in rows}


def run_burst(env: dict[str, str], users: list[dict], deadline_s: float) -> tuple[Burst, list[str], dict]:
    from atlassian import Jira

    def jira_factory():
        return Jira(url=env["JIRA_URL"], username=env["JIRA_USER"], password=env["JIRA_TOKEN"], timeout=60)

    keys = file_tickets(jira_factory(), users)
    log(f"filed {len(keys)} tickets ({keys[0]} … {keys[-1]}); approving them at once")
    burst = Burst("burst")
    burst.started = approve_at_once(jira_factory, keys)
    log(f"approved {len(keys)} tickets in {max(burst.started.values()) - min(burst.started.values()):.1f} s")

    def settled():
        outcomes = request_outcomes(env["VDI_DATABASE_URL"], keys)
        done = [k for k, row in outcomes.items() if row["state"] in ("ready", "failed", "rejected")]
        return outcomes if len(done) == len(keys) else None

    outcomes = wait_for(settled, deadline_s, f"{len(keys)} requests ready or failed", interval_s=2)
    for key, row in outcomes.items():
        if row["state"] == "ready" and row["ready_at"]:
            burst.ended[key] = row["ready_at"].timestamp()
    return burst, keys, outcomes


def attach_runs(airflow: Airflow, burst: Burst, dag_id: str, key_of) -> None:
    """Each item's DAG run (the latest, when a duplicate delivery made two) and the runs' task instances."""
    for run in sorted(airflow.runs(dag_id), key=lambda r: r.get("queued_at") or ""):
        if (key := key_of(run)) in burst.started:
            burst.runs[key] = run
    wanted = {run["dag_run_id"] for run in burst.runs.values()}
    for ti in airflow.task_instances(dag_id):
        if ti["dag_run_id"] in wanted:
            burst.task_instances.setdefault(ti["dag_run_id"], []).append(ti)


# --- where the time goes -----------------------------------------------------------------------------------------

def phases(burst: Burst, upstream: dict[str, set[str]], sensors: set[str]) -> dict[str, dict[str, float]]:
    """item -> seconds per phase along its run (its steps run one after another): delivery (start → run
    created), run queued (created → running; ``max_active_runs``), scheduling (upstream done → scheduled),
    pool (scheduled → queued), executor (queued → started: a free slot, the task process's start), running,
    and waiting (a wait's or sensor's upstream done to its end: its task process, the triggerer's checks or the
    sensor's pokes, and the waiting itself)."""
    result = {}
    for key, run in burst.runs.items():
        if key not in burst.ended:
            continue
        tis = {ti["task_id"]: ti for ti in burst.task_instances.get(run["dag_run_id"], [])}
        run_start = parse_time(run["start_date"]) or parse_time(run["queued_at"])
        spent = dict.fromkeys(PHASES, 0.0)
        spent["delivery"] = max(0.0, parse_time(run["queued_at"]) - burst.started[key])
        spent["run queued"] = max(0.0, run_start - parse_time(run["queued_at"]))
        for task_id, ti in tis.items():
            if not ti["start_date"] or not ti["end_date"]:
                continue
            ups = [parse_time(tis[u]["end_date"]) for u in upstream[task_id] if u in tis and tis[u]["end_date"]]
            ready = max(ups, default=run_start)
            start, end = parse_time(ti["start_date"]), parse_time(ti["end_date"])
            if task_id in sensors:
                spent["waiting"] += max(0.0, end - ready)
                continue
            scheduled = parse_time(ti["scheduled_when"]) or ready
            queued = parse_time(ti["queued_when"]) or scheduled
            spent["scheduling"] += max(0.0, scheduled - ready)
            spent["pool"] += max(0.0, queued - scheduled)
            spent["executor"] += max(0.0, start - queued)
            spent["running"] += max(0.0, end - start)
        result[key] = spent
    return result


def task_running_times(burst: Burst, sensors: set[str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for tis in burst.task_instances.values():
        for ti in tis:
            if ti["task_id"] not in sensors and ti["duration"] is not None:
                times.setdefault(ti["task_id"], []).append(ti["duration"])
    return times


def dag_shape(airflow: Airflow, dag_id: str) -> tuple[dict[str, set[str]], set[str]]:
    """task id -> upstream task ids, and the sensors, from Airflow's own view of the DAG."""
    tasks = airflow.request("GET", f"/dags/{dag_id}/tasks")["tasks"]
    upstream: dict[str, set[str]] = {t["task_id"]: set() for t in tasks}
    for task in tasks:
        for down in task["downstream_task_ids"]:
            upstream[down].add(task["task_id"])
    sensors = {t["task_id"] for t in tasks if "sensor" in (t.get("operator_name") or "").lower()
               or t.get("operator_name") in WAIT_OPERATORS}
    return upstream, sensors


# --- checks ------------------------------------------------------------------------------------------------------

def duplicates(env: dict[str, str], keys: list[str], burst: Burst) -> dict[str, list[str]]:
    """Everything that exists more (or less) than once per ticket: instances in moto (any state), broker pools,
    comments of each kind; plus the tickets' failure comments and retried tasks."""
    import boto3
    from atlassian import Jira

    from vdi.jira import COMMENT_MARKER_PREFIX
    from vdi.leostream import LeostreamClient

    problems: dict[str, list[str]] = {}
    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    instances: dict[str, int] = {}
    tagged = [{"Name": "tag-key", "Values": ["vdi:issue"]}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=tagged):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                issue = next(t["Value"] for t in instance["Tags"] if t["Key"] == "vdi:issue")
                instances[issue] = instances.get(issue, 0) + 1
    with LeostreamClient(env["LEOSTREAM_URL"], env["LEOSTREAM_USER"], env["LEOSTREAM_PASSWORD"]) as broker:
        pools: dict[str, int] = {}
        for pool in broker.pools():
            pools[pool["name"]] = pools.get(pool["name"], 0) + 1
    jira = Jira(url=env["JIRA_URL"], username=env["JIRA_USER"], password=env["JIRA_TOKEN"], timeout=60)

    def comment_kinds(key: str) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for comment in jira.issue_get_comments(key)["comments"]:
            if COMMENT_MARKER_PREFIX in comment["body"]:
                kind = comment["body"].split(COMMENT_MARKER_PREFIX, 1)[1].strip().split("/")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    with ThreadPoolExecutor(8) as pool:
        comments = dict(zip(keys, pool.map(comment_kinds, keys)))
    for key in keys:
        if instances.get(key, 0) != 1:
            problems.setdefault("instances", []).append(f"{key}: {instances.get(key, 0)}")
        if pools.get(f"vdi-{key}", 0) != 1:
            problems.setdefault("broker pools", []).append(f"{key}: {pools.get(f'vdi-{key}', 0)}")
        for kind in ("in_progress", "ready"):
            if comments[key].get(kind, 0) != 1:
                problems.setdefault(f"{kind} comments", []).append(f"{key}: {comments[key].get(kind, 0)}")
        if failed := [kind for kind in comments[key] if kind.startswith("failed")]:
            problems.setdefault("failure comments", []).append(f"{key}: {', '.join(failed)}")
    for tis in burst.task_instances.values():
        for ti in tis:
            if ti["try_number"] > 1:
                problems.setdefault("retried tasks", []).append(f"{ti['dag_run_id']} {ti['task_id']} "
                                                                f"try {ti['try_number']}")
    return problems


def first_boots(env: dict[str, str]) -> dict[str, dict]:
    """issue key -> the stand-in's record of its instance's first boot (``seen``, ``played``)."""
    listing = requests.get(f"{env['LEOSTREAM_URL']}/_sandbox/first-boot", timeout=30).json()
    return {boot["issue_key"]: boot for boot in listing["instances"]}


def overhead(burst: Burst, outcomes: dict, boots: dict[str, dict]) -> dict[str, float]:
    """item -> approve-to-ready minus the physical work: from the instance's launch to the end of its first boot
    (moto and the broker sandbox answer at once, so that is EC2 plus the stand-in's first-boot delay)."""
    result = {}
    for key, ended in burst.ended.items():
        launched, boot = outcomes[key]["launched_at"], boots.get(key) or {}
        if not launched or not boot.get("played"):
            continue
        played = datetime.strptime(boot["played"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        physical = max(0.0, played - launched.timestamp())
        result[key] = ended - burst.started[key] - physical
    return result


# --- report ------------------------------------------------------------------------------------------------------

def summary_row(name: str, values: list[float]) -> str:
    return (f"| {name} | {len(values)} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} | "
            f"{max(values, default=float('nan')):.1f} |")


def plot(path: Path, burst: Burst, floor: Burst, burst_phases: dict, floor_phases: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for side, colour in ((floor, "tab:grey"), (burst, "tab:blue")):
        values = sorted(side.latencies)
        left.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", color=colour,
                  label=f"{side.name}: all done in {side.makespan:.0f} s, p50 {percentile(values, 50):.0f} s")
    left.set_xlim(left=0)
    left.set_xlabel("seconds from approval (floor: from trigger) to Ready (floor: run done)")
    left.set_ylabel("share of requests")
    left.set_title(title)
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    bottom = [0.0, 0.0]
    for phase in PHASES:
        means = [statistics.fmean(p[phase] for p in phs.values()) if phs else 0.0
                 for phs in (floor_phases, burst_phases)]
        right.bar(["floor", "burst"], means, bottom=bottom, label=phase)
        bottom = [b + m for b, m in zip(bottom, means)]
    right.set_ylabel("mean seconds per request")
    right.set_title("where the time goes (Airflow's task instances)")
    right.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(args, burst: Burst, floor: Burst, burst_phases, floor_phases, overheads, problems, outcomes,
           running_times, load: tuple[float, float]) -> bool:
    ratio = burst.makespan / floor.makespan
    not_ready = sorted(k for k, row in outcomes.items() if row["state"] != "ready")
    print(f"\n## Burst of {len(burst.started)} (first boot {args.first_boot_s:g} s), "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average (1 min) before/after "
          f"{load[0]:.2f}/{load[1]:.2f}\n")
    print("| side | requests | p50 s | p95 s | max s |\n|---|---:|---:|---:|---:|")
    print(summary_row("floor: trigger → run done", floor.latencies))
    print(summary_row("burst: approve → Ready", burst.latencies))
    print(summary_row("burst: orchestration overhead", list(overheads.values())))
    print(f"\nall done: floor {floor.makespan:.1f} s, burst {burst.makespan:.1f} s, ratio {ratio:.2f} "
          f"(floor ≤ {RATIO_FLOOR})")
    print("\n| mean s per request | " + " | ".join(PHASES) + " |\n|---|" + "---:|" * len(PHASES))
    for name, phs in (("floor", floor_phases), ("burst", burst_phases)):
        cells = [statistics.fmean(p[ph] for p in phs.values()) if phs else float("nan") for ph in PHASES]
        print(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    print("\n| task (burst) | runs | p50 running s | p95 | max |\n|---|---:|---:|---:|---:|")
    for task_id, values in running_times.items():
        print(summary_row(task_id, values))
    print(f"\nnot ready: {len(not_ready)} {not_ready[:10]}")
    for kind, items in problems.items():
        print(f"{kind}: {len(items)}: {items[:10]}")
    met = ratio <= RATIO_FLOOR and not not_ready and not any(k != "retried tasks" for k in problems)
    print(f"\nfloors {'met' if met else 'MISSED'}: ratio {ratio:.2f}, not ready {len(not_ready)}, "
          f"duplicates or failures {sum(len(v) for k, v in problems.items() if k != 'retried tasks')}, "
          f"retried tasks {len(problems.get('retried tasks', []))}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100)
    parser.add_argument("--first-boot-s", type=float, default=2.0, help="the first-boot stand-in's delay")
    parser.add_argument("--deadline-s", type=float, default=1800, help="for each side to finish")
    parser.add_argument("--plot", type=Path, help="PNG path for the latency plot")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--logs", type=Path, help="copy the stack's logs here before it is removed")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the warm-up ticket and floor run (the smoke test's choice)")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (and its directory)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="vdi-burst-"))
    users = bench_users(args.tickets + 1)
    env = prepare(work, users, args.tickets)
    env["LEOSTREAM_SANDBOX_FIRST_BOOT_DELAY_S"] = str(args.first_boot_s)
    log(f"starting the stack in {work}")
    started = stack("run", env)
    if started.returncode != 0:
        print(started.stdout[-3000:], started.stderr[-3000:], file=sys.stderr)
        stack("stop", env)
        return 2
    try:
        from sandbox.stack.settings import read_stack_env

        stack_env = read_stack_env(work / "local" / "stack.env")
        airflow = Airflow(stack_env["AIRFLOW_API_URL"], stack_env["AIRFLOW_USERNAME"], stack_env["AIRFLOW_PASSWORD"])
        wait_for(lambda: airflow.dag_loaded(FLOOR_DAG_ID) and airflow.dag_loaded(PRODUCT_DAG_ID), 180,
                 "both DAGs parsed", interval_s=1)
        warm, warm_outcomes = Burst("alone"), {}
        if args.warmup:
            log("warming up: one ticket, one floor run")
            warm, _, warm_outcomes = run_burst(stack_env, users[:1], 600)
            if not warm.ended:
                log(f"the warm-up ticket did not become ready: {warm_outcomes}")
                return 2
            run_floor(airflow, 1, "warmup", 300)
        load_before = os.getloadavg()[0]
        log(f"floor: {args.tickets} runs of {FLOOR_DAG_ID}")
        floor = run_floor(airflow, args.tickets, "floor", args.deadline_s)
        log(f"floor done in {floor.makespan:.1f} s; burst: {args.tickets} tickets")
        burst, keys, outcomes = run_burst(stack_env, users[1:], args.deadline_s)
        load_after = os.getloadavg()[0]
        log(f"burst done in {burst.makespan:.1f} s; reading Airflow's task instances")
        attach_runs(airflow, floor, FLOOR_DAG_ID, lambda run: run["dag_run_id"])
        attach_runs(airflow, burst, PRODUCT_DAG_ID, lambda run: (run.get("conf") or {}).get("issue_key"))
        upstream, sensors = dag_shape(airflow, PRODUCT_DAG_ID)
        floor_upstream, floor_sensors = dag_shape(airflow, FLOOR_DAG_ID)
        burst_phases = phases(burst, upstream, sensors)
        floor_phases = phases(floor, floor_upstream, floor_sensors)
        problems = duplicates(stack_env, keys, burst)
        boots = first_boots(stack_env)
        overheads = overhead(burst, outcomes, boots)
        alone = {"approve_to_ready_s": warm.latencies,
                 "overhead_s": list(overhead(warm, warm_outcomes, boots).values())}
        log(f"the warm-up ticket alone: approve → Ready {alone['approve_to_ready_s']} s, "
            f"orchestration overhead {alone['overhead_s']} s")
        running_times = task_running_times(burst, sensors)
        met = report(args, burst, floor, burst_phases, floor_phases, overheads, problems, outcomes, running_times,
                     (load_before, load_after))
        if args.plot:
            plot(args.plot, burst, floor, burst_phases, floor_phases,
                 f"{args.tickets} requests, first boot {args.first_boot_s:g} s")
            log(f"plot: {args.plot}")
        if args.json:
            args.json.write_text(json.dumps({
                "tickets": args.tickets, "first_boot_s": args.first_boot_s,
                "floor": {"makespan_s": floor.makespan, "latencies_s": floor.latencies},
                "burst": {"makespan_s": burst.makespan, "latencies_s": burst.latencies,
                          "overhead_s": list(overheads.values())},
                "phases": {"floor": floor_phases, "burst": burst_phases},
                "alone": alone, "running_s": running_times, "problems": problems,
                "not_ready": sorted(k for k, row in outcomes.items() if row["state"] != "ready"),
            }, indent=1, default=str))
        return 0 if met else 3
    except Exception as error:  # not a valid run: the stack's logs stay for a look
        log(f"not a valid run: {type(error).__name__}: {error}; logs kept in {work / 'local' / 'logs'}")
        args.keep_logs = True
        return 2
    finally:
        if args.keep:
            log(f"stack left running: VDI_LOCAL_DIR={work / 'local'} (stop: python -m sandbox.stack stop)")
        else:
            stack("stop", env)
            if args.logs:
                shutil.copytree(work / "local" / "logs", args.logs, dirs_exist_ok=True)
            if not getattr(args, "keep_logs", False):
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
