// Preloaded into NNI's Node.js manager (NODE_OPTIONS=--require <this file>) by lrsearch.
// NNI 3.0's REST server listens on 0.0.0.0 and offers no option to change that; this keeps
// every TCP server of the process on the loopback interface: a missing host or a wildcard
// host ('0.0.0.0', '::') becomes 127.0.0.1. Unix sockets and explicit hosts are left alone.
'use strict';
const net = require('net');

const LOOPBACK = '127.0.0.1';
const WILDCARD = new Set([undefined, null, '', '0.0.0.0', '::', '::0']);
const listen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (args.length === 0 || typeof first === 'function') {
    args.unshift(0, LOOPBACK);  // listen([callback]): a random port
  } else if (isPort(first)) {
    if (args.length === 1 || typeof args[1] === 'function' || typeof args[1] === 'number') {
      args.splice(1, 0, LOOPBACK);  // listen(port[, backlog][, callback])
    } else if (WILDCARD.has(args[1])) {
      args[1] = LOOPBACK;  // listen(port, '0.0.0.0', ...)
    }
  } else if (first && typeof first === 'object' && !('path' in first) && !('fd' in first) && !('handle' in first)) {
    if (WILDCARD.has(first.host)) {
      args[0] = Object.assign({}, first, { host: LOOPBACK });  // listen({port, host})
    }
  }
  return listen.apply(this, args);
};
