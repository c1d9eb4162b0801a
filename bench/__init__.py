"""The benchmarks (python -m bench.<name>). The pack is imported as ComfyUI loads it, as the package `seedfinder`
(tests.support.inprocess.pack_package), so a bench's options are the classes the nodes check."""
from tests.support.inprocess import pack_package

pack_package()
