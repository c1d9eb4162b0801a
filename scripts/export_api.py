"""Write the API-format twin of each UI workflow in example_workflows/ (what /prompt and headless scripts take).

usage: python scripts/export_api.py --server http://127.0.0.1:8188 [UI.json ...]
       (default: every example_workflows/*.json into example_workflows/api/)

The UI format stores widget values by position; /object_info of a running ComfyUI with Seedfinder says which
inputs are widgets, in which order, and which carry the frontend's extra widgets (a seed's control_after_generate,
an image's upload button). Notes are UI-only and dropped; muted or bypassed nodes are refused, not guessed at.
"""
import argparse
import glob
import json
import os
import sys
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(REPO, "example_workflows")
UI_ONLY = ("Note", "MarkdownNote")
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload")


def is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def extra_widgets(name: str, spec: list) -> int:
    """Values the frontend stores right after this widget's own: a seed's control mode."""
    options = spec[1] if len(spec) > 1 else {}
    return int(bool(spec[0] in ("INT", "FLOAT") and
                    options.get("control_after_generate", name in ("seed", "noise_seed"))))


def has_upload(spec: list) -> bool:
    """Whether the frontend gives this file list an upload button, whose label it stores after the last required
    input's value (LoadImageMask: image, channel, upload)."""
    options = spec[1] if len(spec) > 1 else {}
    return any(options.get(key) for key in UPLOAD_OPTIONS)


def node_inputs(node: dict, definition: dict, links: dict) -> dict:
    """One UI node's inputs in API form: widget values by name, links as [source node id, output slot]."""
    linked = {entry["name"]: entry["link"] for entry in node.get("inputs", []) if entry.get("link") is not None}
    values = list(node.get("widgets_values") or [])
    position, inputs = 0, {}
    for group in ("required", "optional"):
        for name in definition.get("input_order", {}).get(group, []):
            spec = definition["input"][group][name]
            if is_widget(spec):
                if position >= len(values):
                    raise ValueError(f"node {node['id']} ({node['type']}): widgets_values has no value for {name!r}")
                inputs[name] = values[position]
                position += 1 + extra_widgets(name, spec)
            if name in linked:
                _, source, slot, *_ = links[linked[name]]
                inputs[name] = [str(source), slot]
        if group == "required":
            position += int(any(has_upload(definition["input"][group][name])
                                for name in definition.get("input_order", {}).get(group, [])))
    return inputs


def to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt of a UI workflow."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: int(n["id"])):
        if node["type"] in UI_ONLY:
            continue
        if node.get("mode", 0) != 0:
            raise ValueError(f"node {node['id']} ({node['type']}) is muted or bypassed; unmute it or delete it")
        if node["type"] not in object_info:
            raise ValueError(f"node {node['id']}: {node['type']!r} is not installed on this server")
        definition = object_info[node["type"]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": node_inputs(node, definition, links),
                                   "_meta": {"title": node.get("title") or definition["display_name"]}}
    return prompt


def api_path(ui_path: str) -> str:
    return os.path.join(os.path.dirname(ui_path), "api", os.path.basename(ui_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="a running ComfyUI with Seedfinder")
    parser.add_argument("workflows", nargs="*", default=sorted(glob.glob(os.path.join(WORKFLOWS, "*.json"))))
    args = parser.parse_args()
    with urllib.request.urlopen(args.server.rstrip("/") + "/object_info", timeout=60) as response:
        object_info = json.loads(response.read())
    for path in args.workflows:
        with open(path) as f:
            prompt = to_api(json.load(f), object_info)
        os.makedirs(os.path.dirname(api_path(path)), exist_ok=True)
        with open(api_path(path), "w") as f:
            json.dump(prompt, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"{os.path.relpath(path)} -> {os.path.relpath(api_path(path))} ({len(prompt)} nodes)", file=sys.stderr)


if __name__ == "__main__":
    main()
