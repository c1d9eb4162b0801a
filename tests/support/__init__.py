"""Test support, shared by the tests, bench/ and the fixture nodes: the test host (comfy_host), the pack and tiny
models inside a process (inprocess, tinymodels), analytic denoisers (oracles) and API-format graphs (graphs).

Tests import it as `support` (pytest puts tests/ on sys.path); bench/ runs as modules from the repository root
(`python -m bench.compare`) and imports it as `tests.support`. Inside, imports are relative so both work.
"""
