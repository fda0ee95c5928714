// Fetches credentials through the default Node.js provider chain (the
// container provider, from AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) and calls STS GetCallerIdentity
// (endpoint from AWS_ENDPOINT_URL_STS). Prints one JSON line.
import { STSClient, GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";

const provider = fromNodeProviderChain();
try {
  const creds = await provider();
  const sts = new STSClient({ credentials: provider });
  const out = await sts.send(new GetCallerIdentityCommand({}));
  console.log(JSON.stringify({
    Arn: out.Arn,
    Account: out.Account,
    AccessKeyId: creds.accessKeyId,
    Expiration: creds.expiration ? creds.expiration.toISOString() : null,
  }));
} catch (err) {
  console.log(JSON.stringify({ Error: `${err.name}: ${err.message}` }));
  process.exitCode = 1;
}
