// Drives secret-ledger's endpoint with the AWS SDK for JavaScript v3
// (@aws-sdk/client-secrets-manager), as an application would: endpoint, region and
// credentials from the environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY). ROTATION_LAMBDA_ARN names a rotation function the server runs;
// POLICY is a resource policy to attach. Rotation, tags, resource policies and
// random passwords.
// Prints one JSON object with what it saw; exits 1 on an unexpected error.
"use strict";

const {
  SecretsManagerClient,
  CreateSecretCommand,
  RotateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  ListSecretVersionIdsCommand,
  CancelRotateSecretCommand,
  DeleteSecretCommand,
  TagResourceCommand,
  UntagResourceCommand,
  PutResourcePolicyCommand,
  GetResourcePolicyCommand,
  DeleteResourcePolicyCommand,
  ValidateResourcePolicyCommand,
  GetRandomPasswordCommand,
} = require("@aws-sdk/client-secrets-manager");

const WAIT_MILLISECONDS = 60000;
const POLL_MILLISECONDS = 100;

async function errorOf(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return { name: error.name, message: error.message, status: error.$metadata.httpStatusCode };
  }
}

async function waitForRotation(client, name, token) {
  const deadline = Date.now() + WAIT_MILLISECONDS;
  while (Date.now() < deadline) {
    const described = await client.send(new DescribeSecretCommand({ SecretId: name }));
    const stages = described.VersionIdsToStages || {};
    if (described.LastRotatedDate && (stages[token] || []).includes("AWSCURRENT")) {
      return described;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MILLISECONDS));
  }
  throw new Error(`the rotation to ${token} did not finish`);
}

async function tagsAndPolicies(client, name) {
  const policy = process.env.POLICY;
  await client.send(
    new TagResourceCommand({
      SecretId: name,
      Tags: [
        { Key: "team", Value: "payments" },
        { Key: "tier", Value: "1" },
      ],
    }),
  );
  await client.send(new UntagResourceCommand({ SecretId: name, TagKeys: ["tier"] }));
  const tagged = await client.send(new DescribeSecretCommand({ SecretId: name }));
  const byTag = await client.send(
    new ListSecretsCommand({ Filters: [{ Key: "tag-key", Values: ["team"] }] }),
  );
  const systemTag = await errorOf(
    client.send(new TagResourceCommand({ SecretId: name, Tags: [{ Key: "aws:x", Value: "y" }] })),
  );
  const validated = await client.send(new ValidateResourcePolicyCommand({ ResourcePolicy: policy }));
  await client.send(new PutResourcePolicyCommand({ SecretId: name, ResourcePolicy: policy }));
  const attached = await client.send(new GetResourcePolicyCommand({ SecretId: name }));
  await client.send(new DeleteResourcePolicyCommand({ SecretId: name }));
  const detached = await client.send(new GetResourcePolicyCommand({ SecretId: name }));
  return {
    tags: tagged.Tags,
    listedByTag: byTag.SecretList.map((entry) => entry.Name),
    systemTag,
    policyValid: validated.PolicyValidationPassed,
    policyRoundTrip: attached.ResourcePolicy === policy,
    policyAfterDelete: detached.ResourcePolicy === undefined,
  };
}

async function main() {
  const client = new SecretsManagerClient({ maxAttempts: 1 });
  const name = "js/rotated";
  const functionArn = process.env.ROTATION_LAMBDA_ARN;
  const created = await client.send(
    new CreateSecretCommand({ Name: name, SecretString: "first-js-value" }),
  );
  const noFunction = await errorOf(
    client.send(new RotateSecretCommand({ SecretId: name })),
  );
  // The SDK fills ClientRequestToken in itself (an idempotency token).
  const rotated = await client.send(
    new RotateSecretCommand({
      SecretId: name,
      RotationLambdaARN: functionArn,
      RotationRules: { ScheduleExpression: "rate(10 days)", Duration: "2h" },
    }),
  );
  const described = await waitForRotation(client, name, rotated.VersionId);
  const value = await client.send(new GetSecretValueCommand({ SecretId: name }));
  const versions = await client.send(new ListSecretVersionIdsCommand({ SecretId: name }));
  const listed = await client.send(
    new ListSecretsCommand({ Filters: [{ Key: "name", Values: ["js/"] }] }),
  );
  const cancelled = await client.send(new CancelRotateSecretCommand({ SecretId: name }));
  const afterCancel = await client.send(new DescribeSecretCommand({ SecretId: name }));
  const tagsAndPolicy = await tagsAndPolicies(client, name);
  const password = await client.send(
    new GetRandomPasswordCommand({ PasswordLength: 20, ExcludePunctuation: true }),
  );
  const tooShort = await errorOf(client.send(new GetRandomPasswordCommand({ PasswordLength: 3 })));
  const missing = await errorOf(
    client.send(new RotateSecretCommand({ SecretId: "js/missing", RotationLambdaARN: functionArn })),
  );
  await client.send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }));
  const entry = listed.SecretList[0];
  process.stdout.write(
    JSON.stringify({
      createdVersionId: created.VersionId,
      noFunction,
      rotatedVersionId: rotated.VersionId,
      rotationEnabled: described.RotationEnabled,
      rotationLambdaArn: described.RotationLambdaARN,
      rotationRules: described.RotationRules,
      lastRotatedIsDate: described.LastRotatedDate instanceof Date,
      nextAfterLast: described.NextRotationDate > described.LastRotatedDate,
      versionIdsToStages: described.VersionIdsToStages,
      valueChanged: value.SecretString !== "first-js-value",
      currentVersionId: value.VersionId,
      listedVersionIds: versions.Versions.map((version) => version.VersionId).sort(),
      listedRotationEnabled: entry.RotationEnabled,
      listedNextIsDate: entry.NextRotationDate instanceof Date,
      cancelled: { ARN: cancelled.ARN, Name: cancelled.Name, VersionId: cancelled.VersionId },
      enabledAfterCancel: afterCancel.RotationEnabled,
      nextAfterCancel: afterCancel.NextRotationDate === undefined,
      missing,
      tagsAndPolicy,
      passwordLength: password.RandomPassword.length,
      passwordAlphanumeric: /^[A-Za-z0-9]+$/.test(password.RandomPassword),
      tooShort: tooShort && tooShort.name,
    }),
  );
}

main().catch((error) => {
  process.stderr.write(`${error.name}: ${error.message}\n`);
  process.exit(1);
});
