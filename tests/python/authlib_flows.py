"""Real OAuth client libraries against a running scopegate.

Driven by `cargo test` (tests/integration/clients_python.rs), which starts
the gateway, registers the clients and passes everything in the
environment:

  SCOPEGATE_URL          the gateway, e.g. http://127.0.0.1:8080
  ROUTE                  a path behind the gateway that needs orders:read
  CC_CLIENT_ID           a confidential client allowed orders:read
  CC_CLIENT_SECRET       its secret
  CC_SERVICE_ACCOUNT     its service account's username (client:<name>)
  PUBLIC_CLIENT_ID       a public client allowed orders:read
  REDIRECT_URI           the public client's registered redirect URI
  USERNAME, PASSWORD     an account holding orders:read

Flows:
 1. Authlib OAuth2Session, client_secret_basic, grant_type=client_credentials:
    an access token and no refresh token; the token passes the gateway and
    the upstream sees the service account and the client.
 2. requests-oauthlib (BackendApplicationClient), the same grant.
 3. Authlib's authorization code flow with PKCE (S256), completed against
    the real login page (its form posted with `requests`, cookie and all);
    the token passes the gateway with the user and the public client; its
    refresh token is refreshed by the same client.

Prints one `ok: ...` line per check and exits non-zero on the first failure.
"""

import html.parser
import json
import os
import secrets
import sys
import urllib.parse

# Loopback HTTP only: the libraries insist on HTTPS unless told otherwise.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

BASE = os.environ["SCOPEGATE_URL"].rstrip("/")
TOKEN_URL = BASE + "/oauth/token"
AUTHORIZE_URL = BASE + "/oauth/authorize"
ROUTE = BASE + os.environ["ROUTE"]


def check(cond, what, detail=""):
    if not cond:
        print(f"FAILED: {what} {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def seen_headers(resp):
    """The request headers the echo upstream saw (its JSON answer)."""
    check(resp.status_code == 200, "the gateway lets the token through", resp.text)
    headers = resp.json()["headers"]
    return {k.lower(): ", ".join(v) for k, v in headers.items()}


class Form(html.parser.HTMLParser):
    """The login form: its action and every input's name and value."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def client_credentials_authlib():
    s = OAuth2Session(
        os.environ["CC_CLIENT_ID"],
        os.environ["CC_CLIENT_SECRET"],
        token_endpoint_auth_method="client_secret_basic",
        scope="orders:read",
    )
    token = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    check(token.get("token_type") == "Bearer", "authlib client_credentials: a Bearer token", json.dumps(token))
    check("refresh_token" not in token, "authlib client_credentials: no refresh token")
    check(token.get("scope") == "orders:read", "authlib client_credentials: the requested scope")
    seen = seen_headers(s.get(ROUTE))
    check(
        seen.get("x-authenticated-user") == os.environ["CC_SERVICE_ACCOUNT"],
        "client_credentials: upstream sees the service account",
        str(seen),
    )
    check(
        seen.get("x-authenticated-client") == os.environ["CC_CLIENT_ID"],
        "client_credentials: upstream sees the client",
        str(seen),
    )
    # A wrong secret is 401 invalid_client with a Basic challenge.
    r = requests.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        auth=(os.environ["CC_CLIENT_ID"], "sgs_wrong"),
        timeout=10,
    )
    check(r.status_code == 401 and r.json()["error"] == "invalid_client", "a wrong secret is invalid_client")
    check(r.headers.get("WWW-Authenticate", "").startswith("Basic"), "with a Basic challenge")


def client_credentials_requests_oauthlib():
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session as RequestsOAuth2Session

    cid = os.environ["CC_CLIENT_ID"]
    s = RequestsOAuth2Session(client=BackendApplicationClient(client_id=cid))
    token = s.fetch_token(token_url=TOKEN_URL, client_id=cid, client_secret=os.environ["CC_CLIENT_SECRET"])
    check("access_token" in token and "refresh_token" not in token, "requests-oauthlib client_credentials")
    seen = seen_headers(s.get(ROUTE))
    check(seen.get("x-authenticated-client") == cid, "requests-oauthlib: upstream sees the client")


def authorization_code_with_pkce():
    cid = os.environ["PUBLIC_CLIENT_ID"]
    s = OAuth2Session(
        cid,
        redirect_uri=os.environ["REDIRECT_URI"],
        scope="orders:read",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = secrets.token_urlsafe(48)
    uri, state = s.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier)
    check("code_challenge=" in uri and "code_challenge_method=S256" in uri, "authlib sends an S256 challenge")

    browser = requests.Session()
    page = browser.get(uri, timeout=10)
    check(page.status_code == 200 and "text/html" in page.headers["Content-Type"], "the login page is served")
    check(page.headers.get("X-Frame-Options") == "DENY", "the login page refuses framing")
    form = Form()
    form.feed(page.text)
    check(form.action == "/oauth/authorize" and "csrf" in form.fields, "the page has the form and its CSRF token")
    fields = dict(form.fields)
    fields["username"] = os.environ["USERNAME"]
    fields["password"] = os.environ["PASSWORD"]
    done = browser.post(BASE + form.action, data=fields, allow_redirects=False, timeout=10)
    check(done.status_code == 302, "a correct login redirects", f"{done.status_code} {done.text[:200]}")
    location = done.headers["Location"]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    check(location.startswith(os.environ["REDIRECT_URI"] + "?"), "to the registered redirect URI")
    check(query.get("state") == state, "with the state")
    check(query.get("iss", "").startswith("http"), "and the issuer (RFC 9207)")

    token = s.fetch_token(TOKEN_URL, authorization_response=location, code_verifier=verifier)
    check("access_token" in token and "refresh_token" in token, "authlib exchanges the code", json.dumps(list(token)))
    seen = seen_headers(s.get(ROUTE))
    check(seen.get("x-authenticated-user") == os.environ["USERNAME"], "code flow: upstream sees the user", str(seen))
    check(seen.get("x-authenticated-client") == cid, "code flow: upstream sees the client", str(seen))

    # The code is single-use.
    again = requests.post(
        TOKEN_URL,
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": os.environ["REDIRECT_URI"],
            "code_verifier": verifier,
            "client_id": cid,
        },
        timeout=10,
    )
    check(again.status_code == 400 and again.json()["error"] == "invalid_grant", "a replayed code is invalid_grant")
    # ... and replaying it revoked what it issued.
    r = requests.get(ROUTE, headers={"Authorization": "Bearer " + token["access_token"]}, timeout=10)
    check(r.status_code == 401, "the replay revoked the tokens the code issued")


def main():
    client_credentials_authlib()
    client_credentials_requests_oauthlib()
    authorization_code_with_pkce()
    print("all flows passed")


if __name__ == "__main__":
    main()
