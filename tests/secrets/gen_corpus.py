#!/usr/bin/env python3
"""Writes a labelled corpus of secrets in the contexts where coding-agent transcripts carry them.

    gen_corpus.py OUTDIR [--seed N] [--per-kind N]

OUTDIR/samples.jsonl   one object per line: {"kind", "secret", "text", "context"}; SECRET is the
                       exact bytes that must never appear publicly (for a PEM block, BEGIN line to
                       END line as written in TEXT, escapes and line-number gutters included)
OUTDIR/transcript-NN.md the same samples inside SpecStory Markdown transcripts (~40 per file, in
                       prompts, responses, tool-use blocks and thinking blocks, with filler text)
OUTDIR/labels.tsv      transcript-file<TAB>kind<TAB>secret (the secret JSON-escaped)

The values are random in each provider's format (alphabet, length, fixed prefixes), from
random.Random(seed): the same seed writes the same bytes. Python 3 standard library only.
"""
import argparse
import base64
import json
import os
import random
import string
import uuid

B62 = string.ascii_letters + string.digits
B64 = B62 + "+/"
B64U = B62 + "-_"
HEX = "0123456789abcdef"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
UPNUM = string.ascii_uppercase + string.digits
PW = B62 + "!#%^*_-+@"

KINDS = ["aws-access-key-id", "aws-secret-key", "gcp-api-key", "gcp-service-account", "azure-storage",
         "github-token", "gitlab-token", "slack-token", "slack-webhook", "stripe-key", "openai-key",
         "anthropic-key", "huggingface-token", "npm-token", "pypi-token", "dockerhub-token", "twilio",
         "sendgrid", "mailgun", "shopify", "discord-bot-token", "discord-webhook", "telegram-bot-token", "jwt",
         "private-key-pem", "private-key-openssh", "private-key-pgp", "url-password", "auth-bearer",
         "auth-basic", "generic-password", "generic-secret-assignment", "dotenv-secret"]

# how a snippet is set in a transcript: (wrapper, fence language or None)
WRAPPERS = ["fence", "tool-use", "think", "plain"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def s(self, alphabet, n):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def pick(self, seq):
        return self.r.choice(seq)

    def n(self, lo, hi):
        return self.r.randint(lo, hi)

    def uuid(self):
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def b64bytes(self, n, alphabet_url=False):
        raw = bytes(self.r.getrandbits(8) for _ in range(n))
        return (base64.urlsafe_b64encode(raw) if alphabet_url else base64.b64encode(raw)).decode()

    def password(self, lo=14, hi=24):
        while True:
            p = self.s(PW, self.n(lo, hi))
            # a password typed by a person has a letter and a digit; keep it random otherwise
            if any(c.isdigit() for c in p) and any(c.isalpha() for c in p):
                return p

    def host(self):
        return self.pick(["db.internal", "10.0.3.17", "prod-db.c9akciq32.eu-west-1.rds.amazonaws.com",
                          "pg.shareline.dev", "mysql-primary.svc.cluster.local", "cluster0.x1y2z.mongodb.net",
                          "cache.internal", "mq.internal", "ftp.files.internal", "git.corp.internal"])

    def user(self):
        return self.pick(["app", "deploy", "admin", "ci", "svc_reports", "postgres", "root", "jenkins", "alice",
                          "shareline"])


# ---------------------------------------------------------------- secret values, one per kind


def aws_key_id(g):
    return g.pick(["AKIA", "AKIA", "AKIA", "ASIA"]) + g.s(B32, 16)


def aws_secret(g):
    return g.s(B64, 40)


def gcp_api_key(g):
    return "AIzaSy" + g.s(B64U, 33)


def pem_body(g, nbytes, width=64, first="MII"):
    body = first + g.b64bytes(nbytes)
    lines = [body[i:i + width] for i in range(0, len(body), width)]
    return lines


def pem_block(g, label, nbytes=None):
    nbytes = nbytes or g.pick([600, 900, 1190])
    lines = pem_body(g, nbytes)
    head = ["-----BEGIN %s-----" % label]
    if label == "RSA PRIVATE KEY" and g.r.random() < 0.2:
        head += ["Proc-Type: 4,ENCRYPTED", "DEK-Info: AES-128-CBC,%s" % g.s(HEX, 32).upper(), ""]
    return head + lines + ["-----END %s-----" % label]


def openssh_block(g):
    body = "b3BlbnNzaC1rZXktdjEAAAAA" + g.b64bytes(g.pick([300, 400, 1800]))
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    return ["-----BEGIN OPENSSH PRIVATE KEY-----"] + lines + ["-----END OPENSSH PRIVATE KEY-----"]


def pgp_block(g):
    body = "lQ" + g.b64bytes(g.pick([700, 1200]))
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    head = ["-----BEGIN PGP PRIVATE KEY BLOCK-----"]
    if g.r.random() < 0.3:
        head.append("Comment: GPG key for release signing")
    head.append("")
    return head + lines + ["=" + g.s(B64, 4), "-----END PGP PRIVATE KEY BLOCK-----"]


def jwt_token(g):
    alg = g.pick(["HS256", "RS256", "ES256", "HS512"])
    hdr = json.dumps({"alg": alg, "typ": "JWT"} if g.r.random() < 0.7 else {"typ": "JWT", "alg": alg, "kid": g.s(HEX, 8)},
                     separators=(",", ":"))
    payload = json.dumps({"sub": g.uuid(), "iat": g.n(1700000000, 1760000000), "exp": g.n(1760000000, 1790000000),
                          "role": g.pick(["service_role", "admin", "user", "authenticated"]),
                          "iss": g.pick(["https://auth.shareline.dev", "supabase", "shareline-api"])},
                         separators=(",", ":"))
    enc = lambda b: base64.urlsafe_b64encode(b.encode()).decode().rstrip("=")
    sig = g.s(B64U, 43 if alg.startswith("HS2") else 86)
    return "%s.%s.%s" % (enc(hdr), enc(payload), sig)


def discord_bot(g):
    uid = str(g.n(10 ** 17, 2 * 10 ** 18))
    first = base64.b64encode(uid.encode()).decode().rstrip("=")
    return "%s.%s.%s" % (first, g.s(B64U, 6), g.s(B64U, g.pick([27, 38])))


# ---------------------------------------------------------------- the snippets, per kind
# Each returns (form, lang, snippet, secret): LANG names the fence for the "fence" wrapper (None when
# the snippet is prose or a log line that reads as text); SECRET is the substring that must be covered.


def f_aws_key_id(g, i):
    k = aws_key_id(g)
    forms = [
        ("env", "bash", "export AWS_ACCESS_KEY_ID=%s\nexport AWS_DEFAULT_REGION=eu-west-1" % k),
        ("ini", "ini", "[default]\naws_access_key_id = %s\nregion = us-east-1" % k),
        ("json", "json", '{\n  "AccessKey": {\n    "UserName": "ci-bot",\n    "AccessKeyId": "%s",\n    "Status": "Active"\n  }\n}' % k),
        ("prose", None, "The failing requests are signed with the key %s, which belongs to the ci-bot user." % k),
        ("python", "python", 's3 = boto3.client("s3", aws_access_key_id="%s", region_name="eu-west-1")' % k),
        ("log", None, "2026-01-05T10:22:13Z ERROR botocore: AccessDenied for access key %s on s3:PutObject" % k),
        ("yaml", "yaml", "env:\n  AWS_ACCESS_KEY_ID: %s\n  AWS_REGION: eu-west-1" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_aws_secret(g, i):
    k, kid = aws_secret(g), aws_key_id(g)
    forms = [
        ("ini", "ini", "[default]\naws_access_key_id = %s\naws_secret_access_key = %s" % (kid, k)),
        ("env", "bash", "export AWS_ACCESS_KEY_ID=%s\nexport AWS_SECRET_ACCESS_KEY=%s" % (kid, k)),
        ("json", "json", '{\n  "AccessKey": {\n    "AccessKeyId": "%s",\n    "SecretAccessKey": "%s",\n    "Status": "Active"\n  }\n}' % (kid, k)),
        ("python", "python", 'session = boto3.Session(\n    aws_access_key_id="%s",\n    aws_secret_access_key="%s",\n)' % (kid, k)),
        ("yaml", "yaml", "aws:\n  access_key_id: %s\n  secret_access_key: %s" % (kid, k)),
        ("shell", None, "$ aws configure\nAWS Access Key ID [None]: %s\nAWS Secret Access Key [None]: %s\nDefault region name [None]: eu-west-1" % (kid, k)),
        ("toml", "toml", '[storage]\naws_secret_access_key = "%s"' % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_gcp_api_key(g, i):
    k = gcp_api_key(g)
    forms = [
        ("url", None, "Calling https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=%s returns REQUEST_DENIED." % k),
        ("js", "js", "const firebaseConfig = {\n  apiKey: \"%s\",\n  authDomain: \"shareline-dev.firebaseapp.com\",\n};" % k),
        ("env", "bash", "GOOGLE_API_KEY=%s\nGOOGLE_CLOUD_PROJECT=shareline-dev" % k),
        ("prose", None, "I rotated the Gemini key; the new one is %s and it is restricted to the Generative Language API." % k),
        ("python", "python", 'genai.configure(api_key="%s")' % k),
        ("curl", "bash", 'curl "https://generativelanguage.googleapis.com/v1beta/models?key=%s"' % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_gcp_sa(g, i):
    kid = g.s(HEX, 40)
    block = pem_block(g, "PRIVATE KEY", 1190)
    esc = "\\n".join(block)
    doc = ('{\n  "type": "service_account",\n  "project_id": "shareline-prod",\n  "private_key_id": "%s",\n'
           '  "private_key": "%s\\n",\n  "client_email": "uploader@shareline-prod.iam.gserviceaccount.com",\n'
           '  "client_id": "%s",\n  "token_uri": "https://oauth2.googleapis.com/token"\n}' % (kid, esc, g.s(string.digits, 21)))
    # every third sample labels the key id (its own rule), the others the key
    secret = kid if i % 3 == 2 else esc
    form = ("json-file", "json") if i % 2 == 0 else ("cat-output", None)
    if form[0] == "cat-output":
        doc = "$ cat sa-key.json\n" + doc
    return form[0] + ("-key-id" if secret == kid else ""), form[1], doc, secret


def f_azure(g, i):
    k = g.s(B64, 86) + "=="
    acct = g.pick(["sharelineprod", "slbackups", "stshareline01"])
    cs = "DefaultEndpointsProtocol=https;AccountName=%s;AccountKey=%s;EndpointSuffix=core.windows.net" % (acct, k)
    forms = [
        ("env", "bash", 'AZURE_STORAGE_CONNECTION_STRING="%s"' % cs),
        ("json", "json", '{\n  "Values": {\n    "AzureWebJobsStorage": "%s",\n    "FUNCTIONS_WORKER_RUNTIME": "python"\n  }\n}' % cs),
        ("python", "python", 'conn = "%s"\nclient = BlobServiceClient.from_connection_string(conn)' % cs),
        ("cli", "bash", "az storage blob upload --account-name %s --account-key %s -c backups -f dump.sql" % (acct, k)),
        ("env-key", "bash", "export AZURE_STORAGE_ACCOUNT=%s\nexport AZURE_STORAGE_KEY=%s" % (acct, k)),
        ("prose", None, "Here is the connection string from the portal: %s" % cs),
        ("csharp", "csharp", 'var cs = "%s";' % cs),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_github(g, i):
    pre = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"][i % 6]
    if pre == "github_pat_":
        k = "github_pat_11" + g.s(UPNUM, 20) + "_" + g.s(B62, 59)
    else:
        k = pre + g.s(B62, 36)
    forms = [
        ("env", "bash", "export GITHUB_TOKEN=%s" % k),
        ("git-url", "bash", "git clone https://x-access-token:%s@github.com/shareline/shareline.git" % k),
        ("curl", "bash", 'curl -H "Authorization: token %s" https://api.github.com/user' % k),
        ("yaml", "yaml", "github:\n  token: %s\n  owner: shareline" % k),
        ("prose", None, "I created a token (%s) with repo scope for the release job." % k),
        ("log", None, "remote: Invalid username or password.\nfatal: Authentication failed using token %s" % k),
        ("json", "json", '{"github": {"token": "%s", "repo": "shareline/shareline"}}' % k),
    ]
    f = forms[(i // 6 + i) % len(forms)]
    return f[0], f[1], f[2], k


def f_gitlab(g, i):
    k = "glpat-" + g.s(B64U, 20)
    forms = [
        ("curl", "bash", 'curl --header "PRIVATE-TOKEN: %s" "https://gitlab.com/api/v4/projects"' % k),
        ("git-url", "bash", "git clone https://oauth2:%s@gitlab.com/shareline/infra.git" % k),
        ("env", "bash", "GITLAB_TOKEN=%s" % k),
        ("prose", None, "Use %s as the CI variable GL_TOKEN, it has api scope." % k),
        ("python", "python", 'gl = gitlab.Gitlab("https://gitlab.com", private_token="%s")' % k),
        ("yaml", "yaml", "gitlab:\n  url: https://gitlab.com\n  token: %s" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_slack_token(g, i):
    p = ["xoxb", "xoxp", "xoxa", "xoxr", "xoxs", "xapp"][i % 6]
    if p == "xoxb":
        k = "xoxb-%s-%s-%s" % (g.s(string.digits, 12), g.s(string.digits, 13), g.s(B62, 24))
    elif p == "xoxp":
        k = "xoxp-%s-%s-%s-%s" % (g.s(string.digits, 12), g.s(string.digits, 12), g.s(string.digits, 13), g.s(HEX, 32))
    elif p == "xapp":
        k = "xapp-1-A%s-%s-%s" % (g.s(UPNUM, 10), g.s(string.digits, 13), g.s(HEX, 64))
    else:
        k = "%s-2-%s-%s-%s-%s" % (p, g.s(string.digits, 12), g.s(string.digits, 12), g.s(string.digits, 13), g.s(HEX, 64))
    forms = [
        ("env", "bash", "SLACK_BOT_TOKEN=%s\nSLACK_CHANNEL=#deploys" % k),
        ("python", "python", 'client = WebClient(token="%s")' % k),
        ("curl", "bash", 'curl -H "Authorization: Bearer %s" https://slack.com/api/auth.test' % k),
        ("prose", None, "The bot token is %s; it was installed to the workspace yesterday." % k),
        ("json", "json", '{"slack": {"token": "%s", "channel": "C0123"}}' % k),
        ("log", None, "slack_sdk.errors.SlackApiError: The request to the Slack API failed. token=%s error=missing_scope" % k),
    ]
    f = forms[(i // 6 + i) % len(forms)]
    return f[0], f[1], f[2], k


def f_slack_webhook(g, i):
    path = "T%s/B%s/%s" % (g.s(UPNUM, g.pick([8, 10])), g.s(UPNUM, g.pick([8, 10, 11])), g.s(B62, 24))
    url = "https://hooks.slack.com/services/" + path
    forms = [
        ("curl", "bash", "curl -X POST -H 'Content-type: application/json' --data '{\"text\":\"deploy done\"}' %s" % url),
        ("env", "bash", "SLACK_WEBHOOK_URL=%s" % url),
        ("prose", None, "Post alerts to %s so they land in #alerts." % url),
        ("yaml", "yaml", "notifications:\n  slack:\n    webhook_url: %s" % url),
        ("python", "python", 'requests.post("%s", json={"text": msg})' % url),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], path


def f_stripe(g, i):
    k = [lambda: "sk_live_51" + g.s(B62, 97), lambda: "sk_live_" + g.s(B62, 24), lambda: "rk_live_51" + g.s(B62, 97),
         lambda: "rk_live_" + g.s(B62, 24)][i % 4]()
    forms = [
        ("env", "bash", "STRIPE_SECRET_KEY=%s\nSTRIPE_PUBLISHABLE_KEY=pk_live_%s" % (k, g.s(B62, 24))),
        ("python", "python", 'stripe.api_key = "%s"' % k),
        ("js", "js", "const stripe = require('stripe')('%s');" % k),
        ("curl", "bash", "curl https://api.stripe.com/v1/charges -u %s:" % k),
        ("prose", None, "Switch the dashboard to live mode; the key there, %s, goes into the vault." % k),
        ("log", None, "stripe.error.AuthenticationError: Invalid API Key provided: %s" % k),
    ]
    f = forms[(i // 4 + i) % len(forms)]
    return f[0], f[1], f[2], k


def f_openai(g, i):
    k = [lambda: "sk-proj-" + g.s(B64U, 74) + "T3BlbkFJ" + g.s(B64U, 74),
         lambda: "sk-svcacct-" + g.s(B64U, 58) + "T3BlbkFJ" + g.s(B64U, 58),
         lambda: "sk-" + g.s(B62, 20) + "T3BlbkFJ" + g.s(B62, 20),
         lambda: "sk-admin-" + g.s(B64U, 58) + "T3BlbkFJ" + g.s(B64U, 58)][i % 4]()
    forms = [
        ("env", "bash", "export OPENAI_API_KEY=%s" % k),
        ("python", "python", 'client = OpenAI(api_key="%s")' % k),
        ("curl", "bash", 'curl https://api.openai.com/v1/models -H "Authorization: Bearer %s"' % k),
        ("prose", None, "My key is %s, why do I get 429s?" % k),
        ("log", None, "openai.AuthenticationError: Error code: 401 - Incorrect API key provided: %s." % k),
        ("toml", "toml", '[llm]\nprovider = "openai"\napi_key = "%s"' % k),
    ]
    f = forms[(i // 4 + i) % len(forms)]
    return f[0], f[1], f[2], k


def f_anthropic(g, i):
    k = ("sk-ant-api03-" if i % 3 else "sk-ant-admin01-") + g.s(B64U, 93) + "AA"
    forms = [
        ("env", "bash", "ANTHROPIC_API_KEY=%s" % k),
        ("python", "python", 'client = anthropic.Anthropic(api_key="%s")' % k),
        ("curl", "bash", 'curl https://api.anthropic.com/v1/messages -H "x-api-key: %s" -H "anthropic-version: 2023-06-01"' % k),
        ("prose", None, "Set ANTHROPIC_API_KEY to %s in the CI secrets." % k),
        ("json", "json", '{"env": {"ANTHROPIC_API_KEY": "%s"}}' % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_hf(g, i):
    k = "hf_" + g.s(string.ascii_letters, 34)
    forms = [
        ("cli", "bash", "huggingface-cli login --token %s" % k),
        ("env", "bash", "HF_TOKEN=%s" % k),
        ("python", "python", 'model = AutoModel.from_pretrained("org/private-model", token="%s")' % k),
        ("prose", None, "Use my read token %s to pull the gated weights." % k),
        ("git-url", "bash", "git clone https://user:%s@huggingface.co/org/private-model" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_npm(g, i):
    k = "npm_" + g.s(B62, 36)
    forms = [
        ("npmrc", "ini", "//registry.npmjs.org/:_authToken=%s\nalways-auth=true" % k),
        ("env", "bash", "NPM_TOKEN=%s npm publish --access public" % k),
        ("yaml", "yaml", "- run: npm publish\n  env:\n    NODE_AUTH_TOKEN: %s" % k),
        ("prose", None, "The automation token %s can publish @shareline/*." % k),
        ("log", None, "npm ERR! 403 Forbidden - PUT https://registry.npmjs.org/@shareline%%2fclient - token %s lacks publish rights" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_pypi(g, i):
    k = "pypi-AgEIcHlwaS5vcmc" + g.s(B64U, g.n(150, 200))
    forms = [
        ("pypirc", "ini", "[pypi]\n  username = __token__\n  password = %s" % k),
        ("cli", "bash", "twine upload -u __token__ -p %s dist/*" % k),
        ("env", "bash", "export TWINE_PASSWORD=%s" % k),
        ("prose", None, "Upload with the project token %s." % k),
        ("toml", "toml", '[tool.poetry.http-basic.pypi]\npassword = "%s"' % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_docker(g, i):
    k = "dckr_pat_" + g.s(B64U, 27)
    forms = [
        ("cli", "bash", "echo %s | docker login -u shareline --password-stdin" % k),
        ("cli-p", "bash", "docker login -u shareline -p %s" % k),
        ("env", "bash", "DOCKERHUB_TOKEN=%s" % k),
        ("yaml", "yaml", "- uses: docker/login-action@v3\n  with:\n    username: shareline\n    password: %s" % k),
        ("prose", None, "The Docker Hub token %s is read-only." % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_twilio(g, i):
    ac = "AC" + g.s(HEX, 32)
    sk = "SK" + g.s(HEX, 32)
    tok = g.s(HEX, 32)
    sec = g.s(B62, 32)
    forms = [
        ("env-sid", "bash", "TWILIO_ACCOUNT_SID=%s\nTWILIO_API_KEY=%s\nTWILIO_API_SECRET=%s" % (ac, sk, sec), sk),
        ("env-token", "bash", "TWILIO_ACCOUNT_SID=%s\nTWILIO_AUTH_TOKEN=%s" % (ac, tok), tok),
        ("python", "python", 'client = Client("%s", "%s")' % (ac, tok), tok),
        ("curl", "bash", "curl -X POST https://api.twilio.com/2010-04-01/Accounts/%s/Messages.json -u %s:%s" % (ac, sk, sec), sec),
        ("js", "js", "const authToken = '%s';\nconst client = require('twilio')('%s', authToken);" % (tok, ac), tok),
        ("prose", None, "The Twilio API key is %s (secret in 1Password)." % sk, sk),
        ("env-secret", "bash", "TWILIO_API_KEY=%s\nTWILIO_API_SECRET=%s" % (sk, sec), sec),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], f[3]


def f_sendgrid(g, i):
    k = "SG.%s.%s" % (g.s(B64U, 22), g.s(B64U, 43))
    forms = [
        ("env", "bash", "SENDGRID_API_KEY=%s" % k),
        ("python", "python", "sg = SendGridAPIClient('%s')" % k),
        ("curl", "bash", 'curl https://api.sendgrid.com/v3/mail/send -H "Authorization: Bearer %s"' % k),
        ("prose", None, "SendGrid key for transactional mail: %s" % k),
        ("yaml", "yaml", "mail:\n  provider: sendgrid\n  api_key: %s" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_mailgun(g, i):
    k = "key-" + g.s(HEX, 32)
    forms = [
        ("curl", "bash", "curl -s --user 'api:%s' https://api.mailgun.net/v3/mg.shareline.dev/messages -F to=a@b.c" % k),
        ("env", "bash", "MAILGUN_API_KEY=%s\nMAILGUN_DOMAIN=mg.shareline.dev" % k),
        ("python", "python", 'requests.post(url, auth=("api", "%s"), data=msg)' % k),
        ("prose", None, "The Mailgun API key is %s." % k),
        ("yaml", "yaml", "mailgun:\n  domain: mg.shareline.dev\n  api_key: %s" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_shopify(g, i):
    k = ["shpat_", "shpca_", "shppa_", "shpss_"][i % 4] + g.s(HEX, 32)
    forms = [
        ("curl", "bash", 'curl -H "X-Shopify-Access-Token: %s" https://shop.myshopify.com/admin/api/2024-01/products.json' % k),
        ("env", "bash", "SHOPIFY_ACCESS_TOKEN=%s" % k),
        ("js", "js", "const shopify = new Shopify({ shopName: 'shop', accessToken: '%s' });" % k),
        ("prose", None, "The custom app's admin token is %s." % k),
        ("toml", "toml", '[shopify]\naccess_token = "%s"' % k),
    ]
    f = forms[(i // 4 + i) % len(forms)]
    return f[0], f[1], f[2], k


def f_discord_bot(g, i):
    k = discord_bot(g)
    forms = [
        ("python", "python", 'bot.run("%s")' % k),
        ("env", "bash", "DISCORD_TOKEN=%s" % k),
        ("js", "js", "client.login('%s');" % k),
        ("prose", None, "Bot token: %s (reset it if it leaks)." % k),
        ("json", "json", '{"token": "%s", "prefix": "!"}' % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_discord_webhook(g, i):
    tok = g.s(B64U, 68)
    url = "https://%sdiscord%s.com/api/webhooks/%s/%s" % (g.pick(["", "", "ptb.", "canary."]), g.pick(["", "app"]),
                                                         g.s(string.digits, g.pick([18, 19])), tok)
    forms = [
        ("curl", "bash", "curl -H 'Content-Type: application/json' -d '{\"content\":\"build failed\"}' %s" % url),
        ("env", "bash", "DISCORD_WEBHOOK_URL=%s" % url),
        ("prose", None, "Send the alerts to %s please." % url),
        ("python", "python", 'DiscordWebhook(url="%s", content=msg).execute()' % url),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], tok


def f_telegram(g, i):
    k = "%d:AA%s" % (g.n(10 ** 8, 8 * 10 ** 9), g.s(B64U, 33))
    forms = [
        ("url", None, "Check it with https://api.telegram.org/bot%s/getMe in a browser." % k),
        ("env", "bash", "TELEGRAM_BOT_TOKEN=%s\nTELEGRAM_CHAT_ID=-100%s" % (k, g.s(string.digits, 10))),
        ("python", "python", 'app = ApplicationBuilder().token("%s").build()' % k),
        ("curl", "bash", 'curl -s "https://api.telegram.org/bot%s/sendMessage" -d chat_id=42 -d text=hi' % k),
        ("prose", None, "BotFather gave me %s for @shareline_alerts_bot." % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_jwt(g, i):
    k = jwt_token(g)
    forms = [
        ("env", "bash", "SUPABASE_SERVICE_ROLE_KEY=%s" % k),
        ("curl", "bash", 'curl -H "Authorization: Bearer %s" https://api.shareline.dev/v1/sessions' % k),
        ("json", "json", '{"access_token": "%s", "token_type": "bearer", "expires_in": 3600}' % k),
        ("prose", None, "Decode this token and tell me why it is rejected: %s" % k),
        ("log", None, "2026-01-07 09:12:44,120 WARNING auth: rejected token %s (expired)" % k),
        ("js", "js", "localStorage.setItem('token', '%s');" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def pem_contexts(g, i, lines):
    """PEM LINES in a file dump, JSON with \\n escapes, a YAML block scalar, or a Read tool's gutter"""
    block = "\n".join(lines)
    c = i % 5
    if c == 0:
        return "file-dump", None, "$ cat ~/.ssh/deploy_key\n%s\n$ chmod 600 ~/.ssh/deploy_key" % block, block
    if c == 1:
        esc = "\\n".join(lines)
        return "json-escaped", "json", '{\n  "name": "deploy",\n  "key": "%s\\n"\n}' % esc, esc
    if c == 2:
        ind = "\n".join("    " + l if l else "" for l in lines)
        secret = ind.lstrip(" ")
        return "yaml-block", "yaml", "tls:\n  key: |\n%s\n  cert_file: /etc/ssl/cert.pem" % ind, secret
    if c == 3:
        gut = "\n".join("%6d\u2192%s" % (n + 1, l) for n, l in enumerate(lines))
        secret = gut[gut.index("-----BEGIN"):]
        return "read-gutter", None, gut, secret
    return "fenced-file", "text", block, block


def f_pem(g, i):
    label = ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"][i % 5]
    lines = pem_block(g, label, 220 if label.startswith("EC") else None)
    return pem_contexts(g, i // 5 + i, lines)


def f_openssh(g, i):
    return pem_contexts(g, i, openssh_block(g))


def f_pgp(g, i):
    return pem_contexts(g, i, pgp_block(g))


def f_url_password(g, i):
    pw = g.password(12, 24).replace("@", "").replace("/", "").replace("#", "").replace("%", "")
    u, h = g.user(), g.host()
    scheme = ["postgres", "postgresql", "mysql", "mongodb", "mongodb+srv", "redis", "rediss", "amqp", "https", "ftp"][i % 10]
    if scheme.startswith("redis"):
        url = "%s://:%s@%s:6379/0" % (scheme, pw, h)
    elif scheme == "https":
        url = "https://%s:%s@%s/shareline/app.git" % (u, pw, h)
    else:
        url = "%s://%s:%s@%s/%s" % (scheme, u, pw, h, g.pick(["app", "reports", "shareline", ""]))
    forms = [
        ("env", "bash", "DATABASE_URL=%s" % url),
        ("python", "python", 'engine = create_engine("%s")' % url),
        ("prose", None, "Connect with %s and run the migration." % url),
        ("log", None, "sqlalchemy.exc.OperationalError: could not connect to %s: connection refused" % url),
        ("yaml", "yaml", "services:\n  api:\n    environment:\n      - BROKER_URL=%s" % url),
        ("cli", "bash", "git clone %s" % url if scheme == "https" else "psql '%s' -c 'select 1'" % url),
    ]
    f = forms[(i // 10 + i) % len(forms)]
    return f[0], f[1], f[2], pw


def f_bearer(g, i):
    k = [lambda: g.s(B62, 40), lambda: g.s(B64U, 64), lambda: g.s(HEX, 64), lambda: "at_" + g.s(B62, 32)][i % 4]()
    forms = [
        ("curl", "bash", 'curl -H "Authorization: Bearer %s" https://api.shareline.dev/v1/me' % k),
        ("http", "http", "GET /v1/me HTTP/1.1\nHost: api.shareline.dev\nAuthorization: Bearer %s\nAccept: */*" % k),
        ("json", "json", '{"headers": {"Authorization": "Bearer %s", "Accept": "application/json"}}' % k),
        ("python", "python", 'headers = {"Authorization": "Bearer %s"}' % k),
        ("log", None, "DEBUG urllib3: > Authorization: Bearer %s" % k),
        ("js", "js", "fetch(url, { headers: { 'Authorization': 'Bearer %s' } });" % k),
    ]
    f = forms[(i // 4 + i) % len(forms)]
    return f[0], f[1], f[2], k


def f_basic(g, i):
    cred = "%s:%s" % (g.user(), g.password(12, 20))
    k = base64.b64encode(cred.encode()).decode()
    forms = [
        ("curl", "bash", 'curl -H "Authorization: Basic %s" https://ci.internal/api/json' % k),
        ("http", "http", "POST /upload HTTP/1.1\nHost: nexus.internal\nAuthorization: Basic %s" % k),
        ("json", "json", '{"headers": {"Authorization": "Basic %s"}}' % k),
        ("log", None, "[proxy] 401 for GET /metrics (Authorization: Basic %s)" % k),
        ("python", "python", "session.headers['Authorization'] = 'Basic %s'" % k),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], k


def f_password(g, i):
    pw = g.password()
    q = pw.replace("'", "").replace('"', "")
    forms = [
        ("python", "python", 'conn = psycopg2.connect(host="db", user="app", password="%s")' % q),
        ("yaml", "yaml", "spring:\n  datasource:\n    username: app\n    password: %s" % q),
        ("json", "json", '{"db": {"user": "app", "password": "%s"}}' % q),
        ("ini", "ini", "[mysql]\nuser = app\npassword = %s" % q),
        ("toml", "toml", '[database]\nuser = "app"\npassword = "%s"' % q),
        ("js", "js", "const pool = new Pool({ user: 'app', password: '%s' });" % q),
        ("go", "go", 'cfg.Passwd := "%s"' % q),
        ("prose", None, "The staging admin login is admin / password: %s" % q),
        ("php", "php", "'password' => '%s'," % q),
        ("passwd-yaml", "yaml", "smtp:\n  user: alerts\n  passwd: %s" % q),
        ("pwd", "bash", "db_pwd=%s" % q),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], q


def f_generic(g, i):
    v = [lambda: g.s(B62, 32), lambda: g.s(B64U, 40), lambda: g.s(HEX, 40), lambda: g.s(B64, 44)][i % 4]()
    name = ["secret", "client_secret", "api_key", "apikey", "access_key", "private_key", "token", "access_token",
            "refresh_token", "secret_key", "apiKey", "clientSecret"][i % 12]
    forms = [
        ("python", "python", '%s = "%s"' % (name, v)),
        ("yaml", "yaml", "oauth:\n  client_id: shareline-web\n  %s: %s" % (name, v)),
        ("json", "json", '{"client_id": "shareline-web", "%s": "%s"}' % (name, v)),
        ("js", "js", "const %s = '%s';" % (name, v)),
        ("toml", "toml", '[auth]\n%s = "%s"' % (name, v)),
        ("ini", "ini", "[oauth]\n%s = %s" % (name, v)),
        ("go", "go", '%s := "%s"' % (name, v)),
        ("url", None, "https://api.shareline.dev/v1/export?format=csv&%s=%s&page=2" % (name, v)),
    ]
    f = forms[(i // 12 + i) % len(forms)]
    return f[0], f[1], f[2], v


def f_dotenv(g, i):
    name = ["SESSION_SECRET", "JWT_SECRET", "ENCRYPTION_KEY", "DB_PASSWORD", "REDIS_PASS", "SMTP_PASSWORD",
            "INTERNAL_API_TOKEN", "GOOGLE_CLIENT_SECRET", "ADMIN_CREDENTIALS", "BASIC_AUTH", "SIGNING_KEY",
            "APP_KEY", "WEBHOOK_SECRET", "MASTER_PASSWD"][i % 14]
    v = [lambda: g.s(B62, 32), lambda: g.s(HEX, 64), lambda: g.s(B64, 44), lambda: g.password(16, 28),
         lambda: "base64:" + g.s(B64, 43) + "="][i % 5]()
    v = v.replace("'", "").replace('"', "").replace("$", "")
    lines = ["NODE_ENV=production", "PORT=3000", "LOG_LEVEL=info", "%s=%s" % (name, v), "DB_HOST=db.internal",
             "FEATURE_FLAGS=search,share"]
    g.r.shuffle(lines)
    forms = [
        ("env-file", "bash", "\n".join(lines)),
        ("cat-env", None, "$ cat .env\n" + "\n".join(lines)),
        ("export", "bash", "export %s='%s'" % (name, v)),
        ("docker", "bash", "docker run -e %s=%s -p 3000:3000 shareline/api" % (name, v)),
        ("compose", "yaml", "services:\n  api:\n    environment:\n      - %s=%s" % (name, v)),
    ]
    f = forms[i % len(forms)]
    return f[0], f[1], f[2], v


MAKERS = {
    "aws-access-key-id": f_aws_key_id, "aws-secret-key": f_aws_secret, "gcp-api-key": f_gcp_api_key,
    "gcp-service-account": f_gcp_sa, "azure-storage": f_azure, "github-token": f_github, "gitlab-token": f_gitlab,
    "slack-token": f_slack_token, "slack-webhook": f_slack_webhook, "stripe-key": f_stripe, "openai-key": f_openai,
    "anthropic-key": f_anthropic, "huggingface-token": f_hf, "npm-token": f_npm, "pypi-token": f_pypi,
    "dockerhub-token": f_docker, "twilio": f_twilio, "sendgrid": f_sendgrid, "mailgun": f_mailgun,
    "shopify": f_shopify, "discord-bot-token": f_discord_bot, "discord-webhook": f_discord_webhook,
    "telegram-bot-token": f_telegram, "jwt": f_jwt, "private-key-pem": f_pem, "private-key-openssh": f_openssh,
    "private-key-pgp": f_pgp, "url-password": f_url_password, "auth-bearer": f_bearer, "auth-basic": f_basic,
    "generic-password": f_password, "generic-secret-assignment": f_generic, "dotenv-secret": f_dotenv,
}

# ---------------------------------------------------------------- wrappers

LEADS = ["Here is what I have:", "This is the relevant part:", "Output:", "From the config:",
         "I ran this and it fails:", "For reference:", "Current setup:", "The file contains:"]
TOOL_CMDS = {"bash": "cat .env.local", "python": "sed -n 1,40p app/settings.py", "js": "cat src/config.js",
             "yaml": "cat deploy/values.yaml", "json": "cat config/credentials.json", "toml": "cat config.toml",
             "ini": "cat ~/.config/app.ini", None: "tail -n 20 logs/app.log"}
THOUGHTS = ["The user pasted the credentials; I should not repeat them more than needed. Looking at it:",
            "Let me check the value they gave:", "The error mentions this value:",
            "So the config has:"]


def wrap(g, kind, i, form, lang, snippet):
    """sets SNIPPET in a context; returns (context name, text, where) with where in prompt/response"""
    w = WRAPPERS[(i + KINDS.index(kind)) % len(WRAPPERS)]
    if w == "plain" and lang is not None and "\n" in snippet:
        w = "fence"
    if w == "fence":
        fl = lang or "text"
        return "%s/fence-%s" % (form, fl), "%s\n\n```%s\n%s\n```" % (g.pick(LEADS), fl, snippet), "any"
    if w == "tool-use":
        cmd = snippet.split("\n")[0][2:] if snippet.startswith("$ ") else TOOL_CMDS.get(lang, "cat notes.txt")
        body = snippet.split("\n", 1)[1] if snippet.startswith("$ ") and "\n" in snippet else snippet
        text = ('<tool-use data-tool-type="shell" data-tool-name="Bash"><details>\n'
                "<summary>Tool use: **Bash**</summary>\n\n```bash\n%s\n```\n\n```\n%s\n```\n</details></tool-use>"
                % (cmd, body))
        return "%s/tool-use" % form, text, "response"
    if w == "think":
        text = ("<think><details><summary>Thought Process</summary>\n%s\n\n%s\n\nI'll suggest moving it to a "
                "secret store.\n</details></think>" % (g.pick(THOUGHTS), snippet))
        return "%s/think" % form, text, "response"
    return "%s/plain" % form, snippet, "any"


# ---------------------------------------------------------------- filler and transcripts

FILLER_P = [
    "Can you look at why the deploy job fails on main? It started after the dependency bump.",
    "Please refactor the upload handler so it streams instead of buffering the whole file.",
    "The tests pass locally but CI times out on the integration suite. Any idea?",
    "Add pagination to the sessions endpoint, 50 per page, with a cursor.",
    "Why does the worker crash with SIGSEGV when the queue is empty?",
    "Write a migration that adds an index on (owner_id, created_at).",
    "The staging environment can't reach the database since yesterday.",
    "Set up the notification step for failed builds.",
]
FILLER_R = [
    "I'll start by reading the configuration and the code that loads it.",
    "The problem is in the retry loop: it never resets the backoff after a success, so after a few failures "
    "every request waits the maximum delay.",
    "I changed the handler to read the body in 64 KiB chunks and hash as it goes; memory now stays flat.",
    "Running the test suite again to confirm the fix.",
    "All 212 tests pass. The remaining warning is about a deprecated option in the linter config.",
    "Note: credentials should not live in the repository. Move them to the CI secret store and read them "
    "from the environment at start-up.",
    "The index makes the listing query use an index range scan instead of a filesort.",
    "I'll check the connection settings next.",
]
FILLER_CODE = [
    "```python\ndef paginate(rows, limit=50, cursor=None):\n    start = rows.index(cursor) + 1 if cursor else 0\n"
    "    return rows[start:start + limit]\n```",
    "```bash\n$ make test\nok   core/upload   0.41s\nok   core/search   1.02s\n```",
    '```yaml\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n'
    "      - run: make test\n```",
    '```json\n{"status": "ok", "sessions": 42, "next_cursor": "c_1042"}\n```',
]
FILLER_TOOL = [
    '<tool-use data-tool-type="shell" data-tool-name="Bash"><details>\n<summary>Tool use: **Bash**</summary>\n\n'
    "```bash\ngit status --short\n```\n\n```\n M src/upload.c\n M tests/test_upload.c\n```\n</details></tool-use>",
    '<tool-use data-tool-type="read" data-tool-name="Read"><details>\n<summary>Tool use: **Read**</summary>\n'
    " `./src/retry.py`\n\n```text\n     1\u2192import time\n     2\u2192\n     3\u2192def backoff(n):\n"
    "     4\u2192    return min(2 ** n, 60)\n```\n</details></tool-use>",
]


def transcript(g, idx, samples):
    t0 = "2026-%02d-%02d %02d:%02d:00Z" % (1 + idx % 12, 1 + idx % 27, 8 + idx % 10, idx % 60)
    title = g.pick(["Fix deploy credentials", "Debug staging outage", "Wire up notifications",
                    "Move secrets to env", "Investigate auth failures", "Set up CI publishing"])
    out = ["<!-- Generated by SpecStory, Markdown v2.1.0 -->", "", "# %s (%s)" % (title, t0), "",
           "<!-- Claude Code Session %s (%s) -->" % (g.uuid(), t0), ""]
    sec = 0
    k = 0
    while k < len(samples):
        ts = lambda s: "2026-%02d-%02d %02d:%02d:%02dZ" % (1 + idx % 12, 1 + idx % 27, 8 + idx % 10, idx % 60, s % 60)
        # the prompt: filler and at most one sample that may stand in a prompt
        prompt = [g.pick(FILLER_P)]
        if samples[k]["where"] == "any" and g.r.random() < 0.5:
            prompt.append(samples[k]["text"])
            k += 1
        out += ["_**User (%s)**_" % ts(sec), "", "\n\n".join(prompt), "", "---", ""]
        sec += 3
        resp = [g.pick(FILLER_R)]
        for _ in range(g.n(1, 3)):
            if k >= len(samples):
                break
            resp.append(samples[k]["text"])
            k += 1
            resp.append(g.pick(FILLER_R + FILLER_CODE + FILLER_TOOL))
        out += ["_**Agent (claude-sonnet-4 %s)**_" % ts(sec), "", "\n\n".join(resp), "", "---", ""]
        sec += 7
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=24)
    a = ap.parse_args()
    g = Gen(a.seed)
    os.makedirs(a.outdir, exist_ok=True)
    samples = []
    for kind in KINDS:
        n = a.per_kind * 3 // 2 if kind == "gcp-service-account" else a.per_kind
        for i in range(n):
            form, lang, snippet, secret = MAKERS[kind](g, i)
            assert secret in snippet, (kind, form)
            ctx, text, where = wrap(g, kind, i, form, lang, snippet)
            assert secret in text
            samples.append({"kind": kind, "secret": secret, "text": text, "context": ctx, "where": where})
    with open(os.path.join(a.outdir, "samples.jsonl"), "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps({k: s[k] for k in ("kind", "secret", "text", "context")}) + "\n")
    order = list(range(len(samples)))
    g.r.shuffle(order)
    per = 40
    labels = []
    for t in range(0, len(order), per):
        chunk = [samples[j] for j in order[t:t + per]]
        fn = "transcript-%02d.md" % (t // per + 1)
        body = transcript(g, t // per + 1, chunk)
        assert len(body.encode()) < 1000000
        with open(os.path.join(a.outdir, fn), "w", encoding="utf-8") as f:
            f.write(body)
        labels += ["%s\t%s\t%s" % (fn, s["kind"], json.dumps(s["secret"])) for s in chunk]
    with open(os.path.join(a.outdir, "labels.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    print("%d samples of %d kinds in %d transcripts -> %s" % (len(samples), len(KINDS), (len(order) + per - 1) // per,
                                                            a.outdir))


if __name__ == "__main__":
    main()
