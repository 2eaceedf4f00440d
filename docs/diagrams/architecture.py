"""Renders docs/architecture.png from the description below: ``python docs/diagrams/architecture.py``.

The PNG carries the SHA-256 of the description in its metadata (``Description-SHA256``), so a test can tell
that the image follows the description without comparing pixels. Edit the description, then re-render.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUTPUT = Path(__file__).resolve().parents[1] / "architecture.png"
HASH_KEY = "Description-SHA256"

# Groups: a labelled area (x, y of the lower left corner, width, height, caption).
GROUPS = {
    "bridge": (2.4, 1.7, 3.1, 6.8, "webhook bridge: what Jira reaches"),
    "airflow": (8.1, 1.7, 7.2, 6.8, "Airflow 3.3, CeleryExecutor (every component also uses the metadata DB)"),
    "external": (16.3, 1.7, 2.6, 6.8, "what the DAGs drive"),
}

# Components: id -> (x, y of the centre, label); the first line of a label is its name.
COMPONENTS = {
    "jira": (0.9, 6.8, "Jira Cloud\nrequest and removal\ntickets"),
    "bridge": (3.95, 6.8, "bridge\nFlask under gunicorn\nverify HMAC, record,\nanswer 202"),
    "relay": (3.95, 4.4, "relay\npython -m\nwebhook_bridge.relay"),
    "postgres": (6.95, 2.5, "PostgreSQL\napp DB: deliveries,\nrequests, event log\n+ Airflow metadata DB"),
    "api": (9.3, 7.0, "api-server\nREST API v2, UI"),
    "scheduler": (11.7, 7.0, "scheduler"),
    "dagproc": (14.1, 7.0, "dag-processor\nparses dags/"),
    "triggerer": (9.3, 4.9, "triggerer\ndeferred waits"),
    "redis": (11.7, 4.9, "Redis\nCelery broker"),
    "workers": (11.7, 2.9, "Celery workers\nvdi_provision\nvdi_deprovision\nvdi_reconcile"),
    "ec2": (17.6, 7.0, "AWS\nEC2 desktops, S3\nplaybooks, IAM role"),
    "leostream": (17.6, 4.9, "Leostream\nconnection broker:\nusers, pools, agent"),
    "jira_rest": (17.6, 2.9, "Jira REST\ncomments,\ntransitions, JQL"),
}

# Flows: (from, to, label, style, where along the arrow its label sits); "dashed" is the scheduled
# reconcile's safety net, drawn as an arc.
FLOWS = [
    ("jira", "bridge", "signed\nwebhook", "solid", 0.45),
    ("bridge", "postgres", "record the\ndelivery", "solid", 0.3),
    ("postgres", "relay", "pending\ndeliveries", "solid", 0.5),
    ("relay", "api", "trigger a run:\nPOST dagRuns", "solid", 0.6),
    ("scheduler", "redis", "queue tasks", "solid", 0.5),
    ("redis", "workers", "tasks", "solid", 0.5),
    ("workers", "postgres", "request state,\nevent log", "solid", 0.5),
    ("workers", "ec2", "launch, tag,\nstop, terminate", "solid", 0.5),
    ("workers", "leostream", "register,\nassign, remove", "solid", 0.5),
    ("workers", "jira_rest", "comment, move", "solid", 0.5),
    ("jira_rest", "workers", "vdi_reconcile: lost\nwebhooks, drift", "dashed", 0.5),
]

DESCRIPTION = {"groups": GROUPS, "components": COMPONENTS, "flows": FLOWS}

BOX_WIDTH, BOX_HEIGHT = 2.0, 1.15
GROUP_COLOURS = {"bridge": "#e8f1fb", "airflow": "#eaf6ea", "external": "#fbf1e6"}
EDGE = "#37474f"


def description_hash() -> str:
    """SHA-256 of the description, as stored in the PNG."""
    return hashlib.sha256(json.dumps(DESCRIPTION, sort_keys=True).encode()).hexdigest()


def _edge_point(centre: tuple[float, float], towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre towards another point leaves the box."""
    (x, y), (tx, ty) = centre, towards
    dx, dy = tx - x, ty - y
    scale = min((BOX_WIDTH / 2 + 0.06) / abs(dx) if dx else float("inf"),
                (BOX_HEIGHT / 2 + 0.06) / abs(dy) if dy else float("inf"))
    return x + dx * scale, y + dy * scale


def render(path: Path = OUTPUT) -> Path:
    figure, axes = plt.subplots(figsize=(16, 6.6), dpi=110)
    axes.set_xlim(-0.2, 19.1)
    axes.set_ylim(1.3, 8.6)
    axes.axis("off")
    for name, (x, y, width, height, caption) in GROUPS.items():
        axes.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.05,rounding_size=0.2",
                                      facecolor=GROUP_COLOURS[name], edgecolor="#b0bec5", zorder=0))
        axes.text(x + width / 2, y + height - 0.12, caption, ha="center", va="top", fontsize=9, style="italic",
                  color="#455a64")
    for x, y, label in COMPONENTS.values():
        axes.add_patch(FancyBboxPatch((x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT,
                                      boxstyle="round,pad=0.02,rounding_size=0.12", facecolor="white",
                                      edgecolor=EDGE, linewidth=1.2, zorder=2))
        name, _, rest = label.partition("\n")
        axes.text(x, y + BOX_HEIGHT / 2 - 0.12, name, ha="center", va="top", fontsize=10, weight="bold", zorder=3)
        axes.text(x, y + BOX_HEIGHT / 2 - 0.36, rest, ha="center", va="top", fontsize=7.5, color="#263238",
                  zorder=3, linespacing=1.15)
    for source, target, label, style, at in FLOWS:
        start = COMPONENTS[source][:2]
        end = COMPONENTS[target][:2]
        tail, head = _edge_point(start, end), _edge_point(end, start)
        bend = -0.3 if style == "dashed" else 0.0
        axes.add_patch(FancyArrowPatch(tail, head, arrowstyle="-|>", mutation_scale=13, linewidth=1.3,
                                       color="#c62828" if style == "dashed" else EDGE, linestyle=style,
                                       connectionstyle=f"arc3,rad={bend}", zorder=1))
        # The middle of the (quadratic) arc matplotlib draws for ``arc3``.
        dx, dy = head[0] - tail[0], head[1] - tail[1]
        mx, my = tail[0] + at * dx + bend * dy / 2, tail[1] + at * dy - bend * dx / 2
        axes.text(mx, my, label, ha="center", va="center", fontsize=7.2, zorder=4, linespacing=1.1,
                  bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.9})
    axes.set_title("VDI Studios: a Jira ticket in, a ready Leostream desktop out", fontsize=12, weight="bold")
    figure.tight_layout()
    figure.savefig(path, metadata={"Title": "VDI Studios architecture", HASH_KEY: description_hash(),
                                   "Software": None})
    plt.close(figure)
    return path


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
