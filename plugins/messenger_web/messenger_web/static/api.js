// The public HTTP API of the Messenger service, as ../API.md documents it; nothing else.

const root = document.documentElement.dataset;
const AUTH_HEADER = root.authHeader || "Authorization";
const AUTH_TOKEN = root.authToken || "session_id";

/** An answer of the API that is not a success: status, the error code, for 429 the wait, and the request. */
export class ApiError extends Error {
  constructor(status, code, retryAfter = null, method = "", path = "") {
    super(code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.method = method;
    this.path = path;
  }
}

/** Session-bound client of every endpoint the web client uses. */
export class Api {
  constructor(onError) {
    this.session = localStorage.getItem("messenger.session");
    this.onError = onError; // called with every ApiError before it is thrown
    this.onSuccess = () => {};
  }

  setSession(sessionId) {
    this.session = sessionId;
    if (sessionId) localStorage.setItem("messenger.session", sessionId);
    else localStorage.removeItem("messenger.session");
  }

  async request(method, path, body, {signal, quiet = false} = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.session) headers[AUTH_HEADER] = `${AUTH_TOKEN} ${this.session}`;
    let response;
    try {
      response = await fetch(path, {method, headers, signal, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (err) {
      if (err.name === "AbortError") throw err;
      const error = new ApiError(0, "network-error", null, method, path);
      if (!quiet) this.onError(error);
      throw error;
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!response.ok) {
      const retry = response.headers.get("Retry-After");
      const error = new ApiError(response.status, (data && data.message) || `http-${response.status}`,
        retry === null ? null : Number(retry), method, path);
      if (!quiet) this.onError(error);
      throw error;
    }
    this.onSuccess();
    return data;
  }

  register(userName, password) {
    return this.request("POST", "/v1/auth/register", {user_name: userName, password});
  }

  async login(userName, password) {
    const data = await this.request("POST", "/v1/auth/login", {user_name: userName, password});
    this.setSession(data.session_id);
    return data.session_id;
  }

  logout() { return this.request("POST", "/v1/auth/logout"); }

  chats(options) { return this.request("GET", "/v1/chats", undefined, options); }

  createChat(name, isPrivate) {
    const body = {chat_name: name};
    if (isPrivate) body.private = true;
    return this.request("POST", "/v1/chats", body);
  }

  join(chatId, userName, invite) {
    const body = {user_name: userName};
    if (invite) body.invite = invite;
    return this.request("POST", `/v1/chats/${enc(chatId)}/users`, body);
  }

  members(chatId, options) { return this.request("GET", `/v1/chats/${enc(chatId)}/users`, undefined, options); }

  invite(chatId) { return this.request("POST", `/v1/chats/${enc(chatId)}/invites`); }

  messages(chatId, limit, from, {wait = 0, signal, quiet} = {}) {
    let query = `limit=${limit}`;
    if (from) query += `&from=${encodeURIComponent(from)}`;
    if (wait) query += `&wait=${wait}`;
    return this.request("GET", `/v1/chats/${enc(chatId)}/messages?${query}`, undefined, {signal, quiet});
  }

  post(chatId, userId, text) {
    return this.request("POST", `/v1/chats/${enc(chatId)}/messages?user_id=${enc(userId)}`, {message: text});
  }

  edit(chatId, messageId, text) {
    return this.request("PATCH", `/v1/chats/${enc(chatId)}/messages/${enc(messageId)}`, {message: text});
  }

  remove(chatId, messageId) {
    return this.request("DELETE", `/v1/chats/${enc(chatId)}/messages/${enc(messageId)}`);
  }

  markRead(chatId, iterator) {
    return this.request("POST", `/v1/chats/${enc(chatId)}/read`, {iterator}, {quiet: true});
  }

  search(text) { return this.request("POST", "/v1/chats/search", {message: text}); }

  searchStatus(taskId) { return this.request("GET", `/v1/chats/search/status/${enc(taskId)}`); }

  searchResults(taskId, limit, from) {
    let query = `limit=${limit}`;
    if (from) query += `&from=${encodeURIComponent(from)}`;
    return this.request("GET", `/v1/chats/search/${enc(taskId)}/messages?${query}`);
  }

  pingDb() { return this.request("GET", "/ping_db", undefined, {quiet: true}); }

  /** The WebSocket URL of the event stream on this origin. */
  static eventsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/v1/events`;
  }
}

function enc(value) { return encodeURIComponent(value); }

/** What a request was, for the sentences that depend on it. */
function context(error) {
  const path = (error.path || "").split("?")[0];
  if (path.startsWith("/v1/auth/")) return "auth";
  if (path.startsWith("/v1/chats/search")) return "search";
  if (error.method === "POST" && /^\/v1\/chats\/[^/]+\/messages$/.test(path)) return "post";
  return "";
}

const SENTENCES = {
  "network-error": "The server cannot be reached. Retrying…",
  "database-unavailable": "The database is unavailable right now. Your messages are safe; retrying…",
  "service-unavailable": "The service is unavailable right now. Retrying…",
  "bad-parameters": "That was not accepted: check what you typed.",
  "bad-cursor": "The chat lost its place: reopening it at its newest messages.",
  "chat-not-found": "That chat does not exist, or you cannot open it.",
  "user-not-found": "That member is no longer in this chat.",
  "message-not-found": "That message no longer exists.",
  "user-already-exists": "That user name is taken: choose another one, or log in.",
  "bad-password": "Wrong password.",
  "auth-failed": "Please log in.",
  "invalid-session-id": "Your session has ended. Please log in again.",
  "session-id-expired": "Your session has expired. Please log in again.",
  "task-not-found": "That search is no longer available: search again.",
  "task-not-complete": "The search is still running.",
  "task-failed": "The search failed: try again.",
  "payload-too-large": "That is too long to send.",
  "method-not-allowed": "The server does not support this action.",
  "not-found": "The server does not offer this yet.",
  "internal-error": "Something went wrong on the server. Try again.",
};

/** Where the same code means something else: [context, code] -> sentence. */
const IN_CONTEXT = {
  "auth user-not-found": "No account with that user name.",
  "post user-not-found": "You are no longer a member of this chat.",
  "post chat-not-found": "That chat does not exist, or you cannot write in it.",
  "search bad-cursor": "The search results moved on: search again.",
};

/** Whether the error means the whole service is away (nginx answers for the app: 502, 504, or a 503 of
 * anything but search, which answers 503 for its broker or store, and register or login, for a full
 * password-hashing queue), so that the client watches for its return. */
export function serviceAway(error) {
  if (error.code !== "service-unavailable") return false;
  return error.status !== 503 || !["search", "auth"].includes(context(error));
}

/** What a person reads for an error (its code, for 429 its wait, and what the request was). */
export function describe(error) {
  if (error.code === "request-limit-exceeded") {
    const wait = error.retryAfter && error.retryAfter > 0 ? Math.ceil(error.retryAfter) : 1;
    return `Too many requests: wait ${wait} s and try again.`;
  }
  if (error.code === "service-unavailable" && !serviceAway(error)) {
    return context(error) === "auth" ? "Too many people are signing in right now. Try again in a moment."
      : "Search is unavailable right now. Try again in a moment.";
  }
  return IN_CONTEXT[`${context(error)} ${error.code}`] || SENTENCES[error.code]
    || `The server answered ${error.status} (${error.code}).`;
}

/** The 401 codes that end the session in the client. */
export const SESSION_ENDED = new Set(["auth-failed", "invalid-session-id", "session-id-expired"]);
