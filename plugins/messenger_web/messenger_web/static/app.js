// The Messenger web client: views and state over the public API (api.js) and live delivery (live.js).
import {Api, ApiError, SESSION_ENDED, describe, serviceAway} from "./api.js";
import {Live} from "./live.js";
import {el, formatTime, byId} from "./dom.js";

const PAGE = 50;              // messages shown at a time (at the open, and per scroll up)
const CHUNK = 1000;           // messages per page read: the API's largest limit
const MAX_ANCHORS = 100;      // iterators remembered per chat (any subset of them works: gaps are walked)
const SEARCH_POLL_MS = 250;
const SEARCH_DEADLINE_MS = 20000;

const state = {
  user: localStorage.getItem("messenger.user"),
  chats: new Map(),            // chat_id -> summary (GET /v1/chats, or the local list before it existed)
  listFromServer: true,        // false when the server has no GET /v1/chats: chats kept in this browser
  openId: null,
  openToken: 0,                // bumps on every open: late answers for another chat are dropped
  members: new Map(),          // user_id -> user_name of the open chat
  anchors: [null],             // known iterators of the open chat, oldest first (null: its start)
  loadedFrom: 0,               // index in anchors: every message after it is read (shown, or in older)
  older: [],                   // messages read but not shown yet, older than the first one shown
  known: new Set(),            // ids of the messages read (shown or in older)
  sinceAnchor: 0,              // messages after the last anchor: past CHUNK, the tail becomes one
  shown: new Map(),            // message_id -> element on screen
  tail: null,                  // iterator after the newest message of the open chat
  lost: null,                  // the chat reopened after a bad-cursor, until it makes progress
  loadingOlder: false,
  pendingJoin: null,           // {chatId, invite} from an invite link
  dbDown: false,
};

const banner = byId("banner");
let bannerTimer = null;

function say(text, {sticky = false, kind = "error"} = {}) {
  clearTimeout(bannerTimer);
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.classList.add("shown");
  if (!sticky) bannerTimer = setTimeout(clearBanner, 8000);
}

function clearBanner() {
  clearTimeout(bannerTimer);
  banner.textContent = "";
  banner.classList.remove("shown");
}

const api = new Api(onApiError);
const live = new Live(api, {
  messages: onLiveMessages,
  lost: (chatId) => chatLost(chatId),
  edited: onLiveEdited,
  deleted: onLiveDeleted,
  joined: () => scheduleChats(),
  sessionEnded: (code) => endSession(code),
  resumed: () => { scheduleChats(); },
  tick: () => { if (!live.ready) scheduleChats(5000); },
});

// ---- errors ---------------------------------------------------------------------------------

function onApiError(error) {
  if (error.status === 401 && SESSION_ENDED.has(error.code)) {
    endSession(error.code);
    return;
  }
  if (error.code === "database-unavailable" || error.code === "network-error" || serviceAway(error)) {
    say(describe(error), {sticky: true});
    watchRecovery();
    return;
  }
  if (error.code === "request-limit-exceeded") {
    say(describe(error));
    const wait = (error.retryAfter && error.retryAfter > 0 ? error.retryAfter : 1) * 1000;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(clearBanner, wait + 500);
    return;
  }
  say(describe(error));
}

/** While the database, the server or the way to it is away: probe /ping_db until it answers, then catch up. */
function watchRecovery() {
  if (state.dbDown) return;
  state.dbDown = true;
  const probe = async () => {
    try {
      await api.pingDb();
    } catch {
      setTimeout(probe, 1500);
      return;
    }
    state.dbDown = false;
    clearBanner();
    if (api.session) {
      await loadChats().catch(() => {});
      if (state.openId && state.tail === null) openChat(state.openId, {recovering: true});
    }
  };
  setTimeout(probe, 1500);
}

function endSession(code) {
  if (!api.session) return; // ended already (the stream's close follows its error frame)
  api.setSession(null);
  live.stop();
  closeChat();
  showLogin(describe({code: code || "invalid-session-id"}));
}

// ---- login ----------------------------------------------------------------------------------

function showLogin(note = "") {
  byId("app-view").hidden = true;
  byId("login-view").hidden = false;
  const noteEl = byId("login-note");
  noteEl.textContent = note;
  noteEl.hidden = !note;
  if (state.user) byId("login-name").value = state.user;
  (state.user ? byId("login-password") : byId("login-name")).focus();
}

async function logIn(register) {
  const name = byId("login-name").value.trim();
  const password = byId("login-password").value;
  if (!name || !password) {
    say("Type a user name and a password.");
    return;
  }
  try {
    if (register) await api.register(name, password);
    await api.login(name, password);
  } catch {
    return; // the banner says why
  }
  state.user = name;
  localStorage.setItem("messenger.user", name);
  byId("login-password").value = "";
  clearBanner();
  await showApp();
}

async function logOut() {
  live.stop();
  forgetAllAnchors();
  try { await api.logout(); } catch { /* the session ends here either way */ }
  api.setSession(null);
  closeChat();
  showLogin();
}

// ---- the app --------------------------------------------------------------------------------

async function showApp() {
  byId("login-view").hidden = true;
  byId("app-view").hidden = false;
  byId("me").textContent = state.user || "";
  live.start();
  const focusedAtStart = document.activeElement;
  try { await loadChats(); } catch { /* banner */ }
  if (!routeFromHash() && focusUntouched(focusedAtStart)) byId("search-input").focus();
}

function localKey() { return `messenger.chats.${state.user}`; }

function localChats() {
  try { return JSON.parse(localStorage.getItem(localKey())) || []; } catch { return []; }
}

function remember(summary) {
  const list = localChats().filter((c) => c.chat_id !== summary.chat_id);
  list.unshift({chat_id: summary.chat_id, chat_name: summary.chat_name, private: Boolean(summary.private),
    my_user_ids: summary.my_user_ids});
  localStorage.setItem(localKey(), JSON.stringify(list));
}

async function loadChats() {
  let list;
  try {
    list = (await api.chats({quiet: true})).chats;
    state.listFromServer = true;
  } catch (err) {
    if (!(err instanceof ApiError) || ![404, 405].includes(err.status)) {
      if (err instanceof ApiError) onApiError(err);
      throw err;
    }
    state.listFromServer = false;
    const old = state.chats;
    list = localChats().map((c) => ({unread: 0, last_message: null, owner: false, ...old.get(c.chat_id), ...c}));
  }
  state.chats = new Map(list.map((c) => [c.chat_id, c]));
  // the open chat is no longer the account's (its last member was removed): nothing there to read or write
  if (state.listFromServer && state.openId && !state.chats.has(state.openId)) closeChat();
  renderChats();
}

let chatsTimer = null;
let chatsDue = 0;

function scheduleChats(delay = 250) {
  const due = Date.now() + delay;
  if (chatsTimer && chatsDue <= due) return;
  clearTimeout(chatsTimer);
  chatsDue = due;
  chatsTimer = setTimeout(() => {
    chatsTimer = null;
    if (api.session) loadChats().catch(() => {});
  }, delay);
}

function sortedChats() {
  const when = (c) => (c.last_message ? c.last_message.created_at : "") || "";
  if (!state.listFromServer) return [...state.chats.values()];
  return [...state.chats.values()].sort((a, b) => (when(b) > when(a) ? 1 : when(b) < when(a) ? -1 : 0));
}

function renderChats() {
  const list = byId("chat-list");
  const items = (state.listFromServer ? [...state.chats.values()] : sortedChats()).map((chat) => {
    const unread = chat.chat_id === state.openId ? 0 : chat.unread || 0; // the open one is being read
    const preview = chat.last_message ? chat.last_message.text : chat.private ? "Private chat" : "Open chat";
    const button = el("button", {type: "button", class: "chat-item", "data-chat-id": chat.chat_id,
      "aria-current": chat.chat_id === state.openId ? "true" : "false"},
    el("span", {class: "chat-name"}, chatName(chat)),
    el("span", {class: "preview"}, preview),
    unread ? el("span", {class: "unread"}, `${unread} unread`) : null);
    button.addEventListener("click", () => openChat(chat.chat_id));
    return el("li", {}, button);
  });
  list.replaceChildren(...items);
  byId("no-chats").hidden = items.length > 0;
}

function chatName(chat) {
  return chat.chat_name || `Chat ${chat.chat_id.slice(0, 6)}`;
}

async function createChat(event) {
  event.preventDefault();
  const name = byId("chat-name").value.trim();
  const isPrivate = byId("chat-private").checked;
  let chatId;
  let userId;
  try {
    chatId = (await api.createChat(name, isPrivate)).chat_id;
    userId = (await api.join(chatId, state.user)).user_id;
  } catch {
    return;
  }
  remember({chat_id: chatId, chat_name: name, private: isPrivate, my_user_ids: [userId]});
  byId("chat-name").value = "";
  byId("chat-private").checked = false;
  toggleNewChat(false);
  await loadChats().catch(() => {});
  if (!state.chats.has(chatId)) {
    state.chats.set(chatId, {chat_id: chatId, chat_name: name, private: isPrivate, my_user_ids: [userId],
      unread: 0, last_message: null});
  }
  await openChat(chatId);
}

function toggleNewChat(open) {
  const form = byId("new-chat-form");
  form.hidden = !open;
  byId("new-chat-button").setAttribute("aria-expanded", String(open));
  if (open) byId("chat-name").focus();
}

// ---- invite links ---------------------------------------------------------------------------

function routeFromHash() {
  const match = /^#\/join\/([0-9a-fA-F-]{32,36})(?:\/([^/]+))?$/.exec(location.hash);
  if (!match) return false;
  const [, chatId, invite] = match;
  if (state.chats.has(chatId)) {
    history.replaceState(null, "", "/");
    openChat(chatId);
    return true;
  }
  state.pendingJoin = {chatId, invite: invite ? decodeURIComponent(invite) : null};
  closeChat();
  byId("empty-pane").hidden = true;
  byId("join-box").hidden = false;
  document.body.classList.add("chat-open");
  byId("join-button").focus();
  return true;
}

async function joinFromLink() {
  const pending = state.pendingJoin;
  if (!pending) return;
  let userId;
  try {
    userId = (await api.join(pending.chatId, state.user, pending.invite)).user_id;
  } catch {
    return;
  }
  state.pendingJoin = null;
  history.replaceState(null, "", "/");
  byId("join-box").hidden = true;
  remember({chat_id: pending.chatId, chat_name: "", private: Boolean(pending.invite), my_user_ids: [userId]});
  await loadChats().catch(() => {});
  await openChat(pending.chatId);
}

async function showInvite() {
  const chat = state.chats.get(state.openId);
  if (!chat) return;
  let link = `${location.origin}/#/join/${chat.chat_id}`;
  const focusedAtStart = document.activeElement;
  try {
    const {invite} = await api.invite(chat.chat_id);
    link += `/${encodeURIComponent(invite)}`;
  } catch (err) {
    // a server without invites: an open chat is joined by its id alone
    if (!(err instanceof ApiError) || err.code !== "not-found" || chat.private) return;
    clearBanner();
  }
  const field = byId("invite-link");
  field.value = link;
  byId("invite-box").hidden = false;
  if (focusUntouched(focusedAtStart)) {
    field.focus();
    field.select();
  }
}

// ---- one chat -------------------------------------------------------------------------------

function closeChat() {
  state.openId = null;
  state.openToken += 1;
  resetReading([null]);
  byId("chat-box").hidden = true;
  byId("join-box").hidden = true;
  byId("empty-pane").hidden = false;
  document.body.classList.remove("chat-open");
}

function myIds(chatId) {
  const chat = state.chats.get(chatId);
  return new Set(chat && chat.my_user_ids ? chat.my_user_ids : []);
}

function authorName(userId) {
  if (state.members.has(userId)) return state.members.get(userId);
  if (myIds(state.openId).has(userId)) return state.user;
  return `Member ${userId.slice(0, 6)}`;
}

async function loadMembers(chatId, token) {
  try {
    const {users} = await api.members(chatId, {quiet: true});
    if (token !== state.openToken) return;
    state.members = new Map(users.map((u) => [u.user_id, u.user_name]));
    for (const [id, node] of state.shown) {
      const author = node.querySelector(".author");
      if (author) author.textContent = authorName(node.dataset.userId || id);
    }
  } catch { /* a server without the member list: short ids are shown */ }
}

// The API pages forward only, from an iterator.  To show a chat's newest messages without reading all of it,
// the client keeps "anchors": iterators it has seen, a chunk (CHUNK messages) apart, in this browser's storage.
// An open reads forward from the last anchor (one or two requests, whatever the chat's length); scrolling up
// shows what was read, PAGE at a time, and reads the chunk before by its anchor when that runs out.  A chat
// first opened in this browser starts at the account's read marker (the summary's read_iterator) and, for the
// messages before it, walks from the chat's start, a chunk a request, leaving anchors for the next time.

function anchorKey(chatId) { return `messenger.anchors.${state.user}.${chatId}`; }

function storedAnchors(chatId) {
  try {
    const list = JSON.parse(localStorage.getItem(anchorKey(chatId)));
    if (Array.isArray(list) && list.length && list.every((a) => typeof a === "string" && /^[\w-]{1,64}$/.test(a))) {
      return [null, ...list];
    }
  } catch { /* none, or not ours */ }
  return null;
}

function saveAnchors(chatId) {
  if (chatId !== state.openId) return;
  const list = state.anchors.slice(1).slice(-MAX_ANCHORS);
  try { localStorage.setItem(anchorKey(chatId), JSON.stringify(list)); } catch { /* storage full: fine */ }
}

function forgetAnchors(chatId) { localStorage.removeItem(anchorKey(chatId)); }

function forgetAllAnchors() {
  const prefix = `messenger.anchors.${state.user}.`;
  for (const key of Object.keys(localStorage)) if (key.startsWith(prefix)) localStorage.removeItem(key);
}

function resetReading(anchors) {
  state.anchors = anchors;
  state.loadedFrom = anchors.length - 1;
  state.older = [];
  state.known = new Set();
  state.sinceAnchor = 0;
  state.shown = new Map();
  state.tail = null;
}

/** Read forward from the last anchor to the newest message: its messages and the tail iterator. */
async function readNewest(chatId, token) {
  const messages = [];
  let from = state.anchors[state.anchors.length - 1];
  for (;;) {
    const page = await api.messages(chatId, CHUNK, from);
    if (token !== state.openToken) return null;
    messages.push(...page.messages);
    from = page.next.iterator;
    // a short page is the end (or its byte limit): what follows arrives through live.follow(tail)
    if (page.messages.length < CHUNK) break;
    state.anchors.push(from);
  }
  state.sinceAnchor = messages.length % CHUNK;
  return {messages, tail: from};
}

/** Read the messages just before the oldest one read, by the anchor before it (walking forward from there,
 * leaving anchors, when it is more than a chunk away); false when the chat's start is read already. */
async function readChunkBefore(chatId, token) {
  if (state.loadedFrom <= 0) return false;
  const first = state.loadedFrom - 1;
  let at = first;
  const upper = state.anchors[state.loadedFrom];
  const found = [];
  let from = state.anchors[first];
  for (;;) {
    const page = await api.messages(chatId, CHUNK, from);
    if (token !== state.openToken) return null;
    let reached = !page.messages.length || page.next.iterator === upper;
    for (const message of page.messages) {
      if (state.known.has(message.message_id)) { reached = true; break; }
      found.push(message);
    }
    if (reached) break;
    from = page.next.iterator;
    at += 1;
    state.anchors.splice(at, 0, from); // a position between the two: the next time, a chunk is one request
  }
  state.loadedFrom = first;
  for (const message of found) state.known.add(message.message_id);
  state.older = found.concat(state.older);
  return true;
}

/** A read of the open chat answered bad-cursor: its remembered positions are wrong.  Reopen it from its
 * start, once; a chat lost again before it made any progress is left alone (no loop of reopenings). */
function chatLost(chatId) {
  if (chatId !== state.openId) return;
  forgetAnchors(chatId);
  if (state.lost === chatId) {
    live.follow(null, null);
    say("This chat cannot be read right now: open it again later.", {sticky: true});
    return;
  }
  say(describe({code: "bad-cursor"}));
  openChat(chatId, {fresh: true});
}

function isBadCursor(err) { return err instanceof ApiError && err.code === "bad-cursor"; }

/** Whether the focus is still where it was (or nowhere) when a slow step began: the person did not move it
 * meanwhile (to the search box, say), so the step may put it where it leads. */
function focusUntouched(before) {
  const now = document.activeElement;
  return now === before || now === null || now === document.body;
}

/** Open a chat: read its newest messages, show the last PAGE of them, follow it live from there. */
async function openChat(chatId, {focus = null, fresh = false, recovering = false} = {}) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  if (!fresh && !recovering) state.lost = null;
  if (fresh) state.lost = chatId;
  state.openId = chatId;
  const token = ++state.openToken;
  const focusedAtStart = document.activeElement;
  const start = fresh ? null : storedAnchors(chatId);
  resetReading(start || (!fresh && chat.read_iterator ? [null, chat.read_iterator] : [null]));
  state.members = new Map();
  byId("join-box").hidden = true;
  byId("empty-pane").hidden = true;
  byId("invite-box").hidden = true;
  byId("chat-box").hidden = false;
  byId("chat-title").textContent = chatName(chat);
  byId("messages").replaceChildren();
  document.body.classList.add("chat-open");
  renderChats();
  loadMembers(chatId, token);
  let newest;
  try {
    newest = await readNewest(chatId, token);
    if (newest === null) return;
    for (const message of newest.messages) state.known.add(message.message_id);
    state.older = newest.messages;
    // enough to show, or (opening a search result) down to the message sought
    while (focus ? !state.known.has(focus) : state.older.length < PAGE) {
      const more = await readChunkBefore(chatId, token);
      if (more === null) return;
      if (!more) break;
    }
  } catch (err) {
    if (isBadCursor(err) && token === state.openToken) chatLost(chatId);
    return;
  }
  let cut = Math.max(state.older.length - PAGE, 0);
  if (focus && state.known.has(focus)) {
    cut = Math.min(cut, Math.max(state.older.findIndex((m) => m.message_id === focus) - 5, 0));
  }
  const shown = state.older.slice(cut);
  state.older = state.older.slice(0, cut);
  state.tail = newest.tail;
  appendMessages(shown, {scroll: false});
  saveAnchors(chatId);
  const box = byId("messages");
  if (focus && state.shown.has(focus)) {
    const node = state.shown.get(focus);
    node.classList.add("found");
    node.scrollIntoView({block: "center"});
    if (focusUntouched(focusedAtStart)) node.focus();
  } else {
    box.scrollTop = box.scrollHeight;
    if (focusUntouched(focusedAtStart)) byId("message-input").focus();
  }
  live.follow(chatId, state.tail);
  markRead();
}

/** Scrolled to the top: show the PAGE messages before the oldest one shown (read by their anchor if need be). */
async function loadOlder() {
  if (state.loadingOlder || !state.openId || state.tail === null) return;
  if (!state.older.length && state.loadedFrom <= 0) return;
  state.loadingOlder = true;
  const token = state.openToken;
  const chatId = state.openId;
  try {
    if (!state.older.length) {
      if (!await readChunkBefore(chatId, token)) return;
      saveAnchors(chatId);
    }
    const cut = Math.max(state.older.length - PAGE, 0);
    const messages = state.older.slice(cut);
    state.older = state.older.slice(0, cut);
    const box = byId("messages");
    const before = box.scrollHeight;
    box.prepend(...messages.filter((m) => !state.shown.has(m.message_id)).map(messageNode));
    box.scrollTop += box.scrollHeight - before;
  } catch (err) {
    if (isBadCursor(err) && token === state.openToken) chatLost(chatId);
  } finally {
    state.loadingOlder = false;
  }
}

function messageNode(message) {
  const mine = myIds(state.openId).has(message.user_id);
  const time = el("time", {datetime: message.created_at}, formatTime(message.created_at));
  const node = el("article", {class: mine ? "message mine" : "message", tabindex: "-1",
    "data-message-id": message.message_id, "data-user-id": message.user_id},
  el("header", {}, el("span", {class: "author"}, authorName(message.user_id)), time,
    el("span", {class: "edited"}, message.edited_at ? "(edited)" : "")),
  el("p", {class: "text"}, message.text));
  node.setAttribute("aria-label", `${authorName(message.user_id)}: ${message.text}`);
  if (mine) {
    const edit = el("button", {type: "button", class: "small"}, "Edit");
    const remove = el("button", {type: "button", class: "small"}, "Delete");
    edit.addEventListener("click", () => startEdit(node));
    remove.addEventListener("click", () => deleteMessage(node));
    node.append(el("div", {class: "actions"}, edit, remove));
  }
  state.shown.set(message.message_id, node);
  state.known.add(message.message_id);
  return node;
}

function appendMessages(messages, {scroll = true} = {}) {
  const box = byId("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const fresh = messages.filter((m) => !state.shown.has(m.message_id));
  if (!fresh.length) return;
  box.append(...fresh.map(messageNode));
  if (scroll && atBottom) box.scrollTop = box.scrollHeight;
  if (fresh.some((m) => !state.members.has(m.user_id) && !myIds(state.openId).has(m.user_id))) {
    loadMembers(state.openId, state.openToken);
  }
}

function updateMessage(message) {
  const node = state.shown.get(message.message_id);
  if (!node) return;
  node.querySelector(".text").textContent = message.text;
  node.querySelector(".edited").textContent = message.edited_at ? "(edited)" : "";
  node.setAttribute("aria-label", `${authorName(message.user_id)}: ${message.text}`);
}

function dropMessage(messageId) {
  const node = state.shown.get(messageId);
  if (node) node.remove();
  state.shown.delete(messageId);
}

let readTimer = null;

function markRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(async () => {
    const chat = state.chats.get(state.openId);
    if (!chat || !state.tail || document.visibilityState !== "visible") return;
    const chatId = chat.chat_id;
    try { await api.markRead(chatId, state.tail); } catch { return; }
    const current = state.chats.get(chatId);
    if (current && current.unread) {
      current.unread = 0;
      renderChats();
    }
  }, 300);
}

async function send(event) {
  if (event) event.preventDefault();
  const input = byId("message-input");
  const text = input.value;
  const chatId = state.openId;
  if (!text.trim() || !chatId) return;
  const [userId] = myIds(chatId);
  if (!userId) {
    say("You are not a member of this chat.");
    return;
  }
  try {
    await api.post(chatId, userId, text);
  } catch (err) {
    // a member removed (user-not-found: maybe the account has another one) or the account gone from the chat
    if (err instanceof ApiError && ["user-not-found", "chat-not-found"].includes(err.code)) {
      await loadChats().catch(() => {});
    }
    return;
  }
  input.value = "";
  live.nudge();
}

function startEdit(node) {
  if (node.querySelector("form")) return;
  const text = node.querySelector(".text");
  const input = el("textarea", {"aria-label": "Edit message", rows: "2", maxlength: "65536"});
  input.value = text.textContent;
  const form = el("form", {class: "edit"}, input,
    el("button", {type: "submit", class: "small primary"}, "Save"),
    el("button", {type: "button", class: "small"}, "Cancel"));
  const close = () => { form.remove(); text.hidden = false; };
  form.querySelector("button[type=button]").addEventListener("click", close);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    try {
      const message = await api.edit(state.openId, node.dataset.messageId, input.value);
      updateMessage(message);
    } catch {
      return;
    }
    close();
    node.focus();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    if (event.key === "Escape") { close(); node.focus(); }
  });
  text.hidden = true;
  text.after(form);
  input.focus();
}

async function deleteMessage(node) {
  try {
    await api.remove(state.openId, node.dataset.messageId);
  } catch {
    return;
  }
  dropMessage(node.dataset.messageId);
}

// ---- live -----------------------------------------------------------------------------------

function onLiveMessages(chatId, messages, iterator) {
  const chat = state.chats.get(chatId);
  if (chatId === state.openId && state.tail !== null) {
    if (iterator) state.tail = iterator;
    appendMessages(messages);
    state.lost = null; // it follows again
    state.sinceAnchor += messages.length;
    if (state.sinceAnchor >= CHUNK && iterator) {
      state.anchors.push(iterator);
      state.sinceAnchor = 0;
      saveAnchors(chatId);
    }
    if (chat) chat.last_message = messages[messages.length - 1];
    markRead();
  } else if (chat && !state.listFromServer) {
    const mine = myIds(chatId);
    chat.unread = (chat.unread || 0) + messages.filter((m) => !mine.has(m.user_id)).length;
  }
  if (state.listFromServer) scheduleChats();
  else renderChats();
}

function onLiveEdited(chatId, message) {
  if (chatId === state.openId) updateMessage(message);
  scheduleChats();
}

function onLiveDeleted(chatId, messageId) {
  if (chatId === state.openId) dropMessage(messageId);
  scheduleChats();
}

// ---- search ---------------------------------------------------------------------------------

async function search(event) {
  event.preventDefault();
  const text = byId("search-input").value.trim();
  const box = byId("search-results-box");
  const list = byId("search-results");
  if (text.length < 4) {
    say("Type at least 4 characters to search.");
    return;
  }
  box.hidden = false;
  list.replaceChildren(el("li", {class: "note"}, "Searching…"));
  let results;
  try {
    const {task_id: taskId} = await api.search(text);
    const deadline = Date.now() + SEARCH_DEADLINE_MS;
    for (;;) {
      const {status} = await api.searchStatus(taskId);
      if (status === "SUCCESS") break;
      if (status === "FAILED") throw new ApiError(400, "task-failed");
      if (Date.now() > deadline) throw new ApiError(400, "task-not-complete");
      await new Promise((resolve) => setTimeout(resolve, SEARCH_POLL_MS));
    }
    results = (await api.searchResults(taskId, 50)).messages;
  } catch (err) {
    list.replaceChildren(el("li", {class: "note"}, err instanceof ApiError ? describe(err) : "Search failed."));
    return;
  }
  if (!results.length) {
    list.replaceChildren(el("li", {class: "note"}, "No messages found."));
    return;
  }
  list.replaceChildren(...results.map((m) => {
    const chat = state.chats.get(m.chat_id);
    const button = el("button", {type: "button", class: "result"},
      el("span", {class: "chat-name"}, chat ? chatName(chat) : "Chat"),
      el("span", {class: "preview"}, m.text),
      el("time", {datetime: m.created_at}, formatTime(m.created_at)));
    button.addEventListener("click", () => openResult(m));
    return el("li", {}, button);
  }));
}

async function openResult(message) {
  if (!state.chats.has(message.chat_id)) await loadChats().catch(() => {});
  if (!state.chats.has(message.chat_id)) {
    // a chat the account is in (search covers no other) that this browser has not seen: read it
    state.chats.set(message.chat_id, {chat_id: message.chat_id, chat_name: "", my_user_ids: [], unread: 0,
      last_message: null});
  }
  await openChat(message.chat_id, {focus: message.message_id});
}

// ---- wiring ---------------------------------------------------------------------------------

function wire() {
  byId("login-form").addEventListener("submit", (event) => { event.preventDefault(); logIn(false); });
  byId("register-button").addEventListener("click", () => logIn(true));
  byId("logout-button").addEventListener("click", logOut);
  byId("new-chat-button").addEventListener("click", () => toggleNewChat(byId("new-chat-form").hidden));
  byId("new-chat-form").addEventListener("submit", createChat);
  byId("search-form").addEventListener("submit", search);
  byId("composer").addEventListener("submit", send);
  byId("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
  });
  byId("invite-button").addEventListener("click", showInvite);
  byId("join-button").addEventListener("click", joinFromLink);
  byId("back-button").addEventListener("click", () => { closeChat(); renderChats(); });
  byId("messages").addEventListener("scroll", () => { if (byId("messages").scrollTop < 60) loadOlder(); });
  document.addEventListener("visibilitychange", markRead);
  window.addEventListener("hashchange", () => { if (api.session) routeFromHash(); });
}

wire();
if (api.session && state.user) showApp();
else showLogin();
