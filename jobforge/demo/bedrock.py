"""The demo's Bedrock section: fine-tune a tiny model built on the spot, watch
its loss fall, and ask the custom model a question with Converse."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from jobforge import tinylm

DATASET = Path(__file__).with_name("bedrock_train.jsonl")
# An id outside Bedrock's model families gets the permissive generic family:
# Llama 3.2's caps (10 epochs, batch size 1) are too few steps for a model
# trained from scratch to learn 32 facts.
MODEL_ID = "jobforge.tiny-chat-v1"
BUCKET = "demo-bedrock"
SYSTEM = [{"text": "You answer geography questions in one sentence."}]
QUESTIONS = ("What is the capital of Japan?", "What is the capital of Peru?", "What is the capital of Norway?")


def _texts() -> list[str]:
    texts = []
    for line in DATASET.read_text().splitlines():
        record = json.loads(line)
        texts += [block["text"] for m in record["messages"] for block in m["content"]]
    return texts


def _ask(runtime, model_id: str, question: str) -> str:
    reply = runtime.converse(modelId=model_id, system=SYSTEM,
                             messages=[{"role": "user", "content": [{"text": question}]}],
                             inferenceConfig={"maxTokens": 16, "temperature": 0})
    text = reply["output"]["message"]["content"][0]["text"].strip()
    return f"{text!r} ({reply['usage']['outputTokens']} tokens, {reply['stopReason']})"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def bedrock_fine_tuning(server) -> None:
    say(f"Bedrock: register a base model under a Bedrock id ({MODEL_ID})")
    model_dir = tinylm.build(server.data_dir.parent / "tiny-llama", _texts(), vocab_size=320, hidden=128)
    print(f"   a 2-layer Llama with random weights and a BPE tokenizer trained on the dataset, in {model_dir}")
    command = ["jobforge", "models", "add", MODEL_ID, str(model_dir), "--data-dir", str(server.data_dir)]
    print("   $ " + " ".join(command))
    subprocess.run([sys.executable, "-m", "jobforge.cli", *command[1:]], check=True)
    bedrock, runtime, s3 = server.client("bedrock"), server.client("bedrock-runtime"), server.client("s3")
    account = server.client("sts").get_caller_identity()["Account"]

    say(f"Bedrock: upload {DATASET.name} ({len(DATASET.read_text().splitlines())} conversations) and fine-tune")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(DATASET), BUCKET, "train.jsonl")
    arn = bedrock.create_model_customization_job(
        jobName="demo-capitals", customModelName="capitals",
        roleArn=f"arn:aws:iam::{account}:role/JobforgeExecutionRole",
        baseModelIdentifier=MODEL_ID, customizationType="FINE_TUNING",
        trainingDataConfig={"s3Uri": f"s3://{BUCKET}/train.jsonl"}, outputDataConfig={"s3Uri": f"s3://{BUCKET}/output"},
        hyperParameters={"epochCount": "40", "batchSize": "8", "learningRate": "0.003", "fullFineTuning": "true"}
    )["jobArn"]
    print(f"   {arn}")
    shown, printed_at = None, 0.0
    while True:
        job = bedrock.get_model_customization_job(jobIdentifier=arn)
        phases = {k.replace("Details", ""): v["status"] for k, v in job["statusDetails"].items()}
        loss = job.get("trainingMetrics", {}).get("trainingLoss")
        done = job["status"] not in ("InProgress", "Stopping")
        if (job["status"], phases) != shown or time.time() - printed_at > 10 or done:
            print(f"   {job['status']:10} {phases}" + (f"  training loss {loss:.3f}" if loss is not None else ""),
                  flush=True)
            shown, printed_at = (job["status"], phases), time.time()
        if done:
            break
        time.sleep(1)
    if job["status"] != "Completed":
        raise SystemExit(f"The demo job ended {job['status']}: {job.get('failureMessage')}")

    key = f"output/model-customization-job-{arn.rsplit('/', 1)[1]}/training_artifacts/step_wise_training_metrics.csv"
    say(f"Bedrock: the loss, from s3://{BUCKET}/{key}")
    rows = list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())))
    for row in rows[:: max(1, len(rows) // 8)] + rows[-1:]:
        print(f"   step {int(row['step_number']):4}  epoch {row['epoch_number']}  "
              f"loss {float(row['training_loss']):.3f}  perplexity {float(row['perplexity']):.1f}")

    say("Bedrock: deploy the custom model and ask it with Converse")
    deployment = bedrock.create_custom_model_deployment(
        modelDeploymentName="capitals", modelArn=job["outputModelArn"])["customModelDeploymentArn"]
    print(f"   custom model {job['outputModelArn']}\n   deployment   {deployment}")
    while (status := bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=deployment)["status"]) \
            == "Creating":
        time.sleep(0.5)  # the model loads in the inference host
    if status != "Active":
        raise SystemExit(f"The demo deployment is {status}")
    for question in QUESTIONS:
        print(f"   Q: {question}\n      base model:   {_ask(runtime, MODEL_ID, question)}"
              f"\n      custom model: {_ask(runtime, deployment, question)}")
