// Plain `ws` peer server for the OnAir live-room benchmark (see ../README.md).
//
// It is the typical hand-written `ws` chat server: a Set of sockets per room, and
// every chat message is broadcast at once with `for (const c of room) c.send(frame)`,
// one WebSocket frame per message per viewer, no batching, no backpressure check.
//
// It speaks the small subset of OnAir's JSON protocol (docs/protocol.md) that
// `onair-bench chat --target ws` uses, so its frames are OnAir's frames:
//   {"op":"login","id":N,"userId":U,...}  → {"op":"ack","id":N,"code":0} (no auth)
//   {"op":"join","id":N,"roomId":R}       → {"op":"ack","id":N,"code":0}
//   {"op":"send","id":N,"roomId":R,...}   → {"op":"ack","id":N,"code":0,"seq":S,"time":T}
// and every member of R gets {"op":"push","roomId":R,"msgs":[MSG],"events":[]} with
// the OnAir-shaped MSG (`seq`, `time`, `from`, `nick`, ...): the same bytes as an
// OnAir push carrying one message.
"use strict";

const { WebSocketServer } = require("ws");

const port = Number(process.env.PORT || 3100);
const host = process.env.HOST || "127.0.0.1";

// Any path is accepted (the tool connects to `/ws`).
const wss = new WebSocketServer({ host, port, perMessageDeflate: false });

/** room id → Set of sockets */
const rooms = new Map();
/** room id → last seq */
const seqByRoom = new Map();

function reply(ws, id, fields) {
  ws.send(JSON.stringify({ op: "ack", id, code: 0, ...fields }));
}

function refuse(ws, id, code, message) {
  ws.send(JSON.stringify({ op: "ack", id, code, message }));
}

wss.on("connection", (ws) => {
  let user = "";
  const joined = new Set();

  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    let req;
    try {
      req = JSON.parse(data.toString());
    } catch {
      refuse(ws, null, 10001, "not JSON");
      return;
    }
    if (req === null || typeof req !== "object") {
      refuse(ws, null, 10001, "not an object");
      return;
    }
    const id = req.id ?? null;
    switch (req.op) {
      case "login":
        user = typeof req.userId === "string" ? req.userId : "";
        reply(ws, id, {});
        break;
      case "join": {
        if (typeof req.roomId !== "string" || req.roomId === "") {
          refuse(ws, id, 10004, "roomId required");
          return;
        }
        let room = rooms.get(req.roomId);
        if (!room) {
          room = new Set();
          rooms.set(req.roomId, room);
        }
        room.add(ws);
        joined.add(req.roomId);
        reply(ws, id, {});
        break;
      }
      case "send": {
        const roomId = req.roomId;
        const room = typeof roomId === "string" ? rooms.get(roomId) : undefined;
        if (!room || !joined.has(roomId)) {
          refuse(ws, id, 10007, "not in the room");
          return;
        }
        const seq = (seqByRoom.get(roomId) || 0) + 1;
        seqByRoom.set(roomId, seq);
        const time = Math.floor(Date.now() / 1000);
        const msg = {
          seq,
          time,
          from: user,
          nick: "",
          avatar: "",
          level: 0,
          priority: typeof req.priority === "string" ? req.priority : "Normal",
          random: Number(req.random) >>> 0,
          body: Array.isArray(req.body) ? req.body : [],
          cloudCustomData: typeof req.cloudCustomData === "string" ? req.cloudCustomData : "",
        };
        // Encoded once, sent to everyone at once: the broadcast loop.
        const frame = JSON.stringify({ op: "push", roomId, msgs: [msg], events: [] });
        for (const c of room) c.send(frame);
        reply(ws, id, { seq, time });
        break;
      }
      default:
        refuse(ws, id, 10003, "unknown op");
    }
  });

  ws.on("close", () => {
    for (const roomId of joined) {
      const room = rooms.get(roomId);
      if (!room) continue;
      room.delete(ws);
      if (room.size === 0) rooms.delete(roomId);
    }
  });
  ws.on("error", () => {});
});

wss.on("listening", () => {
  console.error(`ws ${require("ws/package.json").version} listening on ${host}:${port} (pid ${process.pid})`);
});

function shutdown() {
  wss.close();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
