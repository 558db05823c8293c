#!/usr/bin/env node
/**
 * `node tcp-unix-forward.js <host> <port> <socket>`: listens on host:port and pipes every connection to the unix
 * socket. Run inside a lab node's namespace (ip netns exec), it makes a server in the test process (which
 * listens on a unix socket, reachable from every namespace through the filesystem) appear at a local TCP
 * address there: the Kubernetes client in weftd then talks plain HTTP to 127.0.0.1. Prints "ready" once
 * listening; ends on SIGTERM.
 */
import { connect, createServer } from "node:net";

const [host, port, socket] = process.argv.slice(2);
if (!host || !port || !socket) {
  console.error("usage: tcp-unix-forward <host> <port> <unix socket>");
  process.exit(2);
}
const server = createServer((client) => {
  const upstream = connect(socket);
  client.pipe(upstream).pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", end);
  upstream.on("error", end);
  client.on("close", end);
  upstream.on("close", end);
});
server.listen(Number(port), host, () => console.log("ready"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
