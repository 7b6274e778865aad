"""Pipeline definitions (the ``PipelineDefinition`` JSON, version 2020-12-01): checked whole when a pipeline is
created or updated, and what an execution reads of one: its parameters, its steps, the steps each waits for,
and the values of the expressions in a step's arguments.

A step waits for the steps its ``DependsOn`` names and for those its arguments read (``{"Get": "Steps.X..."}``),
as on AWS. Expressions are ``{"Get": "Parameters.<name>"}``, ``{"Get": "Execution.<variable>"}``,
``{"Get": "Steps.<step>.<path>"}`` (the path read in the step's outputs; a JSON string on the way is read as
JSON, so ``Steps.X.JobConfigDocument.ServiceOutput...`` reads into the document DescribeJob returns as a
string) and ``{"Std:Join": {"On": ..., "Values": [...]}}``. jobforge runs steps of type ``Job`` and
``Lineage``; a definition with any other step type, or an expression it cannot evaluate, is refused at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jobforge.core.errors import ServiceError, validation_error

VERSION = "2020-12-01"
STEP_TYPES = ("Job", "Lineage")
STEP_NAME = re.compile(r"[A-Za-z0-9\-_]{1,64}")
PARAMETER_NAME = re.compile(r"[A-Za-z0-9\-_]{1,256}")
PARAMETER_TYPES = ("String", "Integer", "Float", "Boolean")
EXECUTION_VARIABLES = ("PipelineExecutionId", "PipelineExecutionArn", "PipelineName", "PipelineArn",
                       "StartDateTime", "CurrentDateTime")
DEFINITION_KEYS = ("Version", "Metadata", "Parameters", "PipelineExperimentConfig", "Steps")
STEP_KEYS = ("Name", "Type", "Arguments", "DependsOn", "DisplayName", "Description", "CacheConfig", "RetryPolicies")
JOB_ARGUMENTS = ("JobCategory", "RoleArn", "JobConfigSchemaVersion", "JobConfigDocument", "Tags")
LINEAGE_ARGUMENTS = {"Artifacts": ("ArtifactType", "Source"), "Actions": ("ActionName", "ActionType", "Source"),
                     "Contexts": ("ContextName", "ContextType", "Source"), "Associations": ("Source", "Destination")}
LINEAGE_ENTITY_TYPES = ("Action", "Artifact", "Context")
_PATH_PART = re.compile(r"\.?([A-Za-z0-9_\-:]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class Unresolved(Exception):
    """An expression that has no value in this execution (a step's output lacks what it reads)."""


@dataclass(frozen=True)
class StepDefinition:
    name: str
    type: str
    arguments: dict
    waits_for: tuple[str, ...]  # DependsOn and the steps its arguments read
    display_name: str | None
    description: str | None


@dataclass(frozen=True)
class Definition:
    parameters: dict[str, dict]  # name → its entry (Type, DefaultValue, EnumValues)
    steps: dict[str, StepDefinition]  # in the definition's order


def _invalid(message: str) -> ServiceError:
    return validation_error(f"Invalid PipelineDefinition: {message}")


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (
        "Get" in value or next(iter(value)).startswith("Std:"))


def path_parts(path: str) -> list[str | int]:
    """``A.B['c'][0]`` as ``["A", "B", "c", 0]``; a ValueError for text that is no such path."""
    parts: list[str | int] = []
    position = 0
    while position < len(path):
        match = _PATH_PART.match(path, position)
        if match is None or match.end() == position or (position == 0 and path.startswith(".")):
            raise ValueError(path)
        name, index, quoted, double_quoted = match.groups()
        parts.append(int(index) if index is not None else next(p for p in (name, quoted, double_quoted)
                                                               if p is not None))
        position = match.end()
    if not parts:
        raise ValueError(path)
    return parts


def _expressions(value: Any):
    """Every expression in a value, outermost first."""
    if _is_expression(value):
        yield value
        (function, argument), = value.items()
        if function != "Get":
            yield from _expressions(argument)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)


def _check_expression(step: str, expression: dict, parameters: dict, steps: dict) -> str | None:
    """The step an expression reads, if any; a ValidationException for one jobforge cannot evaluate."""
    (function, argument), = expression.items()
    where = f"step '{step}': {json.dumps(expression)[:200]}"
    if function == "Std:Join":
        if not (isinstance(argument, dict) and set(argument) == {"On", "Values"} and isinstance(argument["On"], str)
                and isinstance(argument["Values"], list)):
            raise _invalid(f"{where}: Std:Join takes {{\"On\": <string>, \"Values\": [<values>]}}.")
        return None
    if function != "Get":
        raise _invalid(f"{where}: the function {function} is not supported by jobforge; it evaluates Get and "
                       "Std:Join.")
    if not isinstance(argument, str):
        raise _invalid(f"{where}: Get takes a path such as Parameters.<name> or Steps.<step>.<property>.")
    try:
        parts = path_parts(argument)
    except ValueError:
        raise _invalid(f"{where}: '{argument}' is not a property path.") from None
    root = parts[0]
    if root == "Parameters":
        if len(parts) != 2 or parts[1] not in parameters:
            raise _invalid(f"{where}: the definition has no parameter {'.'.join(map(str, parts[1:]))}.")
        return None
    if root == "Execution":
        if len(parts) != 2 or parts[1] not in EXECUTION_VARIABLES:
            raise _invalid(f"{where}: execution variables are {', '.join(EXECUTION_VARIABLES)}.")
        return None
    if root == "Steps":
        if len(parts) < 3 or parts[1] not in steps:
            raise _invalid(f"{where}: Steps.<step>.<property> must name a step of the definition and a property.")
        if parts[1] == step:
            raise _invalid(f"{where}: a step cannot read its own properties.")
        if steps[parts[1]].get("Type") != "Job":
            raise _invalid(f"{where}: only Job steps have properties to read; {parts[1]} is a "
                           f"{steps[parts[1]].get('Type')} step.")
        return parts[1]
    raise _invalid(f"{where}: a Get path starts with Parameters, Execution or Steps.")


def _check_parameters(entries: Any) -> dict[str, dict]:
    if not isinstance(entries, list):
        raise _invalid("Parameters must be a list.")
    found: dict[str, dict] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str):
            raise _invalid("each entry of Parameters needs a Name.")
        name = entry["Name"]
        if not PARAMETER_NAME.fullmatch(name):
            raise _invalid(f"parameter name '{name}' must match [A-Za-z0-9\\-_]{{1,256}}.")
        if name in found:
            raise _invalid(f"parameter {name} is defined twice.")
        unknown = set(entry) - {"Name", "Type", "DefaultValue", "EnumValues"}
        if unknown:
            raise _invalid(f"parameter {name} has unknown members {sorted(unknown)}.")
        if not isinstance(entry.get("EnumValues", []), list):
            raise _invalid(f"parameter {name}: EnumValues must be a list.")
        entry = dict(entry, Type=entry.get("Type", "String"))
        if entry["Type"] not in PARAMETER_TYPES:
            raise _invalid(f"parameter {name} has Type {entry['Type']}; types are {', '.join(PARAMETER_TYPES)}.")
        if "DefaultValue" in entry:
            typed(entry, entry["DefaultValue"], _invalid)
        found[name] = entry
    return found


def typed(parameter: dict, value: Any, error=validation_error) -> Any:
    """A parameter's value as its Type reads it (a start's overrides come as strings)."""
    kind, name = parameter["Type"], parameter["Name"]
    try:
        if kind == "Boolean":
            if isinstance(value, bool):
                result = value
            elif isinstance(value, str) and value.lower() in ("true", "false"):
                result = value.lower() == "true"
            else:
                raise ValueError(value)
        elif kind == "Integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            result = int(value)
        elif kind == "Float":
            if isinstance(value, bool):
                raise ValueError(value)
            result = float(value)
        else:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            result = str(value)
    except (TypeError, ValueError):
        raise error(f"Parameter {name} of Type {kind} cannot take the value {json.dumps(value)}.") from None
    enum = parameter.get("EnumValues")
    if enum and result not in enum:
        raise error(f"Parameter {name} must be one of {enum}; got {json.dumps(value)}.")
    return result


def _check_job_arguments(name: str, arguments: dict) -> None:
    if "JobName" in arguments:
        raise _invalid(f"Job step '{name}': JobName is not an argument; the pipeline names each job it runs.")
    if "VpcConfig" in arguments:
        raise _invalid(f"Job step '{name}': VpcConfig is not supported by jobforge: jobs reach their agents and "
                       "data through the server itself.")
    unknown = sorted(set(arguments) - set(JOB_ARGUMENTS))
    if unknown:
        raise _invalid(f"Job step '{name}': unknown arguments {unknown}; a Job step takes the members of "
                       f"CreateJob but JobName: {', '.join(JOB_ARGUMENTS)}.")
    missing = [key for key in JOB_ARGUMENTS[:4] if key not in arguments]
    if missing:
        raise _invalid(f"Job step '{name}': missing arguments {missing}.")


def _check_lineage_reference(name: str, end: str, reference: Any) -> None:
    if not isinstance(reference, dict):
        raise _invalid(f"Lineage step '{name}': an association's {end} must be an object.")
    if "Arn" in reference:
        if set(reference) != {"Arn"}:
            raise _invalid(f"Lineage step '{name}': an association's {end} gives an Arn, or a Name and a Type.")
        return
    if set(reference) != {"Name", "Type"}:
        raise _invalid(f"Lineage step '{name}': an association's {end} gives an Arn, or a Name and a Type.")
    if reference["Type"] not in LINEAGE_ENTITY_TYPES:
        raise _invalid(f"Lineage step '{name}': an association's {end} Type is one of "
                       f"{', '.join(LINEAGE_ENTITY_TYPES)}.")


def _check_lineage_arguments(name: str, arguments: dict) -> None:
    unknown = sorted(set(arguments) - set(LINEAGE_ARGUMENTS))
    if unknown or not arguments:
        raise _invalid(f"Lineage step '{name}': its arguments are lists of {', '.join(LINEAGE_ARGUMENTS)}"
                       + (f"; unknown: {unknown}." if unknown else "."))
    for key, required in LINEAGE_ARGUMENTS.items():
        entries = arguments.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise _invalid(f"Lineage step '{name}': {key} must be a list of objects.")
        for entry in entries:
            missing = [member for member in required if member not in entry]
            if missing:
                raise _invalid(f"Lineage step '{name}': an entry of {key} is missing {missing}.")
            if key == "Associations":
                _check_lineage_reference(name, "Source", entry["Source"])
                _check_lineage_reference(name, "Destination", entry["Destination"])


def _check_step(entry: Any, seen: dict) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str):
        raise _invalid("each step needs a Name.")
    name = entry["Name"]
    if not STEP_NAME.fullmatch(name):
        raise _invalid(f"step name '{name}' must match [A-Za-z0-9\\-_]{{1,64}}.")
    if name in seen:
        raise _invalid(f"two steps are named {name}.")
    unknown = sorted(set(entry) - set(STEP_KEYS))
    if unknown:
        raise _invalid(f"step '{name}' has unknown members {unknown}.")
    kind = entry.get("Type")
    if kind not in STEP_TYPES:
        raise _invalid(f"step '{name}' has Type {kind}, which jobforge does not run: it runs steps of type "
                       f"{' and '.join(STEP_TYPES)}.")
    for member in ("DisplayName", "Description"):
        if not isinstance(entry.get(member, ""), str):
            raise _invalid(f"step '{name}': {member} must be a string.")
    cache = entry.get("CacheConfig") or {}
    if not isinstance(cache, dict):
        raise _invalid(f"step '{name}': CacheConfig must be an object.")
    if cache.get("Enabled"):
        raise _invalid(f"step '{name}': CacheConfig is not supported by jobforge: every execution runs its steps.")
    if entry.get("RetryPolicies"):
        raise _invalid(f"step '{name}': RetryPolicies are not supported by jobforge.")
    if not isinstance(entry.get("Arguments"), dict):
        raise _invalid(f"step '{name}' needs Arguments (an object).")
    depends = entry.get("DependsOn", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise _invalid(f"step '{name}': DependsOn must be a list of step names.")
    (_check_job_arguments if kind == "Job" else _check_lineage_arguments)(name, entry["Arguments"])


def _check_order(steps: dict[str, StepDefinition]) -> None:
    """Refuse a definition whose steps wait for each other in a circle."""
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            circle = visiting[visiting.index(name):] + [name]
            raise _invalid(f"the steps wait for each other in a circle: {' -> '.join(circle)}.")
        visiting.append(name)
        for other in steps[name].waits_for:
            visit(other)
        visiting.pop()
        done.add(name)

    for name in steps:
        visit(name)


def parse(text: str) -> Definition:
    """The definition a PipelineDefinition holds; a ValidationException saying what is wrong with it."""
    try:
        document = json.loads(text)
    except ValueError as err:
        raise _invalid(f"not valid JSON: {err}") from None
    if not isinstance(document, dict):
        raise _invalid("it must be a JSON object.")
    unknown = sorted(set(document) - set(DEFINITION_KEYS))
    if unknown:
        raise _invalid(f"unknown members {unknown}; a definition has {', '.join(DEFINITION_KEYS)}.")
    if document.get("Version") != VERSION:
        raise _invalid(f"Version must be \"{VERSION}\".")
    parameters = _check_parameters(document.get("Parameters", []))
    entries = document.get("Steps")
    if not isinstance(entries, list) or not entries:
        raise _invalid("Steps must be a list of at least one step.")
    seen: dict[str, dict] = {}
    for entry in entries:
        _check_step(entry, seen)
        seen[entry["Name"]] = entry
    steps: dict[str, StepDefinition] = {}
    for name, entry in seen.items():
        read = [_check_expression(name, expression, parameters, seen)
                for expression in _expressions(entry["Arguments"])]
        for other in entry.get("DependsOn", []):
            if other not in seen or other == name:
                raise _invalid(f"step '{name}' depends on '{other}', which is not another step of the definition.")
        waits_for = tuple(dict.fromkeys([*entry.get("DependsOn", []), *filter(None, read)]))
        steps[name] = StepDefinition(name, entry["Type"], entry["Arguments"], waits_for, entry.get("DisplayName"),
                                     entry.get("Description"))
    _check_order(steps)
    return Definition(parameters, steps)


# -- evaluation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """What an execution's expressions read."""

    parameters: dict
    execution: dict  # execution variable → value
    outputs: dict  # step name → its outputs


def _read(value: Any, parts: list[str | int], expression: str, step: str) -> Any:
    for depth, part in enumerate(parts):
        if isinstance(value, str) and value[:1] in "{[":  # a JSON document kept as a string
            try:
                value = json.loads(value)
            except ValueError:
                pass
        if isinstance(part, int) and isinstance(value, list) and part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        else:
            missing = ".".join(str(p) for p in parts[:depth + 1])
            raise Unresolved(f"{{\"Get\": \"{expression}\"}} has no value: the output of step {step} has no "
                             f"{missing}.")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def evaluate(value: Any, scope: Scope) -> Any:
    """The value with every expression in it replaced by what it evaluates to; Unresolved for one that has
    none (the definition was checked, so every other expression evaluates)."""
    if _is_expression(value):
        (function, argument), = value.items()
        if function == "Std:Join":
            return argument["On"].join(_text(evaluate(item, scope)) for item in argument["Values"])
        parts = path_parts(argument)
        if parts[0] == "Parameters":
            return scope.parameters[parts[1]]
        if parts[0] == "Execution":
            return scope.execution[parts[1]]
        return _read(scope.outputs[parts[1]], parts[2:], argument, parts[1])
    if isinstance(value, dict):
        return {key: evaluate(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate(item, scope) for item in value]
    return value
