"""Pipeline definitions: what parse accepts and refuses, the order steps wait in, and expression evaluation."""

from __future__ import annotations

import copy
import json

import pytest

from jobforge.core.errors import ServiceError
from jobforge.core.pipeline_definitions import Scope, Unresolved, evaluate, parse, path_parts, typed

ROLE = "arn:aws:iam::123456789012:role/R"
JOB = {"JobCategory": "AgentRFTEvaluation", "RoleArn": ROLE, "JobConfigSchemaVersion": "1.0.0",
       "JobConfigDocument": "{}"}
VALID = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "Count", "Type": "Integer", "DefaultValue": 2, "EnumValues": [2, 3]}],
    "Steps": [
        {"Name": "A", "Type": "Job", "Arguments": JOB, "CacheConfig": {"Enabled": False}, "RetryPolicies": [],
         "DisplayName": "a"},
        {"Name": "B", "Type": "Job", "Arguments": dict(JOB, JobConfigDocument={"Std:Join": {"On": "", "Values": [
            "{", {"Get": "Steps.A.JobConfigDocument.Steps"}, "}"]}})},
        {"Name": "L", "Type": "Lineage", "DependsOn": ["B"], "Arguments": {"Artifacts": [
            {"ArtifactType": "T", "Source": {"SourceUri": {"Get": "Steps.A.Outputs['x'][0]"}}}], "Associations": [
            {"Source": {"Name": "n", "Type": "Artifact"}, "Destination": {"Arn": "arn"}}]}},
    ],
}


def test_steps_wait_for_dependencies_and_the_steps_they_read():
    definition = parse(json.dumps(VALID))
    assert {name: step.waits_for for name, step in definition.steps.items()} == {
        "A": (), "B": ("A",), "L": ("B", "A")}
    assert definition.parameters["Count"]["Type"] == "Integer"


def test_paths_and_evaluation():
    assert path_parts("Steps.A.Outputs['x'][0].Uri") == ["Steps", "A", "Outputs", "x", 0, "Uri"]
    for bad in ("", ".A", "A..B", "A B", "A[x]"):
        with pytest.raises(ValueError):
            path_parts(bad)
    scope = Scope({"Count": 3}, {"PipelineExecutionId": "abc"},
                  {"A": {"JobConfigDocument": {"Steps": 3}, "Outputs": {"x": ["s3://u"]}, "Doc": '{"k": [1, 2]}'}})
    value = {"a": {"Std:Join": {"On": "-", "Values": [{"Get": "Execution.PipelineExecutionId"},
                                                      {"Get": "Parameters.Count"}, True]}},
             "b": [{"Get": "Steps.A.Outputs['x'][0]"}, {"Get": "Steps.A.Doc.k[1]"}], "c": {"Get": 1, "x": 2}}
    assert evaluate(value, scope) == {"a": "abc-3-true", "b": ["s3://u", 2], "c": {"Get": 1, "x": 2}}
    with pytest.raises(Unresolved, match="has no JobConfigDocument.ServiceOutput"):
        evaluate({"Get": "Steps.A.JobConfigDocument.ServiceOutput.RunId"}, scope)


def test_parameter_values_are_typed():
    integer = {"Name": "N", "Type": "Integer"}
    assert typed(integer, "7") == 7
    assert typed({"Name": "B", "Type": "Boolean"}, "TRUE") is True
    assert typed({"Name": "F", "Type": "Float"}, "0.5") == 0.5
    for parameter, value in ((integer, "7.5"), (integer, True), ({"Name": "B", "Type": "Boolean"}, "yes"),
                             ({"Name": "S", "Type": "String", "EnumValues": ["a"]}, "b")):
        with pytest.raises(ServiceError):
            typed(parameter, value)


ODD = [None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"Get": 1}, {"Get": "Steps"}, {"Std:Join": []},
       {"Std:Join": {"On": 1, "Values": 2}}, {"Name": 1}, [{}], [None], {"Enabled": True}, "Steps.A"]


def _nodes(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nodes(item, path + (index,))


def _replace(value, path, new):
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def test_any_odd_definition_is_refused_with_a_validation_error():
    """Every node of a valid definition replaced by an odd JSON value, one at a time: parse either accepts the
    result or refuses it as a ValidationException, never with another exception."""
    paths = [path for path in _nodes(VALID) if path]
    refused = 0
    for path in paths:
        for odd in ODD:
            mutated = copy.deepcopy(VALID)
            _replace(mutated, path, odd)
            try:
                parse(json.dumps(mutated))
            except ServiceError as err:
                assert err.code == "ValidationException" and err.message.startswith(
                    ("Invalid PipelineDefinition", "Parameter ")), err.message
                refused += 1
    assert refused > len(paths)
