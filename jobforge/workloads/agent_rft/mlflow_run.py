"""The MLflow run of a job whose document gives ``MlflowConfig``: its metrics, logged to the MLflow App.

The worker reaches the app as any SageMaker job does: MLflow's client with the app's ARN as tracking URI, the
sagemaker-mlflow plugin signing each request with the job role's credentials (SigV4) and sending it to the
server's endpoint (``SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT``). The experiment is ``MlflowExperimentName`` (default:
the job's name), created if the app has none of that name; the run is ``MlflowRunName`` (default: the job's
name), tagged with the job's ARN so that an attempt resumed after a restart goes on with the same run. Metric
names are the job's own, ``@`` (which MLflow refuses in a name) written ``_at_``: ``eval/pass_at_4``.

Logging is best effort once the run exists: a failed call is reported in the job's log, the job goes on.
"""

from __future__ import annotations

import os
import time

from jobforge.execution.context import JobContext, WorkloadError

JOB_ARN_TAG = "sagemaker.job_arn"
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


def metric_key(name: str) -> str:
    return name.replace("@", "_at_")


class MlflowRun:
    def __init__(self, ctx: JobContext, config: dict):
        self.ctx = ctx
        self.arn = config["arn"]
        self.failed_once = False
        os.environ["SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT"] = os.environ["AWS_ENDPOINT_URL"]
        if os.environ.get("AWS_CA_BUNDLE"):
            os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = os.environ["AWS_CA_BUNDLE"]
        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        mlflow.set_tracking_uri(self.arn)  # the plugin's signer reads the app's region from the global URI
        self.client = MlflowClient(self.arn)
        experiment_name = config.get("experiment") or ctx.job_name
        run_name = config.get("run") or ctx.job_name
        try:
            self.experiment_id = self._experiment(experiment_name)
            found = self.client.search_runs([self.experiment_id], f"tags.`{JOB_ARN_TAG}` = '{ctx.job_arn}'",
                                            max_results=1)
            if found:
                self.run_id = found[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(self.experiment_id, run_name=run_name,
                                                     tags={JOB_ARN_TAG: ctx.job_arn}).info.run_id
        except MlflowException as err:
            raise WorkloadError(f"MLflow App {self.arn}: could not start the job's run: {err.message}") from None
        self.details = {"MlflowResourceArn": self.arn, "ExperimentId": self.experiment_id,
                        "ExperimentName": experiment_name, "RunId": self.run_id, "RunName": run_name}
        ctx.event(f"MLflow: run {self.run_id} ({run_name}) of experiment {self.experiment_id} ({experiment_name}) "
                  f"in {self.arn}")

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another job of the app made it meanwhile
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_key(name), float(value), now, step) for name, value in metrics.items()]
        self._call("log its metrics", self.client.log_batch, self.run_id, metrics=batch)

    def end(self, status: str) -> None:
        self._call("end its run", self.client.set_terminated, self.run_id, status)

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - the job's own metrics are kept whatever MLflow answers
            if not self.failed_once:
                self.ctx.event(f"MLflow: could not {what} in {self.arn}: {err}")
            self.failed_once = True


def start(ctx: JobContext, spec: dict) -> MlflowRun | None:
    """The job's run when its document gives MlflowConfig, else None."""
    return MlflowRun(ctx, spec["mlflow"]) if spec.get("mlflow") else None
