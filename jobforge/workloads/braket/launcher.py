"""Runs a hybrid job's entry point inside the job's own process.

``python -P launcher.py PARENT_PID CODE_DIR ENTRY_POINT FAILURE_FILE``

It follows what the Braket job container's entry script does with user code:
the unpacked code directory is appended to ``sys.path`` and is the working
directory; ``module:function`` imports the module and calls the function with
the hyperparameters as keyword arguments when they bind to its signature
(converted with each parameter's annotation, ``str`` otherwise); a bare
``module`` runs like ``python -m module``. An exception writes
``"<Type>: <message>"`` to FAILURE_FILE (the service's ``failureReason``) and exits 1.

Only the standard library is imported here, so the user's requirements decide
every other package version.
"""

import ctypes
import importlib
import inspect
import json
import os
import runpy
import signal
import sys
import traceback

_PR_SET_PDEATHSIG = 1


def main(parent_pid: str, code_dir: str, entry_point: str, failure_file: str) -> None:
    _exit_with_parent(int(parent_pid))
    sys.path.append(code_dir)
    os.chdir(code_dir)
    try:
        call = _resolve(entry_point)
        call()
    except Exception as error:
        with open(failure_file, "a", encoding="utf-8") as failure:
            failure.write(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)


def _resolve(entry_point: str):
    module_name, _, function_name = entry_point.partition(":")
    if not function_name:
        return lambda: runpy.run_module(module_name, run_name="__main__", alter_sys=True)
    function = getattr(importlib.import_module(module_name), function_name)
    kwargs = _bound_hyperparameters(function)
    return lambda: function(**kwargs)


def _bound_hyperparameters(function) -> dict:
    path = os.environ.get("AMZN_BRAKET_HP_FILE")
    if not path:
        return {}
    with open(path, encoding="utf-8") as file:
        hyperparameters = json.load(file)
    signature = inspect.signature(function, eval_str=True)
    try:
        signature.bind(**hyperparameters)
    except TypeError:
        return {}
    kwargs = {}
    for name, value in hyperparameters.items():
        parameter = signature.parameters.get(name)
        annotation = parameter.annotation if parameter else inspect.Parameter.empty
        convert = annotation if isinstance(annotation, type) and annotation is not inspect.Parameter.empty else str
        kwargs[name] = convert(value)
    return kwargs


def _exit_with_parent(parent_pid: int) -> None:
    """Die with the job runner, so a killed runner never leaves the user's code running."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the runner died before the request took effect
        os._exit(1)


if __name__ == "__main__":
    arguments = sys.argv[1:5]
    del sys.argv[1:]  # the user's code sees no arguments, as in the job container
    main(*arguments)
