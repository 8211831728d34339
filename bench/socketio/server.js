// Socket.IO 4 peer server for the OnAir live-room benchmark (see ../README.md).
//
// It does what a typical Socket.IO chat room does: every `chat` event is
// broadcast to the room at once with `io.to(room).emit(...)`, one WebSocket
// frame per message per viewer, no batching. That per-message fan-out is what
// the comparison with OnAir's batched pushes is about.
//
// Clients join a room with the `room` query parameter of the handshake
// (`/socket.io/?EIO=4&transport=websocket&room=ROOM&user=NAME`) or by emitting
// `join` with the room name. A `chat` payload shaped like an OnAir `send`
// request is turned into an OnAir-shaped MSG (`seq`, `time`, `from`, ...) so
// both servers push frames of about the same size; the optional ack callback
// gets `{code, seq, time}` like OnAir's send ack.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.end("ok");
    return;
  }
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
});

// Documented memory tuning (socket.io docs, "Memory usage"): do not keep the
// upgrade request of every connection alive. Keep only its parsed query
// (`socket.handshake.query` is read from the request, so it would be empty).
io.engine.on("connection", (rawSocket) => {
  rawSocket.benchQuery = (rawSocket.request && rawSocket.request._query) || {};
  rawSocket.request = null;
});

const seqByRoom = new Map();

io.on("connection", (socket) => {
  const q = socket.conn.benchQuery || socket.handshake.query;
  const user = typeof q.user === "string" ? q.user : "";
  if (typeof q.room === "string" && q.room !== "") {
    socket.join(q.room);
  }

  socket.on("join", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack({ code: 0 });
  });

  socket.on("chat", (p, ack) => {
    if (p === null || typeof p !== "object" || typeof p.roomId !== "string") {
      if (typeof ack === "function") ack({ code: 10004 });
      return;
    }
    const room = p.roomId;
    const seq = (seqByRoom.get(room) || 0) + 1;
    seqByRoom.set(room, seq);
    const msg = {
      seq,
      time: Math.floor(Date.now() / 1000),
      from: user,
      nick: "",
      avatar: "",
      level: 0,
      priority: typeof p.priority === "string" ? p.priority : "Normal",
      random: Number(p.random) >>> 0,
      body: Array.isArray(p.body) ? p.body : [],
      cloudCustomData: typeof p.cloudCustomData === "string" ? p.cloudCustomData : "",
    };
    io.to(room).emit("chat", msg);
    if (typeof ack === "function") ack({ code: 0, seq, time: msg.time });
  });
});

httpServer.listen(port, host, () => {
  console.error(`socket.io ${require("socket.io/package.json").version} listening on ${host}:${port} (pid ${process.pid})`);
});

function shutdown() {
  io.close();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
