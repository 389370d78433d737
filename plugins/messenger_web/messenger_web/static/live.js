// Live delivery: the /v1/events WebSocket, and long-polls of the open chat when it cannot connect.
import {Api, ApiError, SESSION_ENDED} from "./api.js";

const LONG_POLL_WAIT = Number(document.documentElement.dataset.longPollWait) || 25;
const POLL_LIMIT = 100;
const RETRY_SOCKET_MS = 30000;

/**
 * Carries new messages to the app.  Handlers: messages(chatId, messages, iterator), edited(chatId, message),
 * deleted(chatId, messageId), joined(summary), lost(chatId) (its iterator was refused: bad-cursor; it is
 * followed no more until follow() is called again), sessionEnded(code), resumed(), tick().
 */
export class Live {
  constructor(api, handlers) {
    this.api = api;
    this.on = handlers;
    this.socket = null;
    this.ready = false;
    this.stopped = true;
    this.polling = false;
    this.failures = 0;
    this.backoff = 500;
    this.chatId = null;     // the chat whose gap-free tail is followed
    this.iterator = null;   // the iterator just after the last message delivered for it
    this.pollAbort = null;
    this.wake = null;
    this.timers = new Set();
    this.everReady = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.polling = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.ready = false;
    if (this.pollAbort) this.pollAbort.abort();
    this.chatId = null;
    this.iterator = null;
  }

  /** Follow ``chatId`` from ``iterator`` on: what follows it arrives through ``messages``. */
  follow(chatId, iterator) {
    this.chatId = chatId;
    this.iterator = iterator;
    if (this.ready) this.subscribe();
    if (this.pollAbort) this.pollAbort.abort();
    this.nudge();
  }

  /** Poll at once (after a post, when the server may not hold long-polls). */
  nudge() {
    if (this.wake) this.wake();
  }

  get mode() {
    if (this.ready) return "live";
    return this.polling ? "polling" : "connecting";
  }

  later(ms, fn) {
    const timer = setTimeout(() => { this.timers.delete(timer); fn(); }, ms);
    this.timers.add(timer);
  }

  connect() {
    if (this.stopped) return;
    let socket;
    try {
      socket = new WebSocket(Api.eventsUrl());
    } catch {
      this.socketFailed();
      return;
    }
    this.socket = socket;
    let opened = false;
    let wasReady = false;
    socket.onopen = () => {
      opened = true;
      socket.send(JSON.stringify({type: "auth", session_id: this.api.session}));
    };
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.type === "ready") {
        wasReady = true;
        this.everReady = true;
        this.ready = true;
        this.failures = 0;
        this.backoff = 500;
        if (this.pollAbort) this.pollAbort.abort();
        this.polling = false;
        this.subscribe();
        this.on.resumed();
      } else {
        this.frame(frame);
      }
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.socket = null;
      this.ready = false;
      if (this.stopped) return;
      if (event.code === 4401) {
        this.on.sessionEnded(null); // its error frame, just before, named the reason
        return;
      }
      if (!opened || !wasReady) {
        this.socketFailed();
        return;
      }
      // the server went away (a restart, a deploy): come back and resume from the iterators
      this.later(this.backoff, () => this.connect());
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
  }

  socketFailed() {
    this.failures += 1;
    if (this.failures >= 2 && !this.polling) this.poll();
    // a server that never offered the stream is asked again now and then; one that did, soon
    const delay = this.polling && !this.everReady ? RETRY_SOCKET_MS : this.backoff;
    this.backoff = Math.min(this.backoff * 2, 5000);
    this.later(delay, () => this.connect());
  }

  subscribe() {
    if (!this.socket || !this.chatId) return;
    this.socket.send(JSON.stringify({type: "subscribe", chats: {[this.chatId]: this.iterator}}));
  }

  frame(frame) {
    switch (frame.type) {
      case "message":
        if (frame.chat_id === this.chatId && frame.iterator) this.iterator = frame.iterator;
        this.on.messages(frame.chat_id, [frame.message], frame.iterator);
        break;
      case "message_edited":
        this.on.edited(frame.chat_id, frame.message);
        break;
      case "message_deleted":
        this.on.deleted(frame.chat_id, frame.message_id);
        break;
      case "chat_joined":
        this.on.joined(frame.chat);
        break;
      case "error":
        if (SESSION_ENDED.has(frame.message)) this.on.sessionEnded(frame.message);
        else if (frame.message === "bad-cursor" && frame.chat_id) this.lose(frame.chat_id);
        break;
      default:
        break;
    }
  }

  /** The server refused the iterator of ``chatId``: never ask with it again; the app reopens the chat. */
  lose(chatId) {
    if (chatId !== this.chatId) return;
    this.chatId = null;
    this.iterator = null;
    this.on.lost(chatId);
  }

  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() { clearTimeout(timer); if (self.wake === done) self.wake = null; resolve(); }
      this.wake = done;
    });
  }

  /** The fallback: hold a long-poll on the open chat, answer each page, again. */
  async poll() {
    this.polling = true;
    while (this.polling && !this.stopped) {
      this.on.tick();
      const chatId = this.chatId;
      if (!chatId) {
        await this.sleep(3000);
        continue;
      }
      const abort = new AbortController();
      this.pollAbort = abort;
      const started = Date.now();
      try {
        const page = await this.api.messages(chatId, POLL_LIMIT, this.iterator,
          {wait: LONG_POLL_WAIT, signal: abort.signal, quiet: true});
        if (chatId !== this.chatId || !this.polling) continue;
        this.iterator = page.next.iterator;
        if (page.messages.length) this.on.messages(chatId, page.messages, page.next.iterator);
        // a server that does not hold long-polls answers at once: poll gently instead
        if (!page.messages.length && Date.now() - started < 1000) await this.sleep(2000);
      } catch (err) {
        if (err.name === "AbortError") continue;
        if (err instanceof ApiError && SESSION_ENDED.has(err.code)) {
          this.on.sessionEnded(err.code);
          return;
        }
        if (err instanceof ApiError && err.code === "bad-cursor") {
          this.lose(chatId);
          continue;
        }
        if (err instanceof ApiError) this.api.onError(err);
        await this.sleep(2000);
      } finally {
        if (this.pollAbort === abort) this.pollAbort = null;
      }
    }
  }
}
