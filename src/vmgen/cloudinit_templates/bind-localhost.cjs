// Preloaded into CloudCLI, which hard-codes listen(PORT, '0.0.0.0'): bind 127.0.0.1 instead.
'use strict';
const net = require('net');
const host = process.env.CLOUDCLI_HOST || '127.0.0.1';
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])) {
    if (args[0].port !== undefined && (!args[0].host || args[0].host === '0.0.0.0' || args[0].host === '::')) args[0] = { ...args[0], host };
  } else if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string' || args[1] === '0.0.0.0' || args[1] === '::') {
      if (typeof args[1] === 'string') args[1] = host; else args.splice(1, 0, host);
    }
  }
  return orig.apply(this, args);
};
