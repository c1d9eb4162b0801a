"""The docs a newcomer meets: a README that fits on a page, and a help page per node in ComfyUI's node-help panel.

The frontend looks a custom node's help up at `/extensions/<pack>/docs/<NodeId>/<locale>.md`, then at
`/extensions/<pack>/docs/<NodeId>.md`; `/extensions/<pack>/` serves the pack's WEB_DIRECTORY (web/), so the
locale-independent `web/docs/<NodeId>.md` is shown in every language (tests/test_browser.py opens one).
"""
import os
import re

import pytest
from support.comfy_host import REPO
from support.inprocess import import_pack

README_MAX_LINES = 200
HELP = os.path.join(REPO, "web", "docs")
STOCHASTIC_TRAP = "the seed is valid only together with them"


@pytest.fixture(scope="module")
def schemas(comfy_inprocess):
    return [node.define_schema() for node in import_pack().nodes.NODES]


def help_page(node_id: str) -> str:
    with open(os.path.join(HELP, f"{node_id}.md"), encoding="utf-8") as f:
        return f.read()


def test_the_readme_fits_on_a_page():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, the limit is {README_MAX_LINES}"


def test_every_node_has_a_help_page_naming_each_input_and_output(schemas):
    assert os.path.normpath(os.path.join(REPO, import_pack().WEB_DIRECTORY)) == os.path.dirname(HELP)
    missing = [schema.node_id for schema in schemas if not os.path.isfile(os.path.join(HELP, f"{schema.node_id}.md"))]
    assert not missing, f"no web/docs/<NodeId>.md for {missing}"
    for schema in schemas:
        page = help_page(schema.node_id)
        assert page.startswith(f"# {schema.display_name}\n"), schema.node_id
        names = [entry.id for entry in schema.inputs] + [entry.display_name or entry.get_io_type()
                                                        for entry in schema.outputs]
        unnamed = [name for name in names if not re.search(rf"`{re.escape(name)}`", page)]
        assert not unnamed, f"web/docs/{schema.node_id}.md does not name {unnamed}"


def test_no_help_page_for_a_node_that_does_not_exist(schemas):
    pages = {name[:-3] for name in os.listdir(HELP) if name.endswith(".md")}
    assert pages == {schema.node_id for schema in schemas}


def test_nodes_that_invert_a_stochastic_sampler_warn_where_the_user_wires_it(schemas):
    """An euler_ancestral/lcm seed regenerates only with the node's own sampler output (its fixed per-step noises);
    ComfyUI's own sampler of that name matches at noise_seed 0 only by coincidence."""
    stochastic = [schema.node_id for schema in schemas
                  if any(entry.id == "sampler" and "euler_ancestral" in (getattr(entry, "options", None) or [])
                         for entry in schema.inputs)]
    assert stochastic, "no node offers euler_ancestral any more: update this test"
    for node_id in stochastic:
        page = " ".join(help_page(node_id).split())
        assert STOCHASTIC_TRAP in page and "noise_seed` 0" in page, node_id
