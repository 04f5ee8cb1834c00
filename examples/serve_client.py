"""A Python client of `rfm serve` with the standard library only (any language does the same over HTTP).

    rfm serve rfm-demo/artifacts/rfm &            # prints where its token is
    python examples/serve_client.py http://127.0.0.1:8765 "$(cat ~/.local/share/rfm/serve-token)"
"""

import json
import sys
import urllib.request

base, token = sys.argv[1], sys.argv[2]


def call(method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


prompt = "Summarise: my landlord wants to raise the rent by 20% with two weeks' notice."
drafts = ["Landlord wants a 20% rise on two weeks' notice; is it legal?", "Rent up 20%, short notice, help?",
          "Tenant asks about a sudden 20% rent increase with only two weeks of notice.", "landlord bad"]
print("model:", call("GET", "/v1/model")["fingerprint"][:12])
i, j = call("POST", "/v1/next-question", {"user": "carol", "prompt": prompt, "candidates": drafts})["pair"]
call("POST", "/v1/feedback", {"user": "carol", "prompt": prompt, "chosen": drafts[i], "rejected": drafts[j]})
best = call("POST", "/v1/rerank", {"user": "carol", "prompt": prompt, "candidates": drafts, "top_k": 1})
print("best for carol:", best["candidates"][0]["text"])
