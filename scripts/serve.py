"""Serve ComfyUI with Seedfinder installed on 127.0.0.1 (run through scripts/serve.sh, which sets up .host first).

Without --comfyui: a copy of the test host's ComfyUI 0.3.75 tree under .serve/, with the official frontend
(comfyui-frontend-package) and Seedfinder linked into its custom_nodes/. With --comfyui PATH: the user's own
ComfyUI, Seedfinder linked into PATH/custom_nodes/, run with that ComfyUI's Python. Where no model of the user's is
found, the demo models (small SD1.5-class text-to-image models the project trained on procedural shapes and on
scenes of one or two objects, and an SD3-class DiT on the same scenes, widened from the shipped narrow weights in
demo_model/) and their demo pictures are installed, so every example workflow runs and makes pictures, except the
video edit, which needs the Wan 2.1 files.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_DIR = os.path.join(REPO, ".host")
MODEL_FOLDERS = ("checkpoints", "diffusion_models", "unet")
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".gguf", ".sft")


OURS = ("SMOKE-TEST_seedfinder", "seedfinder_demo_", "seedfinder_second_")


def has_user_models(models_dir: str) -> bool:
    """Any diffusion model file that is not one of ours (the demo and second models, the tests' smoke-test model)."""
    for folder in MODEL_FOLDERS:
        for path in glob.glob(os.path.join(models_dir, folder, "**", "*"), recursive=True):
            if path.endswith(MODEL_SUFFIXES) and not os.path.basename(path).startswith(OURS):
                return True
    return False


def install_demo(models_dir: str, input_dir: str) -> None:
    """The demo models' files (shapes, scenes and the DiT twin) and the demo pictures the example workflows load (each
    model skipped when present)."""
    sys.path[:0] = [REPO, os.path.join(HOST_DIR, "stubs"), os.path.join(HOST_DIR, "comfyui")]
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    from demo_model import install, twin
    if not os.path.exists(os.path.join(models_dir, "diffusion_models", install.UNET_FILES["eps"])):
        print("seedfinder: installing the demo model (trained on procedural shapes: try 'a red disc on a blue "
              "background')")
        install.write_demo_models(models_dir)
    if not os.path.exists(os.path.join(models_dir, "diffusion_models", install.SCENE_UNET_FILE)):
        print("seedfinder: installing the scenes demo model (one or two objects: try 'a red disc and a blue square on "
              "a gray background')")
        install.write_scene_model(models_dir)
    if not os.path.exists(os.path.join(models_dir, "diffusion_models", twin.DIT_FILE)):
        print("seedfinder: installing the demo DiT (SD3-class, the same scenes; Load CLIP type sd3)")
        twin.write_dit_models(models_dir)
    install.write_demo_images(input_dir)
    install.write_scene_images(input_dir)


def link_pack(custom_nodes: str) -> None:
    os.makedirs(custom_nodes, exist_ok=True)
    target = os.path.join(custom_nodes, "seedfinder")
    if os.path.islink(target) and os.path.realpath(target) != REPO:
        os.remove(target)
    if not os.path.exists(target):
        os.symlink(REPO, target)
    elif os.path.realpath(target) != REPO:
        sys.exit(f"seedfinder: {target} exists and is not a link to {REPO}; remove it or install by hand")


def own_tree(work: str) -> tuple:
    """(ComfyUI root, base directory) of the served copy of the test host's tree."""
    root, base = os.path.join(work, "comfyui"), os.path.join(work, "base")
    if not os.path.exists(os.path.join(root, "main.py")):
        shutil.copytree(os.path.join(HOST_DIR, "comfyui"), root, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("models", "input", "output", "user"):
        os.makedirs(os.path.join(base, folder), exist_ok=True)
    link_pack(os.path.join(base, "custom_nodes"))
    return root, base


def comfy_python(root: str, given: str) -> str:
    if given:
        return given
    for candidate in ("venv/bin/python", ".venv/bin/python"):
        if os.path.exists(os.path.join(root, candidate)):
            return os.path.join(root, candidate)
    return "python3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", help="your ComfyUI folder (default: the test host's tree, served from --work)")
    parser.add_argument("--python", help="the Python that runs your ComfyUI (default: its venv, else python3)")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--work", default=os.path.join(REPO, ".serve"), help="where the served copy lives")
    parser.add_argument("--demo-model", choices=("auto", "always", "never"), default="auto",
                        help="install the demo model: auto = only where no model of yours is found")
    parser.add_argument("--prepare-only", action="store_true", help="set everything up, do not start the server")
    args, extra = parser.parse_known_args()

    if args.comfyui:
        root = os.path.abspath(args.comfyui)
        if not os.path.exists(os.path.join(root, "main.py")):
            sys.exit(f"--comfyui: expected a ComfyUI folder with main.py, got {root}")
        base, python = root, comfy_python(root, args.python)
        link_pack(os.path.join(root, "custom_nodes"))
        command = [python, "main.py"]
    else:
        root, base = own_tree(os.path.abspath(args.work))
        python = os.path.join(HOST_DIR, "venv", "bin", "python")
        command = [python, "main.py", "--cpu", "--base-directory", base, "--disable-api-nodes"]
    models, inputs = os.path.join(base, "models"), os.path.join(base, "input")
    if args.demo_model == "always" or (args.demo_model == "auto" and not has_user_models(models)):
        install_demo(models, inputs)
    command += ["--listen", "127.0.0.1", "--port", str(args.port), "--disable-auto-launch", *extra]
    print(f"seedfinder: serving ComfyUI from {root} on http://127.0.0.1:{args.port}  (Ctrl+C stops it)")
    if args.prepare_only:
        return
    env = dict(os.environ, PYTHONPATH=os.path.join(HOST_DIR, "stubs")) if not args.comfyui else None
    sys.exit(subprocess.call(command, cwd=root, env=env))


if __name__ == "__main__":
    main()
