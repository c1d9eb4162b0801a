"""One source for each method's defaults: every node's widget defaults are its options object's (solvers/), and the
options that tune a solver without a widget are not on the node."""
from dataclasses import fields

import pytest
from support.inprocess import import_pack

METHOD_NODES = ("SeedfinderFixedPointInvert", "SeedfinderRNRIInvert", "SeedfinderEDICTInvert", "SeedfinderBDIAInvert",
                "SeedfinderRFInversionInvert", "SeedfinderFireFlowInvert", "SeedfinderFlowEdit",
                "SeedfinderPromptAwareEncode", "SeedfinderSeedInterpolate", "SeedfinderSeedCentroid",
                "SeedfinderAttentionEditGuider", "SeedfinderBDIASampler", "SeedfinderSeedSelect")


def nodes_by_id() -> dict:
    import_pack()
    from seedfinder.nodes import NODES
    return {node.define_schema().node_id: node for node in NODES}


def test_every_method_node_names_its_options():
    nodes = nodes_by_id()
    assert {node_id for node_id, node in nodes.items() if hasattr(node, "OPTIONS")} == set(METHOD_NODES)


@pytest.mark.parametrize("node_id", METHOD_NODES)
def test_schema_defaults_are_the_options_defaults(node_id):
    from seedfinder.solvers import widgets
    node = nodes_by_id()[node_id]
    inputs = {widget.id: widget for widget in node.define_schema().inputs}
    defaults = node.OPTIONS()
    on_node = widgets(defaults)
    assert on_node, node_id
    for name, value in on_node.items():
        assert name in inputs, f"{node_id}: option {name} has no widget"
        assert inputs[name].default == value, (node_id, name, inputs[name].default, value)
    for field in fields(defaults):
        if field.name not in on_node:
            assert field.name not in inputs, f"{node_id}: {field.name} is a widget but marked NOT_ON_NODE"
