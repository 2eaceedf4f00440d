"""docs/architecture.png follows its description in docs/diagrams/architecture.py, and names what exists."""

import importlib.util
import re

from PIL import Image

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "docs" / "diagrams" / "architecture.py"


def load_script():
    spec = importlib.util.spec_from_file_location("architecture_diagram", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_png_was_rendered_from_the_current_description():
    diagram = load_script()
    stored = Image.open(diagram.OUTPUT).text.get(diagram.HASH_KEY)
    assert stored == diagram.description_hash(), (
        "docs/architecture.png is stale: run `.venv/bin/python docs/diagrams/architecture.py`")


def test_rendering_writes_a_png_that_carries_the_description_hash(tmp_path):
    diagram = load_script()
    image = Image.open(diagram.render(tmp_path / "architecture.png"))
    assert image.format == "PNG" and image.width > 1000
    assert image.text[diagram.HASH_KEY] == diagram.description_hash()


def test_every_flow_joins_described_components_and_every_dag_it_names_exists():
    diagram = load_script()
    for source, target, *_ in diagram.FLOWS:
        assert source in diagram.COMPONENTS and target in diagram.COMPONENTS
    labels = " ".join(label for *_, label in diagram.COMPONENTS.values())
    labels += " ".join(label for _, _, label, *_ in diagram.FLOWS)
    dag_ids = set(re.findall(r"\bvdi_[a-z]+\b", labels))
    assert dag_ids and all((REPO_ROOT / "dags" / f"{dag_id}.py").exists() for dag_id in dag_ids), dag_ids
