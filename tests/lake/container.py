"""Creates a blob container in Azurite with the account key (Shared Key authorization), as a
storage account's owner does in the portal before pointing cloudmigrate at it.

    python3 container.py ENDPOINT ACCOUNT KEY CONTAINER
ENDPOINT is Azurite's path-style account URL, http://127.0.0.1:PORT/ACCOUNT."""

import base64
import email.utils
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request

endpoint, account, key, container = sys.argv[1:5]
url = f"{endpoint.rstrip('/')}/{container}?restype=container"
date = email.utils.formatdate(usegmt=True)
version = "2021-08-06"
path = urllib.parse.urlparse(url).path
# Verb, then eleven standard headers (all empty here), the x-ms- headers, the resource.
to_sign = "\n".join(
    ["PUT"] + [""] * 11 + [f"x-ms-date:{date}", f"x-ms-version:{version}", f"/{account}{path}\nrestype:container"]
)
signature = base64.b64encode(
    hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
).decode()
request = urllib.request.Request(
    url,
    method="PUT",
    headers={
        "x-ms-date": date,
        "x-ms-version": version,
        "Authorization": f"SharedKey {account}:{signature}",
        "Content-Length": "0",
    },
)
try:
    urllib.request.urlopen(request).read()
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: the container exists already
        sys.exit(f"creating container {container}: HTTP {e.code} {e.read()[:300]!r}")
