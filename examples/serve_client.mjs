// A JavaScript client of `rfm serve`, as an Electron or Node app would call it (Node 18+: global fetch).
//   node examples/serve_client.mjs http://127.0.0.1:8765 "$(cat ~/.local/share/rfm/serve-token)"
const [base, token] = process.argv.slice(2);

async function call(method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`${response.status} ${data.error.code}: ${data.error.message}`);
  return data;
}

const prompt = "Write a reply to a friend who asked how the trip went.";
const drafts = ["It was great! Lots of hiking and good food.", "Fine.",
  "- weather: sunny\n- food: excellent\n- would go again: yes", "I think it went well, perhaps?"];
const { pair: [i, j] } = await call("POST", "/v1/next-question", { user: "dora", prompt, candidates: drafts });
await call("POST", "/v1/feedback", { user: "dora", prompt, chosen: drafts[i], rejected: drafts[j] });
const ranked = await call("POST", "/v1/rerank", { user: "dora", prompt, candidates: drafts, top_k: 1 });
console.log("best for dora:", ranked.candidates[0].text);
