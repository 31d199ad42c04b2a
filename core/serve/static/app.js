// The page of `fusionrec serve`: plain JS over the JSON API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let session = [];

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "muted error" : "muted";
}

function weightsBar(weights) {
  const bar = document.createElement("div");
  bar.className = "weights";
  const entries = Object.entries(weights || {});
  bar.title = entries.map(([m, w]) => `${m} ${(100 * w).toFixed(0)}%`).join(", ") || "no per-modality weights";
  for (const [modality, weight] of entries) {
    const part = document.createElement("span");
    part.className = ["text", "image"].includes(modality) ? `w-${modality}` : "w-other";
    part.style.width = `${100 * weight}%`;
    bar.appendChild(part);
  }
  return bar;
}

function card(item, withScores) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = item.item_id;
  if (item.image_url) {
    const img = document.createElement("img");
    img.src = item.image_url;
    img.alt = item.title;
    img.loading = "lazy";
    div.appendChild(img);
  } else {
    const none = document.createElement("div");
    none.className = "noimg";
    none.textContent = "no image";
    div.appendChild(none);
  }
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = item.title;
  div.appendChild(title);
  if (withScores) {
    const scores = document.createElement("div");
    scores.className = "scores";
    const ranker = item.ranker_score === null ? "" : ` · rank ${item.ranker_score.toFixed(3)}`;
    scores.textContent = `retr ${Number(item.retrieval_score).toFixed(3)}${ranker}`;
    div.appendChild(scores);
  }
  div.appendChild(weightsBar(item.weights));
  div.addEventListener("click", () => clicked(item));
  return div;
}

function fill(id, items, withScores) {
  const target = $(id);
  target.replaceChildren(...items.map((item) => card(item, withScores)));
}

async function showUser(userId) {
  status(`loading user ${userId}…`);
  try {
    const [history, recs] = await Promise.all([
      api(`/v1/users/${encodeURIComponent(userId)}/history?last=12`),
      api(`/v1/users/${encodeURIComponent(userId)}/recommendations?k=12`),
    ]);
    $("history-title").textContent = `History of user ${userId} (newest first)`;
    fill("history", history.items, false);
    $("recs-title").textContent = `Recommendations for user ${userId}`;
    fill("recs", recs.items, true);
    status(`user ${userId}: ${recs.items.length} recommendations`);
  } catch (error) {
    status(error.message, true);
  }
}

async function clicked(item) {
  session = [...session.filter((id) => id !== item.item_id), item.item_id].slice(-50);
  renderSession();
  try {
    const [similar, recs] = await Promise.all([
      api(`/v1/items/${encodeURIComponent(item.item_id)}/similar?k=10`),
      api("/v1/recommendations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ history: session, k: 12 }),
      }),
    ]);
    $("similar-title").textContent = `Similar to ${item.title}`;
    fill("similar", similar.items, true);
    $("recs-title").textContent = `Recommendations for this session (${session.length} items)`;
    fill("recs", recs.items, true);
    status(`session of ${session.length} item(s)`);
  } catch (error) {
    status(error.message, true);
  }
}

function renderSession() {
  $("session").replaceChildren(
    ...session.map((id) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = id;
      return chip;
    }),
  );
}

async function loadUsers(prefix) {
  const found = await api(`/v1/users?limit=50&q=${encodeURIComponent(prefix)}`);
  $("user-list").replaceChildren(
    ...found.users.map((u) => {
      const option = document.createElement("option");
      option.value = u;
      return option;
    }),
  );
  return found.users;
}

async function start() {
  try {
    const ready = await api("/readyz");
    $("model").textContent = `${ready.path}`;
    const users = await loadUsers("");
    if (users.length) {
      $("user-search").value = users[0];
      await showUser(users[0]);
    }
  } catch (error) {
    status(error.message, true);
  }
}

$("user-search").addEventListener("input", (event) => loadUsers(event.target.value).catch(() => {}));
$("user-search").addEventListener("keydown", (event) => {
  if (event.key === "Enter") showUser(event.target.value.trim());
});
$("show-user").addEventListener("click", () => showUser($("user-search").value.trim()));
$("clear-session").addEventListener("click", () => {
  session = [];
  renderSession();
  status("session cleared");
});
start();
