// Cross-language interop: an @a2a-js/sdk client resolves the orchestrator's Agent Card and runs the
// credit-risk workflow end to end (the orchestrator's A2A skill `credit-risk`), over each transport the
// card offers that the JS SDK speaks (JSON-RPC, HTTP+JSON).
// The orchestrator authenticates every call: the caller's access token (OAuth client credentials at the
// gateway, resource = the orchestrator's URL) comes in ACCORD_A2A_BEARER, never on the command line.
// Usage: ACCORD_A2A_BEARER=<token> node a2a-workflow.mjs <orchestrator-base-url> <applicant-json>
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory, RestTransportFactory } from "@a2a-js/sdk/client";
import { Role } from "@a2a-js/sdk";
import { randomUUID } from "node:crypto";

const [baseUrl, applicantJson] = process.argv.slice(2);
const bearer = process.env.ACCORD_A2A_BEARER;
const applicant = JSON.parse(applicantJson);
const headers = bearer ? { authorization: `Bearer ${bearer}` } : {};

function message(input) {
  return {
    messageId: randomUUID(),
    contextId: "",
    taskId: "",
    role: Role.ROLE_USER,
    parts: [{ content: { $case: "data", value: input }, metadata: undefined, filename: "", mediaType: "application/json" }],
    metadata: { "accord.skill": "credit-risk" },
    extensions: [],
    referenceTaskIds: [],
  };
}

function resultOf(task) {
  const artifact = (task.artifacts ?? []).find((a) => a.name === "result");
  const part = artifact?.parts?.find((p) => p.content?.$case === "data");
  return part?.content?.value;
}

let failures = 0;
for (const [label, transport] of [["JSONRPC", new JsonRpcTransportFactory()], ["HTTP+JSON", new RestTransportFactory()]]) {
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [transport],
    preferredTransports: [label],
  }));
  const client = await factory.createFromUrl(baseUrl);
  const card = await client.getAgentCard();
  const skills = card.skills.map((s) => s.id);
  const started = Date.now();
  const response = await client.sendMessage(
    { tenant: "", message: message(applicant), configuration: undefined, metadata: undefined },
    { serviceParameters: headers },
  );
  const task = response?.payload?.$case === "task" ? response.payload.value : response;
  const result = resultOf(task);
  const state = task?.status?.state;
  const ok = result && (result.status === "completed" || result.status === "waiting_review");
  console.log(
    `a2a-js ${label}: card "${card.name}" skills [${skills.join(", ")}]; task ${task?.id} state ${state}; ` +
      `run ${result?.run_id} ${result?.status}, decision ${result?.result?.decision ?? "-"} ` +
      `(${Date.now() - started} ms)`,
  );
  if (!ok) {
    failures += 1;
    console.log(JSON.stringify(response).slice(0, 2000));
  }
}
process.exit(failures ? 1 : 0);
