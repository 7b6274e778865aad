// Converse and ConverseStream through the AWS SDK for JavaScript v3, whose Bedrock runtime client speaks
// HTTP/2 only. Reads JOBFORGE_ENDPOINT, MODEL_ID and the AWS_* credentials; prints what came back as JSON.
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
} from "@aws-sdk/client-bedrock-runtime";

const client = new BedrockRuntimeClient({
  endpoint: process.env.JOBFORGE_ENDPOINT,
  region: "us-east-1",
  maxAttempts: 1,
});
const request = {
  modelId: process.env.MODEL_ID,
  messages: [{ role: "user", content: [{ text: "red river" }] }],
  inferenceConfig: { maxTokens: 8, temperature: 0 },
};

const converse = await client.send(new ConverseCommand(request));
const stream = await client.send(new ConverseStreamCommand(request));
const events = [];
let streamed = "";
for await (const event of stream.stream) {
  const [kind] = Object.keys(event);
  events.push(kind);
  if (kind === "contentBlockDelta") streamed += event.contentBlockDelta.delta.text ?? "";
}
client.destroy();
console.log(JSON.stringify({
  converse: {
    httpStatusCode: converse.$metadata.httpStatusCode,
    text: converse.output.message.content[0].text,
    stopReason: converse.stopReason,
    outputTokens: converse.usage.outputTokens,
  },
  stream: { httpStatusCode: stream.$metadata.httpStatusCode, events, text: streamed },
}));
