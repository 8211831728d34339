// OnAir JavaScript SDK — one ES module, no dependencies, for browsers (and any runtime
// with WebSocket and fetch). It speaks the chat protocol of docs/protocol.md and wraps
// the HTTP API. Documented in docs/sdk.md.
//
//   import { OnAir } from '/sdk/onair.js';
//   const onair = new OnAir({ sdkAppId });
//   await onair.login({ userId, userSig });       // optional: anonymous viewers may join
//   const { room, history } = await onair.join('room1');
//   onair.on('message', (msg) => …);
//   await onair.sendText('hi');
//   onair.like();                                  // batched: one `like` op per ~300 ms

/**
 * @typedef {{MsgType: string, MsgContent: Record<string, any>}} MsgElem
 * @typedef {{seq: number, time: number, from: string, nick: string, avatar: string, level: number,
 *   priority: string, random: number, body: MsgElem[], cloudCustomData: string}} Message
 * @typedef {{type: string, [key: string]: any}} RoomEvent
 * @typedef {{roomId: string, name: string, introduction: string, notification: string, faceUrl: string,
 *   owner: string, muteAll: boolean, state: string, online: number, slowMode: number,
 *   attrs: Record<string, string>, [key: string]: any}} Room
 * @typedef {{mutedUntil: number, role: 'Owner'|'Admin'|'Member'|'Anonymous'}} You
 * @typedef {{room: Room, history: Message[], you: You, resume?: {ok: boolean, oldestAvailable?: number}}} JoinResult
 * @typedef {'idle'|'connecting'|'connected'|'reconnecting'|'closed'} ConnState
 * @typedef {{sdkAppId?: number, url?: string, baseUrl?: string, platform?: string,
 *   requestTimeoutMs?: number, minBackoffMs?: number, maxBackoffMs?: number, likeWindowMs?: number,
 *   WebSocket?: any}} Options
 */

/** An error answered by the server: `code` is the cloud's numeric code (docs/protocol.md). */
export class OnAirError extends Error {
  /** @param {number} code @param {string} message @param {any} [reply] */
  constructor(code, message, reply) {
    super(message || `error ${code}`);
    this.name = 'OnAirError';
    /** @type {number} */
    this.code = code;
    /** The whole reply (WebSocket ack or HTTP JSON body). */
    this.reply = reply;
    /** HTTP status for errors of the HTTP API (0 for WebSocket errors). */
    this.status = 0;
  }
}

/** Close codes after which reconnecting would not help. */
const FINAL_CLOSE = new Set([4001]);

/**
 * A connection to one OnAir server: one WebSocket (reconnected automatically) and the
 * HTTP API. Events (subscribe with `on`):
 * - `message` (Message) — a chat message of the joined room, in `seq` order, never twice;
 * - `event` (RoomEvent) — every room event; also emitted under its own type:
 *   `online`, `enter`, `quit`, `profile`, `attrs`, `muteAll`, `muted`, `kicked`, `recall`,
 *   `slowMode`, `notification`, `broadcast`, `destroyed`, `state`, `gift`, `like`,
 *   `lottery`, `stream`, `cohost`;
 * - `joined` (JoinResult) — after every (re)join, with `resumed: true` on a reconnect;
 * - `connection` ({state: ConnState, attempt?, delayMs?, code?}) — connection changes;
 * - `kickedOut` ({reason, message}) — logged in elsewhere or UserSig expired (no reconnect);
 * - `removed` ({reason, bannedUntil}) — this user was kicked or banned from the room;
 * - `you` (You) — own mute state changed (from join or a `muted` event);
 * - `likeSent` ({count, accepted}) — a batched like was acknowledged;
 * - `error` (Error) — an error nobody awaited (e.g. a failed like batch or resume).
 */
export class OnAir {
  /** @param {Options} [opts] */
  constructor(opts = {}) {
    const loc = typeof location !== 'undefined' ? location : null;
    /** HTTP base URL, e.g. `http://host:8080` (default: the page's origin). */
    this.baseUrl = (opts.baseUrl ?? (loc ? loc.origin : '')).replace(/\/$/, '');
    /** WebSocket URL (default: `/ws` of the base URL). */
    this.url = opts.url ?? (this.baseUrl.replace(/^http/, 'ws') + '/ws');
    /** @type {number} */
    this.sdkAppId = opts.sdkAppId ?? 0;
    this.platform = opts.platform ?? 'Web';
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10000;
    this.minBackoffMs = opts.minBackoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 15000;
    this.likeWindowMs = opts.likeWindowMs ?? 300;
    this._WS = opts.WebSocket ?? globalThis.WebSocket;
    /** @type {{userId: string, userSig: string, nick?: string, avatar?: string} | null} */
    this.credentials = null;
    /** @type {string | null} the joined room */
    this.roomId = null;
    /** @type {Room | null} the joined room as last known (kept current by events) */
    this.room = null;
    /** @type {You | null} */
    this.you = null;
    /** Highest message `seq` seen in the joined room (resume point). */
    this.lastSeq = 0;
    /** @type {ConnState} */
    this.state = 'idle';
    this._ws = null;
    this._nextId = 1;
    /** @type {Map<any, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    this._attempt = 0;
    this._reconnectTimer = null;
    this._closedByUser = false;
    this._connecting = null;
    this._likePending = 0;
    this._likeTimer = null;
    this._pingTimer = null;
    this._gapFill = false;
  }

  // ---- events ----

  /** Subscribes `fn` to `type`; returns a function that unsubscribes. @param {string} type @param {(data: any) => void} fn */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /** @param {string} type @param {Function} fn */
  off(type, fn) {
    this._handlers.get(type)?.delete(fn);
  }

  /** @param {string} type @param {any} data */
  _emit(type, data) {
    for (const fn of [...(this._handlers.get(type) ?? [])]) {
      try {
        fn(data);
      } catch (e) {
        console.error('OnAir handler for', type, 'failed:', e);
      }
    }
  }

  // ---- connection ----

  /** Opens the WebSocket (done by `login`/`join` on demand). @returns {Promise<void>} */
  connect() {
    if (this._ws && this._ws.readyState === 1) return Promise.resolve();
    if (this._connecting) return this._connecting;
    this._closedByUser = false;
    this._setState(this._attempt > 0 ? 'reconnecting' : 'connecting');
    this._connecting = new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this._WS(this.url);
      } catch (e) {
        this._connecting = null;
        reject(e);
        return;
      }
      this._ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this._connecting = null;
        this._attempt = 0;
        this._setState('connected');
        this._startPing();
        resolve();
      };
      ws.onmessage = (ev) => this._onFrame(ev.data);
      ws.onclose = (ev) => {
        if (this._ws !== ws) return;
        this._ws = null;
        this._connecting = null;
        this._stopPing();
        this._failPending(new OnAirError(-1, `connection closed (${ev.code})`));
        if (!opened) reject(new OnAirError(-1, 'could not connect'));
        this._onClose(ev.code);
      };
      ws.onerror = () => {};
    });
    return this._connecting;
  }

  /** Closes for good: leaves, stops reconnecting, flushes pending likes first. */
  async close() {
    this._closedByUser = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._likePending) await this._flushLikes().catch(() => {});
    this._stopPing();
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000);
    this._failPending(new OnAirError(-1, 'closed'));
    this._setState('closed');
  }

  /** @param {ConnState} s @param {object} [extra] */
  _setState(s, extra = {}) {
    this.state = s;
    this._emit('connection', { state: s, ...extra });
  }

  _startPing() {
    this._stopPing();
    // The server pings at the WebSocket level; this app-level ping notices a dead
    // connection on networks that drop silently.
    this._pingTimer = setInterval(() => {
      this.request({ op: 'ping' }).catch(() => {});
    }, 25000);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  /** @param {number} code */
  _onClose(code) {
    if (this._closedByUser) return;
    if (FINAL_CLOSE.has(code)) {
      this._setState('closed', { code });
      return;
    }
    this._scheduleReconnect(code);
  }

  /** Exponential backoff with full jitter: a random delay in [base/2, base], base doubling. @param {number} [code] */
  _scheduleReconnect(code) {
    clearTimeout(this._reconnectTimer);
    const base = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this._attempt, 16));
    const delayMs = Math.round(base / 2 + Math.random() * (base / 2));
    this._attempt += 1;
    this._setState('reconnecting', { attempt: this._attempt, delayMs, code });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._reconnect();
    }, delayMs);
  }

  async _reconnect() {
    try {
      await this.connect();
      if (this.credentials) await this._login(this.credentials);
      if (this.roomId) await this._join(this.roomId, true);
    } catch (e) {
      if (this._closedByUser) return;
      if (e instanceof OnAirError && e.code > 0) {
        // Refused (banned, room gone, UserSig expired): retrying would not help.
        this._emit('error', e);
        return;
      }
      // A transport failure: the socket's close schedules the next attempt. A request
      // that timed out on an open socket closes it to get there.
      if (this._ws && this._ws.readyState === 1) this._ws.close();
      else if (!this._ws && !this._reconnectTimer) this._scheduleReconnect();
    }
  }

  _failPending(err) {
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  /**
   * Sends one request and resolves with its ack (`code` 0), or rejects with an
   * `OnAirError` carrying the server's code. Any op of docs/protocol.md.
   * @param {Record<string, any>} req
   * @returns {Promise<any>}
   */
  async request(req) {
    if (this.state === 'reconnecting' && !(this._ws && this._ws.readyState === 1)) {
      // Not around the backoff: the scheduled attempt logs in and re-joins first.
      throw new OnAirError(-1, 'reconnecting; try again when connected');
    }
    await this.connect();
    const id = this._nextId++;
    const frame = JSON.stringify({ ...req, id });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new OnAirError(-2, `no reply to ${req.op} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      try {
        this._ws.send(frame);
      } catch (e) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(e);
      }
    });
  }

  /** @param {string} text */
  _onFrame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (f.op === 'ack') {
      const p = this._pending.get(f.id);
      if (!p) return;
      this._pending.delete(f.id);
      clearTimeout(p.timer);
      if (f.code === 0) p.resolve(f);
      else p.reject(new OnAirError(f.code, f.message, f));
    } else if (f.op === 'push') {
      if (f.roomId !== this.roomId) return;
      for (const m of f.msgs ?? []) this._onMessage(m);
      for (const e of f.events ?? []) this._onEvent(e);
    } else if (f.op === 'kicked') {
      // Logged in elsewhere on the same platform, or the UserSig expired: the server
      // closes with 4001 next; reconnecting would just kick the other session.
      this._closedByUser = true;
      this._emit('kickedOut', { reason: f.reason, message: f.message });
    }
  }

  /** @param {Message} m */
  _onMessage(m) {
    if (m.seq <= this.lastSeq) return; // already seen (overlap after a resume)
    if (this.lastSeq > 0 && m.seq > this.lastSeq + 1 && !this._gapFill) {
      // Delivered seqs have no gaps: a jump means frames were dropped on the way
      // (slow consumer). Re-join from the last seen seq to fetch exactly the missing ones.
      this._gapFill = true;
      const from = this.lastSeq;
      this.request({ op: 'join', roomId: this.roomId, lastSeq: from })
        .then((ack) => {
          this._gapFill = false;
          for (const h of ack.history ?? []) {
            if (h.seq <= this.lastSeq) continue;
            this.lastSeq = h.seq;
            this._emit('message', h);
          }
        })
        .catch((e) => {
          this._gapFill = false;
          this._emit('error', e);
        });
    }
    if (this._gapFill && m.seq > this.lastSeq + 1) {
      // Held back until the gap is filled so order stays strict; the join reply's
      // history includes it.
      return;
    }
    this.lastSeq = m.seq;
    this._emit('message', m);
  }

  /** @param {RoomEvent} e */
  _onEvent(e) {
    const r = this.room;
    if (r) {
      switch (e.type) {
        case 'online':
        case 'enter':
        case 'quit':
          if (typeof e.count === 'number') r.online = e.count;
          break;
        case 'profile':
          for (const k of ['name', 'introduction', 'notification', 'faceUrl', 'appDefinedData']) if (k in e) r[k] = e[k];
          break;
        case 'attrs':
          r.attrs = e.attrs;
          break;
        case 'muteAll':
          r.muteAll = e.on;
          break;
        case 'slowMode':
          r.slowMode = e.seconds;
          break;
        case 'state':
          r.state = e.state;
          if ('scheduledAt' in e) r.scheduledAt = e.scheduledAt;
          for (const k of ['replayUrl', 'stream']) if (k in e) r[k] = e[k];
          break;
        case 'like':
          if (typeof e.total === 'number') r.likes = e.total;
          break;
      }
    }
    const me = this.credentials?.userId;
    if (e.type === 'muted' && me && e.userId === me && this.you) {
      this.you = { ...this.you, mutedUntil: e.mutedUntil };
      this._emit('you', this.you);
    }
    this._emit('event', e);
    this._emit(e.type, e);
    if (e.type === 'kicked' && me && e.userId === me) {
      const room = this.roomId;
      this.roomId = null;
      this._emit('removed', { roomId: room, reason: e.reason, bannedUntil: e.bannedUntil });
    }
    if (e.type === 'destroyed') this.roomId = null;
  }

  // ---- account ----

  /**
   * Logs in (and keeps the credentials for reconnects). `nick`/`avatar` become the
   * profile stamped on messages.
   * @param {{userId: string, userSig: string, nick?: string, avatar?: string, sdkAppId?: number}} creds
   */
  async login(creds) {
    if (creds.sdkAppId) this.sdkAppId = creds.sdkAppId;
    this.credentials = { userId: creds.userId, userSig: creds.userSig, nick: creds.nick, avatar: creds.avatar };
    return this._login(this.credentials);
  }

  async _login(c) {
    const req = { op: 'login', sdkappid: this.sdkAppId, userId: c.userId, userSig: c.userSig, platform: this.platform };
    if (c.nick) req.nick = c.nick;
    if (c.avatar) req.avatar = c.avatar;
    this._closedByUser = false;
    return this.request(req);
  }

  /** Logs out (the connection stays, anonymous). */
  async logout() {
    this.credentials = null;
    return this.request({ op: 'logout' });
  }

  /** The logged-in user id, or null for an anonymous viewer. */
  get userId() {
    return this.credentials?.userId ?? null;
  }

  /** @param {{nick?: string, avatar?: string}} p */
  async setProfile(p) {
    if (this.credentials) Object.assign(this.credentials, p);
    return this.request({ op: 'setProfile', ...p });
  }

  // ---- room ----

  /**
   * Joins a room (anonymously when not logged in). A Web connection is in one room
   * at a time. Resolves with the room, its recent history (oldest first) and your
   * standing.
   * @param {string} roomId
   * @returns {Promise<JoinResult>}
   */
  async join(roomId) {
    if (roomId !== this.roomId) this.lastSeq = 0;
    this.roomId = roomId;
    return this._join(roomId, false);
  }

  /** @param {string} roomId @param {boolean} resume */
  async _join(roomId, resume) {
    const req = { op: 'join', roomId };
    if (resume && this.lastSeq > 0) req.lastSeq = this.lastSeq;
    let ack;
    try {
      ack = await this.request(req);
    } catch (e) {
      if (e instanceof OnAirError && e.code > 0 && this.roomId === roomId) this.roomId = null;
      throw e;
    }
    this.room = ack.room;
    this.you = ack.you;
    const history = [];
    for (const m of ack.history ?? []) {
      if (m.seq > this.lastSeq) {
        history.push(m);
        this.lastSeq = m.seq;
      }
    }
    const result = { room: ack.room, history, you: ack.you, resume: ack.resume, resumed: resume };
    this._emit('joined', result);
    this._emit('you', ack.you);
    if (resume) for (const m of history) this._emit('message', m);
    return result;
  }

  /** Leaves the joined room. */
  async leave() {
    const roomId = this.roomId;
    if (!roomId) return;
    if (this._likePending) await this._flushLikes().catch(() => {});
    this.roomId = null;
    this.room = null;
    this.lastSeq = 0;
    return this.request({ op: 'leave', roomId });
  }

  /**
   * Sends message elements to the joined room. Resolves with `{seq, time, dropReason}`
   * once the room decided (`seq` 0 + `dropReason` = cut by frequency control).
   * @param {MsgElem[]} body
   * @param {{priority?: 'High'|'Normal'|'Low'|'Lowest', cloudCustomData?: string, random?: number}} [opts]
   */
  async send(body, opts = {}) {
    if (!this.roomId) throw new OnAirError(10007, 'join a room first');
    const random = opts.random ?? Math.floor(Math.random() * 0xffffffff);
    const req = { op: 'send', roomId: this.roomId, body, random, priority: opts.priority ?? 'Normal' };
    if (opts.cloudCustomData) req.cloudCustomData = opts.cloudCustomData;
    return this.request(req);
  }

  /** Sends a text message. @param {string} text @param {object} [opts] */
  async sendText(text, opts) {
    return this.send([{ MsgType: 'TIMTextElem', MsgContent: { Text: text } }], opts);
  }

  /** Sends a custom message (`TIMCustomElem`). @param {string} data @param {{desc?: string, ext?: string}} [extra] @param {object} [opts] */
  async sendCustom(data, extra = {}, opts) {
    return this.send([{ MsgType: 'TIMCustomElem', MsgContent: { Data: data, Desc: extra.desc ?? '', Ext: extra.ext ?? '' } }], opts);
  }

  /** Recent online members of the joined room. @param {number} [limit] */
  async members(limit) {
    const req = { op: 'members', roomId: this.roomId };
    if (limit) req.limit = limit;
    return this.request(req);
  }

  /**
   * Likes the joined room. Clicks are counted locally and sent as one `like` op per
   * `likeWindowMs` (default 300 ms), so a storm of clicks costs a few frames.
   * @param {number} [n]
   */
  like(n = 1) {
    this._likePending += n;
    if (!this._likeTimer) this._likeTimer = setTimeout(() => this._flushLikes().catch((e) => this._emit('error', e)), this.likeWindowMs);
  }

  async _flushLikes() {
    clearTimeout(this._likeTimer);
    this._likeTimer = null;
    const count = this._likePending;
    this._likePending = 0;
    if (!count || !this.roomId) return;
    const ack = await this.request({ op: 'like', roomId: this.roomId, count });
    this._emit('likeSent', { count, accepted: ack.accepted ?? count });
    return ack;
  }

  // ---- moderation (owner, room admins, app admins) ----

  /** @param {string[]} userIds @param {number} seconds 0 = unmute */
  mute(userIds, seconds) {
    return this.request({ op: 'mute', roomId: this.roomId, userIds, seconds });
  }
  /** @param {string[]} userIds @param {string} [reason] */
  kick(userIds, reason = '') {
    return this.request({ op: 'kick', roomId: this.roomId, userIds, reason });
  }
  /** @param {string[]} userIds @param {number} seconds @param {string} [reason] */
  ban(userIds, seconds, reason = '') {
    return this.request({ op: 'ban', roomId: this.roomId, userIds, seconds, reason });
  }
  /** @param {string[]} userIds */
  unban(userIds) {
    return this.request({ op: 'unban', roomId: this.roomId, userIds });
  }
  /** @param {number} seq */
  recall(seq) {
    return this.request({ op: 'recall', roomId: this.roomId, seq });
  }
  /** @param {boolean} on */
  muteAll(on) {
    return this.request({ op: 'muteAll', roomId: this.roomId, on });
  }
  /** @param {number} seconds */
  slowMode(seconds) {
    return this.request({ op: 'slowMode', roomId: this.roomId, seconds });
  }
  mutes() {
    return this.request({ op: 'mutes', roomId: this.roomId });
  }
  /** @param {number} [offset] @param {number} [limit] */
  bans(offset = 0, limit = 100) {
    return this.request({ op: 'bans', roomId: this.roomId, offset, limit });
  }

  // ---- HTTP API ----

  /**
   * Calls the HTTP API with this login's `X-OnAir-Identifier` / `X-OnAir-UserSig`
   * headers. Resolves with the JSON body; rejects with `OnAirError` (`status` set).
   * @param {string} method
   * @param {string} path e.g. `/api/v1/rooms/r1/gifts`
   * @param {any} [body]
   * @param {Record<string, string>} [headers]
   */
  async api(method, path, body, headers = {}) {
    const h = { ...headers };
    if (this.credentials) {
      h['X-OnAir-Identifier'] = this.credentials.userId;
      h['X-OnAir-UserSig'] = this.credentials.userSig;
    }
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = { message: text };
    }
    if (!res.ok) {
      const err = new OnAirError(json?.code ?? res.status, json?.message ?? json?.error ?? `HTTP ${res.status}`, json);
      err.status = res.status;
      throw err;
    }
    return json;
  }

  /** Public room list. @param {{sort?: string, state?: string, limit?: number}} [q] */
  rooms(q = {}) {
    const qs = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]));
    return this.api('GET', `/api/v1/rooms${qs.size ? '?' + qs : ''}`);
  }
  /** @param {string} roomId */
  getRoom(roomId) {
    return this.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}`);
  }
  /** The gift catalog. */
  gifts() {
    return this.api('GET', '/api/v1/gifts');
  }
  /**
   * Sends a gift to the room's anchor. Safe to retry with the same `idempotencyKey`
   * (never charged twice).
   * @param {string} giftId @param {number} [count] @param {{roomId?: string, idempotencyKey?: string}} [opts]
   */
  sendGift(giftId, count = 1, opts = {}) {
    const roomId = opts.roomId ?? this.roomId;
    const idempotencyKey = opts.idempotencyKey ?? randomKey();
    return this.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/gifts`, { giftId, count, idempotencyKey });
  }
  /** @param {string} [userId] */
  wallet(userId = this.userId) {
    return this.api('GET', `/api/v1/users/${encodeURIComponent(userId)}/wallet`);
  }
  /** @param {string} [userId] */
  level(userId = this.userId) {
    return this.api('GET', `/api/v1/users/${encodeURIComponent(userId)}/level`);
  }
  /** Likes over HTTP (no WebSocket needed). @param {number} count @param {string} [roomId] */
  likeHttp(count, roomId = this.roomId) {
    return this.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/likes`, { count });
  }
  /** @param {string} state @param {string} [roomId] */
  setState(state, roomId = this.roomId) {
    return this.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/state`, { state });
  }
  /** @param {string} [roomId] */
  leaderboard(roomId = this.roomId, limit = 10) {
    return this.api('GET', `/api/v1/rooms/${encodeURIComponent(roomId)}/gifts/leaderboard?limit=${limit}`);
  }
  /** @param {{keyword: string, durationSecs: number, winners: number, minLevel?: number}} l @param {string} [roomId] */
  startLottery(l, roomId = this.roomId) {
    return this.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/lotteries`, l);
  }
  /** @param {string} lotteryId */
  drawLottery(lotteryId) {
    return this.api('POST', `/api/v1/lotteries/${encodeURIComponent(lotteryId)}/draw`);
  }
  /** @param {string} [roomId] */
  requestCohost(roomId = this.roomId) {
    return this.api('POST', `/api/v1/rooms/${encodeURIComponent(roomId)}/cohost/request`);
  }

  /**
   * Demo mode only: asks the server for a guest login (or the demo anchor's, with
   * `role: 'anchor'`). Does not log in.
   * @param {{role?: 'viewer'|'anchor', nick?: string}} [opts]
   * @returns {Promise<{sdkAppId: number, userId: string, userSig: string, nick: string, expireAt: number}>}
   */
  demoGuest(opts = {}) {
    return this.api('POST', '/api/v1/demo/guest', opts);
  }
}

/** A random idempotency key (UUID v4 where available). */
export function randomKey() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return Array.from({ length: 4 }, () => Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0')).join('-');
}

/**
 * The plain text of a message body: text elements as they are, faces as their
 * emoji, other elements as a short label. Render it with `textContent`.
 * @param {MsgElem[]} body
 */
export function bodyText(body) {
  return (body ?? [])
    .map((el) => {
      const c = el.MsgContent ?? {};
      switch (el.MsgType) {
        case 'TIMTextElem':
          return String(c.Text ?? '');
        case 'TIMFaceElem':
          return FACES[c.Index] ?? String(c.Data ?? '[face]');
        case 'TIMImageElem':
          return '[image]';
        case 'TIMSoundElem':
          return '[voice]';
        case 'TIMVideoFileElem':
          return '[video]';
        case 'TIMFileElem':
          return `[file ${String(c.FileName ?? '')}]`;
        case 'TIMLocationElem':
          return `[location ${String(c.Desc ?? '')}]`;
        case 'TIMCustomElem':
          return String(c.Desc ?? '');
        default:
          return '';
      }
    })
    .join('');
}

/** Emoji for `TIMFaceElem` indexes 0…(n-1), the web app's face set. */
export const FACES = ['😀', '😂', '😍', '😎', '😭', '😡', '👍', '👏', '🎉', '❤️', '🔥', '🌹', '😮', '🤔', '🙏', '💯'];
