// Benchmark peer: Node's `ws` (Debian's node-ws) echo server with the
// replies upper-cased (ASCII a-z), each message answered with one of its
// type. `NODE_PATH=/usr/share/nodejs node peers/node/ws_server.js 127.0.0.1:9000`.
'use strict';
const { WebSocketServer } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:9000').split(/:(?=\d+$)/);
const server = new WebSocketServer({ host, port: Number(port), perMessageDeflate: false });
server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    const reply = Buffer.from(data);
    for (let i = 0; i < reply.length; i++) {
      if (reply[i] >= 0x61 && reply[i] <= 0x7a) reply[i] -= 0x20;
    }
    socket.send(reply, { binary: isBinary });
  });
});
