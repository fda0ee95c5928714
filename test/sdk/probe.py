# boto3 as a client of podid: botocore's default credential chain,
# unmodified, then (with the argument "sts") STS GetCallerIdentity. Prints one
# JSON line: Arn, Account, AccessKeyId, or Error (and exits 1). Used by
# test/sdk and as test/e2e's boto3 "container".
import json, sys
out = {}
try:
    import boto3
    s = boto3.session.Session()
    c = s.get_credentials()
    if c is None:
        raise RuntimeError("no credentials found")
    out["AccessKeyId"] = c.get_frozen_credentials().access_key
    if len(sys.argv) > 1 and sys.argv[1] == "sts":
        r = s.client("sts").get_caller_identity()
        out.update(Arn=r["Arn"], Account=r["Account"])
except Exception as e:
    out = {"Error": "%s: %s" % (type(e).__name__, e)}
print(json.dumps(out))
sys.exit(1 if "Error" in out else 0)
