// The AWS SDK for JavaScript v3 "container" of the end-to-end test: the
// default Node.js provider chain, unmodified, then (with the argument "sts")
// STS GetCallerIdentity. Prints one JSON line: Arn, Account, AccessKeyId or
// Error. Run with --input-type=module -e from test/sdk/js, whose
// node_modules hold the SDK.
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

const provider = fromNodeProviderChain();
const out = {};
try {
  const creds = await provider();
  out.AccessKeyId = creds.accessKeyId;
  if (process.argv.includes("sts")) {
    const id = await new STSClient({ credentials: provider }).send(new GetCallerIdentityCommand({}));
    out.Arn = id.Arn;
    out.Account = id.Account;
  }
} catch (err) {
  for (const k of Object.keys(out)) delete out[k];
  out.Error = `${err.name}: ${err.message}`;
  process.exitCode = 1;
}
console.log(JSON.stringify(out));
