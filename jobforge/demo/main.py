"""jobforge demo: start an embedded server and walk through what works, with boto3."""

from __future__ import annotations

import tempfile
from pathlib import Path

from jobforge.demo.agent_rl import agent_rl
from jobforge.demo.bedrock import bedrock_fine_tuning
from jobforge.demo.braket import qaoa_hybrid_job
from jobforge.demo.compile import compile_models
from jobforge.demo.recommend import recommend_instances
from jobforge.testing_server import ServerProcess


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def identity_and_roles(server: ServerProcess) -> None:
    say("Identity: sts get-caller-identity with the keys written to DATA_DIR/credentials")
    who = server.client("sts").get_caller_identity()
    print(f"   account {who['Account']}  arn {who['Arn']}")
    iam = server.client("iam")
    say("IAM roles: the default execution roles of a fresh account")
    for role in iam.list_roles()["Roles"]:
        print(f"   {role['Arn']}")
    role = iam.create_role(RoleName="demo-role", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')
    print(f"   created {role['Role']['Arn']}")


SECTIONS = [identity_and_roles, qaoa_hybrid_job, bedrock_fine_tuning, compile_models, recommend_instances, agent_rl]


def run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="jobforge-demo-") as tmp:
        server = ServerProcess(Path(tmp) / "data")
        say(f"Starting jobforge on {server.endpoint}")
        server.start()
        try:
            for section in SECTIONS:
                section(server)
        finally:
            server.stop()
        say("Done: the server is stopped")


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="start an embedded server and walk through what works")
    p.set_defaults(func=run)
