"""A desktop app's use of the runtime: rerank drafts for a user, learn from their pick, ask a question.

    python examples/desktop_app.py rfm-demo/artifacts/rfm
"""

import os
import sys
import tempfile

from rfm.runtime import RewardModel

from rfm.errors import RfmError

artifact = sys.argv[1] if len(sys.argv) > 1 else "rfm-demo/artifacts/rfm"
# An app keeps its users' weights in the user store ($RFM_HOME, else the platform's data dir); this
# example writes into a throwaway folder unless RFM_HOME says otherwise, so trying it touches nothing.
store = os.environ.get("RFM_HOME") or tempfile.mkdtemp(prefix="rfm-example-store-")
try:
    model = RewardModel.load(artifact, store=store)  # verifies hashes; int8 on CPU, fp16 on a GPU
except RfmError as exc:
    sys.exit(f"rfm: error: {exc} (make an artifact with `make demo` first, or pass one's folder)")
print(f"user store: {store}")

prompt = "Summarise: my landlord wants to raise the rent by 20% with two weeks' notice. Is that allowed?"
drafts = [
    "Landlord wants a 20% rent rise on two weeks' notice; asking whether that is legal.",
    "Rent going up 20%, short notice, what do I do?",
    "Tenant asks about a sudden 20% rent increase with only two weeks of notice and their rights.",
    "landlord bad",
]

# 1. Best-of-n for this user (the population prior until they have given feedback).
for ranked in model.rerank("alice", prompt, drafts, top_k=3):
    print(f"{ranked.score:+.3f}  {ranked.text}")

# 2. Which two drafts should the app show her side by side? The most informative pair.
i, j = model.next_question("alice", prompt, drafts)
print("ask alice to choose between", i, "and", j)

# 3. She picks one: her weights are refitted on the device and stored in the user store.
model.feedback("alice", prompt, chosen=drafts[i], rejected=drafts[j])
print("alice's best draft now:", model.rerank("alice", prompt, drafts, top_k=1)[0].text)
