// The AWS SDK for JavaScript v3 as a client of podid: the default Node.js
// provider chain, unmodified (the container provider from
// AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE,
// web identity, …), then, with the argument "sts", STS GetCallerIdentity.
// Prints one JSON line: Arn, Account, AccessKeyId, Expiration, or Error (and
// exits 1). Used by test/sdk and as test/e2e's JavaScript "container".
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

const provider = fromNodeProviderChain();
let out = {};
try {
  const creds = await provider();
  out.AccessKeyId = creds.accessKeyId;
  out.Expiration = creds.expiration ? creds.expiration.toISOString() : null;
  if (process.argv.includes("sts")) {
    const id = await new STSClient({ credentials: provider }).send(new GetCallerIdentityCommand({}));
    out.Arn = id.Arn;
    out.Account = id.Account;
  }
} catch (err) {
  out = { Error: `${err.name}: ${err.message}` };
  process.exitCode = 1;
}
console.log(JSON.stringify(out));
