"""Where a flow-run process spends its time, for ``benchmarks.scale``: on only in a process with
``BENCH_RUN_TIMING`` (a directory) and ``PREFECT__FLOW_RUN_ID`` set; one JSON line per interpreter.

Put on ``PYTHONPATH``, this runs as each interpreter starts (Prefect's workspace supervisor, then
``prefect.engine`` in the same process after ``exec``) and records: when the process and this
interpreter started, the time spent importing (outermost imports, by the package asked for:
``prefect``, ``prefect_runway``, other; imports inside a block load apart), the time inside
``Block.aload``, when the interpreter ended (``exec`` or exit) and the process's CPU time then.
Clocks: ``time.time()``.
"""

import os

if os.environ.get("BENCH_RUN_TIMING") and os.environ.get("PREFECT__FLOW_RUN_ID"):
    import _frozen_importlib as _bootstrap
    import _thread
    import atexit
    import json
    import sys
    import time

    _RECORD = {
        "pid": os.getpid(), "flow_run_id": os.environ["PREFECT__FLOW_RUN_ID"],
        "argv": sys.argv[:3], "interpreter_started": time.time(), "imports": {},
        "block_loads": 0, "block_load_s": 0.0,
    }
    _perf = time.perf_counter
    _depth: dict[int, int] = {}
    _in_block_load = [0]
    _written = [False]

    def _process_started() -> float | None:
        """This process's start (its fork), kept across ``exec``: from ``/proc`` (ticks since
        boot, 10 ms) against the boot clock now."""
        try:
            with open(f"/proc/{os.getpid()}/stat") as f:
                ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            return None
        since = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since

    _RECORD["process_started"] = _process_started()

    def _patch_block_load() -> None:
        core = sys.modules.get("prefect.blocks.core")
        block = getattr(core, "Block", None)
        if block is None or "aload" not in vars(block):
            return
        original = vars(block)["aload"].__func__

        async def aload(cls, *args, **kwargs):
            started = _perf()
            _in_block_load[0] += 1
            try:
                return await original(cls, *args, **kwargs)
            finally:
                _in_block_load[0] -= 1
                _RECORD["block_loads"] += 1
                _RECORD["block_load_s"] += _perf() - started

        block.aload = classmethod(aload)
        _RECORD["block_load_patched"] = True

    _find_and_load = _bootstrap._find_and_load

    def _timed_find_and_load(name, import_):
        thread = _thread.get_ident()
        depth = _depth.get(thread, 0)
        if depth:
            _depth[thread] = depth + 1
            try:
                return _find_and_load(name, import_)
            finally:
                _depth[thread] = depth
        _depth[thread] = 1
        started = _perf()
        try:
            return _find_and_load(name, import_)
        finally:
            took = _perf() - started
            _depth[thread] = 0
            root = name.split(".", 1)[0]
            kind = ("during block loads" if _in_block_load[0]
                    else root if root in ("prefect", "prefect_runway") else "other")
            _RECORD["imports"][kind] = _RECORD["imports"].get(kind, 0.0) + took
            if "block_load_patched" not in _RECORD:
                _patch_block_load()

    _bootstrap._find_and_load = _timed_find_and_load

    def _write(ended_by: str) -> None:
        if _written[0]:
            return
        _written[0] = True
        # CPU time is the process's, kept across exec: the last line holds the whole run's.
        _RECORD.update(ended=time.time(), ended_by=ended_by, cpu_s=time.process_time())
        path = os.path.join(os.environ["BENCH_RUN_TIMING"], f"{os.getpid()}.jsonl")
        with open(path, "a") as f:
            f.write(json.dumps(_RECORD) + "\n")

    def _audit(event, args):
        if event == "os.exec":
            _write("exec")

    sys.addaudithook(_audit)
    atexit.register(_write, "exit")
