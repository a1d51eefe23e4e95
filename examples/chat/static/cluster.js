// The cluster page: polls this node's /api/cluster (examples/chat/README.md)
// once a second and draws it. Every value goes into the page through textContent.

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function cell(content, className) {
  const td = el("td", className);
  if (content instanceof Node) td.append(content);
  else if (content !== undefined && content !== null) td.textContent = String(content);
  return td;
}

function pill(text, className, status) {
  const span = el("span", `pill ${className || ""}`.trim(), text);
  if (status) span.dataset.status = status;
  return span;
}

function short(node) {
  return typeof node === "string" ? node.replace(/^shoal:\/\//, "") : String(node ?? "");
}

function count(value) {
  return typeof value === "number" ? value : "–";
}

function entitiesOf(data, type, node) {
  return data.sharding?.[type]?.nodes?.[node]?.entities;
}

function render(data) {
  $("self").textContent = short(data.node);
  $("leader").textContent = data.leader ? short(data.leader) : "none";
  const unreachable = Array.isArray(data.unreachable) ? data.unreachable.map(short) : [];
  $("unreachable").textContent = unreachable.length ? unreachable.join(", ") : "none";

  const rows = [];
  for (const member of Array.isArray(data.members) ? data.members : []) {
    const tr = el("tr");
    tr.dataset.node = member.node;
    tr.dataset.status = member.status;
    tr.dataset.reachable = String(member.reachable !== false);
    const tags = el("span");
    if (member.node === data.leader) tags.append(pill("leader", "leader"));
    if (member.node === data.node) tags.append(" ", pill("this node", "self"));
    if (member.reachable === false) tags.append(" ", pill("unreachable", "unreachable"));
    let http = null;
    if (typeof member.http === "string" && /^https?:\/\//.test(member.http)) {
      http = el("a", "", member.http);
      http.href = member.http;
    }
    tr.append(
      cell(short(member.node)),
      cell(pill(member.status, "", member.status)),
      cell(tags),
      cell(http ?? "–"),
      cell(count(data.connections?.[member.node]), "num"),
      cell(count(entitiesOf(data, "chat-room", member.node)), "num"),
      cell(count(entitiesOf(data, "chat-user", member.node)), "num"),
    );
    rows.push(tr);
  }
  $("members").tBodies[0].replaceChildren(...rows);

  const shardRows = [];
  for (const [type, info] of Object.entries(data.sharding || {})) {
    const nodes = Object.entries(info?.nodes || {});
    if (nodes.length === 0) {
      const tr = el("tr");
      tr.append(cell(type), cell("coordinator not reachable", "stale"), cell(""), cell(""), cell(""));
      shardRows.push(tr);
      continue;
    }
    for (const [node, placed] of nodes.sort()) {
      const shards = Array.isArray(placed?.shards) ? placed.shards : [];
      const tr = el("tr");
      tr.dataset.type = type;
      tr.dataset.node = node;
      tr.append(
        cell(type),
        cell(short(node)),
        cell(`${shards.length} / ${count(info.shards)}`, "num"),
        cell(count(placed?.entities), "num"),
        cell(shards.join(" "), "shards"),
      );
      shardRows.push(tr);
    }
  }
  $("shards").tBodies[0].replaceChildren(...shardRows);
}

let failures = 0;

async function poll() {
  try {
    const response = await fetch("/api/cluster", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    failures = 0;
    $("status").dataset.state = "connected";
    $("status").textContent = "live";
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    failures += 1;
    $("status").dataset.state = failures > 2 ? "offline" : "reconnecting";
    $("status").textContent = `no answer (${e.message}); retrying`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
