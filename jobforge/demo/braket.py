"""The Braket part of ``jobforge demo``: a QAOA hybrid job run through the Braket SDK.

MaxCut on a 4-node ring with one QAOA layer: the job's code (below) runs on
jobforge as a hybrid job, sends every energy evaluation to SV1 as a quantum
task (exact expectation values, shots = 0), climbs a central-difference
gradient, logs each step with ``log_metric`` and saves the best cut. The
demo then reads the convergence with ``job.metrics()`` and the result with
``job.result()``, as a user would against AWS.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"

QAOA = '''
import math
import os

from braket.aws import AwsDevice
from braket.circuits import Circuit, Observable
from braket.jobs import save_job_result
from braket.jobs.metrics import log_metric

EDGES = [(0, 1), (1, 2), (2, 3), (3, 0)]


def circuit(gamma, beta, nodes=4):
    c = Circuit().h(range(nodes))
    for i, j in EDGES:
        c.zz(i, j, 2 * gamma)
    c.rx(range(nodes), 2 * beta)
    return c


def cut_value(device, gamma, beta):
    c = circuit(gamma, beta)
    for i, j in EDGES:
        c.expectation(Observable.Z() @ Observable.Z(), target=[i, j])
    values = device.run(c, shots=0).result().values
    return sum(0.5 * (1 - v) for v in values)


def main(steps: int = 12, rate: float = 0.05):
    device = AwsDevice(os.environ["AMZN_BRAKET_DEVICE_ARN"])
    gamma, beta = -0.05, 0.05  # near the uniform superposition, whose expected cut is 2
    shift = math.pi / 8  # central differences of the expected cut
    for step in range(steps):
        value = cut_value(device, gamma, beta)
        log_metric("cut", value, iteration_number=step)
        grad_gamma = (cut_value(device, gamma + shift, beta) - cut_value(device, gamma - shift, beta)) / (2 * shift)
        grad_beta = (cut_value(device, gamma, beta + shift) - cut_value(device, gamma, beta - shift)) / (2 * shift)
        gamma, beta = gamma + rate * grad_gamma, beta + rate * grad_beta
    final = cut_value(device, gamma, beta)
    counts = device.run(circuit(gamma, beta).measure(range(4)), shots=1000).result().measurement_counts
    save_job_result({"expected_cut": final, "gamma": gamma, "beta": beta,
                     "most_frequent": counts.most_common(2)})
'''


def qaoa_hybrid_job(server) -> None:
    from jobforge.demo.main import say

    import boto3
    from braket.aws import AwsQuantumJob, AwsSession

    say("Braket: a QAOA MaxCut hybrid job through the Braket SDK, its tasks run on SV1 by jobforge")
    saved = dict(os.environ)
    creds = server.credentials()
    os.environ.update(AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
                      AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"], AWS_DEFAULT_REGION="us-east-1",
                      AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    try:
        with tempfile.TemporaryDirectory(prefix="jobforge-qaoa-") as tmp:
            source = Path(tmp) / "qaoa.py"
            source.write_text(QAOA)
            session = AwsSession(boto_session=boto3.Session(region_name="us-east-1"))
            job = AwsQuantumJob.create(
                device=SV1, source_module=str(source), entry_point="qaoa:main", aws_session=session,
                role_arn=f"arn:aws:iam::{session.account_id}:role/service-role/AmazonBraketJobsExecutionRole",
                hyperparameters={"steps": "12", "rate": "0.05"})
            print(f"   created {job.arn}")
            state = None
            while state not in AwsQuantumJob.TERMINAL_STATES:
                if job.state() != state:
                    state = job.state()
                    print(f"   status {state}")
                time.sleep(0.5)
            if state != "COMPLETED":
                print(f"   the job ended {state}: {job.metadata().get('failureReason')}")
                return
            metrics = job.metrics()
            print("   convergence (expected cut per gradient step, from job.metrics()):")
            for step, cut in zip(metrics["iteration_number"], metrics["cut"]):
                print(f"     step {int(step):2d}  cut {cut:.4f}")
            with contextlib.chdir(tmp):  # the SDK downloads model.tar.gz into the working directory
                result = job.result()
            print(f"   result: expected cut {result['expected_cut']:.4f} (the best single cut is 4) at gamma {result['gamma']:.3f}, "
                  f"beta {result['beta']:.3f}; most frequent bitstrings {result['most_frequent']}")
            print(f"   {len(job.get_tasks())} quantum tasks ran on SV1 for this job")
    finally:
        os.environ.clear()
        os.environ.update(saved)
