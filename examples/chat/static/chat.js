// The chat page: plain DOM, no framework, no build step.
//
// Protocol: examples/chat/README.md (version 1). What this page keeps:
// - per room: the messages it has (by room sequence number), its own sends
//   not yet acknowledged (by client id), the highest sequence number it has
//   received (sent as `last_seq` when it joins again after a reconnect);
// - in sessionStorage: the token, the user, the rooms and channels joined and
//   the room on screen, so a reload logs in again and restores the view.
// Every piece of user text goes into the page through textContent.

const VERSION = 1;
const PAGE = 50; // messages per history page
const STORE = "shoal-chat";
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 8000;
const TYPING_SEND_MS = 1500; // above the server's 1 s throttle, below the 3 s expiry

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  user: null,
  node: null,
  ws: null,
  welcomed: false,
  attempt: 0, // reconnect attempts since the last welcome
  failedBeforeWelcome: 0,
  reconnectTimer: null,
  livenessTimer: null,
  lastFrameAt: 0,
  heartbeatMs: 15000,
  limits: {},
  rooms: new Map(), // room id -> Room
  current: null, // room id on screen
  lastTypingSent: 0,
  typingTimer: null,
  notices: null,
};

class Room {
  constructor(id, channels) {
    this.id = id;
    this.channels = channels.length ? [...new Set(channels)] : ["default"];
    this.channel = this.channels[0]; // on screen
    this.messages = new Map(); // seq -> message
    this.pending = new Map(); // client id -> {id, channel, text, state, error}
    this.lastSeq = null; // highest seq received (resume point)
    this.oldest = null; // lowest seq loaded from history
    this.more = true; // older messages exist
    this.loading = false;
    this.historyBefore = null; // before_seq of the history request in flight
    this.online = new Set();
    this.typing = new Map(); // user -> {channel, until}
    this.unread = 0;
    this.joined = false;
    this.joinRetries = 0;
  }
}

// -- storage --------------------------------------------------------------------------------

function save() {
  const rooms = {};
  for (const room of state.rooms.values()) {
    // Unacknowledged sends survive a reload and go again with the same id.
    const pending = [...room.pending.values()]
      .filter((item) => item.state === "pending")
      .map(({ id, channel, text }) => ({ id, channel, text }));
    rooms[room.id] = { channels: room.channels, pending };
  }
  const channel = state.current ? state.rooms.get(state.current)?.channel : null;
  sessionStorage.setItem(
    STORE,
    JSON.stringify({ token: state.token, user: state.user, rooms, current: state.current, channel }),
  );
}

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
    if (!saved || typeof saved.user !== "string") return null;
    return saved;
  } catch {
    return null;
  }
}

// -- login ----------------------------------------------------------------------------------

async function login(name) {
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || !body || typeof body.token !== "string") {
    const message = body?.error?.message || `login failed (HTTP ${response.status})`;
    throw new Error(message);
  }
  state.token = body.token;
  state.user = body.user;
}

function showChat() {
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("logout").hidden = false;
  $("me").textContent = state.user;
}

function showLogin(error) {
  $("login-view").hidden = false;
  $("chat-view").hidden = true;
  $("logout").hidden = true;
  $("login-error").textContent = error || "";
  $("me").textContent = "";
  $("node").textContent = "";
}

// -- connection -----------------------------------------------------------------------------

function setStatus(kind, text) {
  const el = $("status");
  el.dataset.state = kind;
  el.textContent = text;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.welcomed = false;
  setStatus(state.attempt ? "reconnecting" : "connecting", state.attempt ? "reconnecting…" : "connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    scheduleReconnect(String(e));
    return;
  }
  state.ws = ws;
  ws.onmessage = (event) => {
    if (ws !== state.ws) return;
    state.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame && typeof frame === "object") handle(frame);
  };
  ws.onclose = (event) => {
    if (ws !== state.ws) return;
    state.ws = null;
    clearInterval(state.livenessTimer);
    for (const room of state.rooms.values()) {
      room.joined = false;
      room.loading = false;
    }
    if (!state.welcomed) state.failedBeforeWelcome += 1;
    if (!state.token) return; // logged out
    const why = event.code === 4000 ? "the server asked to resume" : `closed (${event.code})`;
    scheduleReconnect(why);
  };
}

function scheduleReconnect(why) {
  if (state.reconnectTimer) return;
  state.attempt += 1;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (state.attempt - 1));
  const delay = Math.round(base / 2 + Math.random() * (base / 2));
  setStatus("reconnecting", `reconnecting in ${(delay / 1000).toFixed(1)} s (${why})`);
  state.reconnectTimer = setTimeout(async () => {
    state.reconnectTimer = null;
    if (!state.token) return;
    if (state.failedBeforeWelcome >= 2) {
      // The token may have expired (the server refuses the upgrade with 401,
      // which a browser cannot see): the demo issues a new one for the name.
      try {
        await login(state.user);
        state.failedBeforeWelcome = 0;
        save();
      } catch (e) {
        scheduleReconnect(`login: ${e.message}`);
        return;
      }
    }
    connect();
  }, delay);
}

function send(frame) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.welcomed) return false;
  state.ws.send(JSON.stringify({ v: VERSION, ...frame }));
  return true;
}

function watchLiveness() {
  clearInterval(state.livenessTimer);
  state.livenessTimer = setInterval(() => {
    const ws = state.ws;
    if (!ws) return;
    const quiet = Date.now() - state.lastFrameAt;
    if (quiet > 2 * state.heartbeatMs + 5000) {
      ws.close(4001, "no answer");
      ws.onclose({ code: 4001 });
    } else if (quiet > state.heartbeatMs) {
      send({ type: "ping" });
    }
  }, Math.max(1000, state.heartbeatMs / 3));
}

// -- frames from the server -----------------------------------------------------------------

function handle(frame) {
  switch (frame.type) {
    case "welcome":
      return onWelcome(frame);
    case "joined":
      return onJoined(frame);
    case "left":
      return onLeft(frame);
    case "msg":
      return onMessage(frame.room, frame, true);
    case "ack":
      return onAck(frame);
    case "history":
      return onHistory(frame);
    case "presence":
      return onPresence(frame);
    case "typing":
      return onTyping(frame);
    case "reset":
      return onReset(frame);
    case "error":
      return onError(frame);
    default:
      return undefined; // pong, and types of a later version
  }
}

function onWelcome(frame) {
  state.welcomed = true;
  state.attempt = 0;
  state.failedBeforeWelcome = 0;
  state.node = frame.node;
  state.user = frame.user || state.user;
  state.limits = frame.limits || {};
  if (typeof frame.heartbeat_s === "number" && frame.heartbeat_s > 0) {
    state.heartbeatMs = frame.heartbeat_s * 1000;
  }
  $("node").textContent = frame.node ? `on ${frame.node}` : "";
  $("node").dataset.node = frame.node || "";
  $("me").textContent = state.user;
  setStatus("connected", "connected");
  watchLiveness();
  for (const room of state.rooms.values()) joinRoom(room);
  render();
}

function joinRoom(room) {
  const frame = { type: "join", room: room.id, channels: room.channels };
  if (room.lastSeq !== null) frame.last_seq = room.lastSeq;
  send(frame);
}

function onJoined(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  const first = room.lastSeq === null;
  const rejoined = !room.joined;
  room.joined = true;
  room.joinRetries = 0;
  if (Array.isArray(frame.channels) && frame.channels.length) room.channels = frame.channels;
  if (!room.channels.includes(room.channel)) room.channel = room.channels[0];
  room.online = new Set(Array.isArray(frame.online) ? frame.online : []);
  if (first) {
    // Everything up to the head comes from history, everything after it live.
    room.lastSeq = typeof frame.head === "number" ? frame.head : 0;
  }
  if (first || (room.oldest === null && room.more)) requestHistory(room, null);
  if (rejoined) {
    // Sends cut off by a reconnect (or a reload) go again with the same id: stored once.
    for (const item of room.pending.values()) {
      if (item.state === "pending") transmit(room, item);
    }
  }
  save();
  render();
}

function onLeft(frame) {
  state.rooms.delete(frame.room);
  if (state.current === frame.room) state.current = state.rooms.keys().next().value ?? null;
  save();
  render();
}

function toMessage(raw, roomId) {
  if (!raw || typeof raw.seq !== "number") return null;
  return {
    room: roomId,
    seq: raw.seq,
    id: typeof raw.id === "string" ? raw.id : "",
    user: String(raw.user ?? ""),
    channel: String(raw.channel ?? "default"),
    text: String(raw.text ?? ""),
    ts: typeof raw.ts === "number" ? raw.ts : null,
  };
}

function onMessage(roomId, raw, live) {
  const room = state.rooms.get(roomId);
  const message = toMessage(raw, roomId);
  if (!room || !message) return;
  if (live && (room.lastSeq === null || message.seq > room.lastSeq)) room.lastSeq = message.seq;
  const isNew = !room.messages.has(message.seq);
  room.messages.set(message.seq, message);
  if (message.user === state.user && room.pending.has(message.id)) room.pending.delete(message.id);
  if (isNew && live) {
    room.typing.delete(message.user);
    if (roomId !== state.current || message.channel !== room.channel) room.unread += 1;
  }
  render();
}

function onAck(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  const item = room.pending.get(frame.id);
  if (item && typeof frame.seq === "number") {
    room.pending.delete(frame.id);
    if (!room.messages.has(frame.seq)) {
      room.messages.set(frame.seq, {
        room: room.id,
        seq: frame.seq,
        id: item.id,
        user: state.user,
        channel: item.channel,
        text: item.text,
        ts: typeof frame.ts === "number" ? frame.ts : null,
      });
    }
  }
  render();
}

function requestHistory(room, beforeSeq) {
  if (room.loading) return;
  if (send({ type: "history", room: room.id, before_seq: beforeSeq, limit: PAGE })) {
    room.loading = true;
    room.historyBefore = beforeSeq;
  }
}

function onHistory(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  room.loading = false;
  const list = $("messages");
  const before = list.scrollHeight - list.scrollTop;
  const older = frame.before_seq !== null && frame.before_seq !== undefined;
  let lowest = null;
  for (const raw of Array.isArray(frame.messages) ? frame.messages : []) {
    const message = toMessage(raw, room.id);
    if (!message) continue;
    if (!room.messages.has(message.seq)) room.messages.set(message.seq, message);
    if (message.user === state.user) room.pending.delete(message.id);
    if (lowest === null || message.seq < lowest) lowest = message.seq;
  }
  if (lowest !== null && (room.oldest === null || lowest < room.oldest)) room.oldest = lowest;
  if (older || room.oldest === null || lowest === null || lowest <= room.oldest) room.more = !!frame.more;
  render();
  if (older && room.id === state.current) {
    // Keep the messages the reader was looking at where they were.
    list.scrollTop = list.scrollHeight - before;
  }
  fillViewport(room);
}

function fillViewport(room) {
  // A sparse channel may show nothing new from a page of the room: read on
  // until the list can scroll or the room's beginning is reached.
  const list = $("messages");
  if (room.id === state.current && room.more && list.scrollHeight <= list.clientHeight + 8) {
    requestHistory(room, room.oldest);
  }
}

function onPresence(frame) {
  const room = state.rooms.get(frame.room);
  if (!room || typeof frame.user !== "string") return;
  if (frame.status === "online") room.online.add(frame.user);
  else {
    room.online.delete(frame.user);
    room.typing.delete(frame.user);
  }
  render();
}

function onTyping(frame) {
  const room = state.rooms.get(frame.room);
  if (!room || typeof frame.user !== "string" || frame.user === state.user) return;
  const ms = typeof frame.expires_ms === "number" ? frame.expires_ms : 3000;
  room.typing.set(frame.user, { channel: String(frame.channel ?? "default"), until: Date.now() + ms });
  setTimeout(render, ms + 50);
  render();
}

function onReset(frame) {
  const room = state.rooms.get(frame.room);
  if (!room) return;
  room.messages.clear();
  room.oldest = null;
  room.more = true;
  room.loading = false;
  room.lastSeq = typeof frame.head === "number" ? frame.head : 0;
  requestHistory(room, null);
  notice(`${room.id}: reloaded (${frame.reason || "reset"})`);
  render();
}

function onError(frame) {
  const room = frame.room ? state.rooms.get(frame.room) : null;
  const item = room && frame.ref ? room.pending.get(frame.ref) : null;
  if (item) {
    if (frame.code === "rate_limited" || frame.code === "unavailable") {
      // Not stored (or not yet): the same id again later is stored at most once.
      item.retries = (item.retries || 0) + 1;
      const backoff = Math.min(BACKOFF_MAX_MS, 500 * 2 ** Math.min(item.retries - 1, 4));
      const wait = typeof frame.retry_after_ms === "number" ? frame.retry_after_ms : backoff;
      setTimeout(() => {
        if (room.pending.get(item.id) === item && item.state === "pending") transmit(room, item);
      }, wait);
    } else {
      item.state = "failed";
      item.error = frame.message || frame.code;
    }
    render();
    return;
  }
  if (room && !room.joined && (frame.code === "too_many_rooms" || frame.code === "bad_frame")) {
    // The join was refused for good: the room leaves the list.
    notice(`${room.id}: ${frame.message || frame.code}`);
    onLeft({ room: room.id });
    return;
  }
  if (room && !room.joined && frame.code === "unavailable") {
    // The join itself: the room is moving (off a dead node, say). Join again soon;
    // the pending sends go once it answers.
    room.joinRetries += 1;
    const wait = Math.min(BACKOFF_MAX_MS, 250 * 2 ** Math.min(room.joinRetries, 5));
    setTimeout(() => {
      if (state.rooms.get(room.id) === room && !room.joined && state.welcomed) joinRoom(room);
    }, wait);
    return;
  }
  if (room && room.loading && frame.code !== "rate_limited") {
    // Most likely the answer to the history request in flight: ask again later.
    room.loading = false;
    if (frame.code === "unavailable") {
      setTimeout(() => {
        if (state.rooms.get(room.id) === room) requestHistory(room, room.historyBefore);
      }, 1000);
      return;
    }
  }
  if (frame.code === "rate_limited") return;
  if (room && frame.code === "not_joined") joinRoom(room);
  notice(`${frame.code}: ${frame.message || ""}`);
}

function notice(text) {
  $("notice").textContent = text;
  clearTimeout(state.notices);
  state.notices = setTimeout(() => {
    $("notice").textContent = "";
  }, 6000);
}

// -- actions --------------------------------------------------------------------------------

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function transmit(room, item) {
  send({ type: "send", room: room.id, channel: item.channel, id: item.id, text: item.text });
}

function sendText(text) {
  const room = state.rooms.get(state.current);
  if (!room || !text) return;
  const item = { id: newId(), channel: room.channel, text, state: "pending", error: null };
  room.pending.set(item.id, item);
  if (room.joined) transmit(room, item); // else on the next `joined`
  render();
  scrollToEnd();
}

function addRoom(id, channels) {
  let room = state.rooms.get(id);
  if (!room) {
    room = new Room(id, channels);
    state.rooms.set(id, room);
  }
  state.current = id;
  if (state.welcomed) joinRoom(room);
  save();
  render();
  scrollToEnd();
}

function addChannel(name) {
  const room = state.rooms.get(state.current);
  if (!room) return;
  if (!room.channels.includes(name)) {
    room.channels = [...room.channels, name];
    // A rejoin replaces the channel set without a replay: the new channel's
    // recent messages come from the newest history page.
    send({ type: "join", room: room.id, channels: room.channels });
    room.loading = false;
    requestHistory(room, null);
  }
  room.channel = name;
  save();
  render();
  scrollToEnd();
}

function selectRoom(id) {
  state.current = id;
  save();
  render();
  scrollToEnd();
  const room = state.rooms.get(id);
  if (room) fillViewport(room);
}

function selectChannel(name) {
  const room = state.rooms.get(state.current);
  if (!room) return;
  room.channel = name;
  save();
  render();
  scrollToEnd();
  fillViewport(room);
}

function typing() {
  // At most one `typing` a second; keys pressed inside that second are
  // announced once it is over (if the box is not empty by then).
  const wait = state.lastTypingSent + TYPING_SEND_MS - Date.now();
  if (wait > 0) {
    if (!state.typingTimer) {
      state.typingTimer = setTimeout(() => {
        state.typingTimer = null;
        if ($("text").value) typing();
      }, wait);
    }
    return;
  }
  const room = state.rooms.get(state.current);
  if (!room || !room.joined) return;
  state.lastTypingSent = Date.now();
  send({ type: "typing", room: room.id, channel: room.channel });
}

// -- rendering ------------------------------------------------------------------------------

const elements = new Map(); // "room|seq" or "room|id" -> <li>

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(ts) {
  if (typeof ts !== "number") return "";
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function messageElement(room, message, pending) {
  const key = pending ? `${room.id}|id|${message.id}` : `${room.id}|seq|${message.seq}`;
  let li = elements.get(key);
  if (!li) {
    li = el("li", "msg");
    li.append(el("span", "user"), el("span", "text"), el("time", "ts"), el("span", "state"));
    elements.set(key, li);
  }
  const own = message.user === state.user;
  const status = pending ? message.state : own ? "acked" : "received";
  li.dataset.seq = pending ? "" : String(message.seq);
  li.dataset.id = message.id || "";
  li.dataset.user = message.user;
  li.dataset.state = status;
  li.classList.toggle("own", own);
  li.children[0].textContent = message.user;
  li.children[1].textContent = message.text;
  li.children[2].textContent = clock(message.ts);
  li.children[3].textContent =
    status === "pending" ? "sending…" : status === "failed" ? `not sent: ${message.error}` : own ? "✓" : "";
  li.children[3].title = status === "acked" ? `stored as #${message.seq}` : "";
  return li;
}

function render() {
  renderRooms();
  const room = state.rooms.get(state.current);
  $("title").textContent = room ? `# ${room.id} / ${room.channel}` : "join a room";
  $("composer").hidden = !room;
  $("leave").hidden = !room;
  renderChannels(room);
  renderPresence(room);
  renderMessages(room);
  renderTyping(room);
}

function renderRooms() {
  const items = [];
  for (const room of state.rooms.values()) {
    const li = el("li");
    const button = el("button", room.id === state.current ? "active" : "", room.id);
    button.type = "button";
    button.dataset.room = room.id;
    button.addEventListener("click", () => selectRoom(room.id));
    li.append(button);
    if (room.unread && room.id !== state.current) li.append(el("span", "badge", String(room.unread)));
    items.push(li);
  }
  $("rooms").replaceChildren(...items);
}

function renderChannels(room) {
  const items = [];
  for (const name of room ? room.channels : []) {
    const button = el("button", name === room.channel ? "active" : "", name);
    button.type = "button";
    button.dataset.channel = name;
    button.addEventListener("click", () => selectChannel(name));
    const li = el("li");
    li.append(button);
    items.push(li);
  }
  $("channels").replaceChildren(...items);
}

function renderPresence(room) {
  const users = room ? [...room.online].sort() : [];
  $("presence").replaceChildren(
    ...users.map((user) => {
      const li = el("li", user === state.user ? "self" : "", user);
      li.dataset.user = user;
      return li;
    }),
  );
}

function renderMessages(room) {
  const list = $("messages");
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const items = [];
  if (room) {
    if (room.id === state.current) room.unread = 0;
    const seqs = [...room.messages.keys()].sort((a, b) => a - b);
    for (const seq of seqs) {
      const message = room.messages.get(seq);
      if (message.channel === room.channel) items.push(messageElement(room, message, false));
    }
    for (const item of room.pending.values()) {
      if (item.channel === room.channel) {
        items.push(messageElement(room, { ...item, user: state.user, ts: null }, true));
      }
    }
  }
  $("list").replaceChildren(...items);
  $("older").hidden = !room || !room.more || room.lastSeq === null;
  $("beginning").hidden = !room || room.more || room.lastSeq === null;
  if (atEnd) scrollToEnd();
}

function renderTyping(room) {
  const now = Date.now();
  const names = [];
  if (room) {
    for (const [user, t] of room.typing) {
      if (t.until <= now) room.typing.delete(user);
      else if (t.channel === room.channel) names.push(user);
    }
  }
  names.sort();
  const text =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
  $("typing").textContent = text;
  $("typing").dataset.users = names.join(",");
}

function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

// -- wiring ---------------------------------------------------------------------------------

function start() {
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    try {
      await login(name);
    } catch (e) {
      showLogin(e.message);
      return;
    }
    if (state.rooms.size === 0) addRoom("lobby", ["default"]);
    save();
    showChat();
    connect();
  });
  $("logout").addEventListener("click", () => {
    const ws = state.ws;
    state.token = null;
    state.ws = null;
    clearTimeout(state.reconnectTimer);
    clearInterval(state.livenessTimer);
    if (ws) ws.close(1000, "logout");
    state.rooms.clear();
    state.current = null;
    elements.clear();
    sessionStorage.removeItem(STORE);
    setStatus("offline", "offline");
    showLogin();
  });
  $("join").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("join-room").value.trim();
    if (!id) return;
    if (state.rooms.size >= (state.limits.max_rooms || 50) && !state.rooms.has(id)) {
      notice("too many rooms");
      return;
    }
    $("join-room").value = "";
    addRoom(id, ["default"]);
  });
  $("add-channel").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("channel-name").value.trim();
    if (!name) return;
    $("channel-name").value = "";
    addChannel(name);
  });
  $("leave").addEventListener("click", () => {
    const room = state.rooms.get(state.current);
    if (!room) return;
    if (!send({ type: "leave", room: room.id })) onLeft({ room: room.id });
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value;
    if (!text.trim()) return;
    $("text").value = "";
    sendText(text);
  });
  $("text").addEventListener("input", typing);
  $("messages").addEventListener("scroll", () => {
    const room = state.rooms.get(state.current);
    if (room && room.more && $("messages").scrollTop < 60) requestHistory(room, room.oldest);
  });
  $("older").addEventListener("click", () => {
    const room = state.rooms.get(state.current);
    if (room && room.more) requestHistory(room, room.oldest);
  });
  setInterval(() => renderTyping(state.rooms.get(state.current)), 500);

  const saved = load();
  if (saved && typeof saved.token === "string") {
    state.token = saved.token;
    state.user = saved.user;
    for (const [id, savedRoom] of Object.entries(saved.rooms || {})) {
      const channels = Array.isArray(savedRoom?.channels) ? savedRoom.channels : ["default"];
      const room = new Room(id, channels);
      for (const item of Array.isArray(savedRoom?.pending) ? savedRoom.pending : []) {
        if (typeof item?.id === "string" && typeof item.text === "string") {
          room.pending.set(item.id, { ...item, channel: String(item.channel), state: "pending", error: null });
        }
      }
      state.rooms.set(id, room);
    }
    state.current = state.rooms.has(saved.current) ? saved.current : (state.rooms.keys().next().value ?? null);
    const room = state.rooms.get(state.current);
    if (room && room.channels.includes(saved.channel)) room.channel = saved.channel;
    showChat();
    render();
    connect();
  } else {
    showLogin();
  }
}

// Exposed for the browser tests and curious readers: read-only views of the state.
window.shoalChat = {
  get user() {
    return state.user;
  },
  get node() {
    return state.node;
  },
  get connected() {
    return !!state.ws && state.welcomed;
  },
  room(id) {
    const room = state.rooms.get(id);
    if (!room) return null;
    return {
      lastSeq: room.lastSeq,
      seqs: [...room.messages.keys()].sort((a, b) => a - b),
      pending: room.pending.size,
      more: room.more,
      joined: room.joined,
    };
  },
};

start();
