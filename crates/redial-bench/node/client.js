// Node peer clients of redial-bench: connman 1.0.0 (from npm, unmodified)
// and plain `net` (one write per message, or batched as a careful node
// programmer would). Usage:
// node client.js <connman|node-net|node-batched> <scenario> k=v...
// Prints the same stamp lines as the Rust clients (CLOCK_MONOTONIC ns via
// process.hrtime, which libuv reads from the same clock).
'use strict';
const net = require('net');
const path = require('path');
const readline = require('readline');

const [peer, scenario, ...rest] = process.argv.slice(2);
const kv = {};
for (const w of rest) { const i = w.indexOf('='); kv[w.slice(0, i)] = w.slice(i + 1); }
const cm = peer === 'connman' ? require(path.join(__dirname, 'node_modules', 'connman')) : null;

const now = () => process.hrtime.bigint().toString();
const stamp = (w) => process.stdout.write(w + ' ' + now() + '\n');
const hostPort = (a) => { const i = a.lastIndexOf(':'); return [a.slice(0, i), Number(a.slice(i + 1))]; };
const MSG = Buffer.alloc(64, 0x5a);

// connman's single-connection API: connect(port, host, onOpen, onData, onReset).
// onReset runs on every close, failed attempts included, and must not return
// a truthy non-function (it would replace onOpen and crash the next connect).
function open(addr, onOpen, onData, onClose) {
  const [host, port] = hostPort(addr);
  if (cm) {
    cm.connect(port, host, (sock) => { sock.setNoDelay(true); onOpen(sock); }, onData,
      () => { onClose(); return undefined; });
    return null;
  }
  const sock = net.connect(port, host, () => { sock.setNoDelay(true); onOpen(sock); });
  sock.on('data', onData);
  sock.on('error', () => {});
  sock.on('close', onClose);
  return sock;
}

function idleReport(before) {
  stamp('finished');
  setTimeout(() => {
    process.stdout.write(`idle ${before} ${process.memoryUsage().rss}\n`);
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();
  }, 1000);
}

function throughput() {
  const n = Number(kv.n);
  let done = false;
  open(kv.addr, (sock) => {
    const before = process.memoryUsage().rss;
    stamp('start');
    // One write per message, no regard for 'drain': node queues in user
    // space and coalesces into writev.
    for (let i = 0; i < n; i++) sock.write(MSG);
    sock.once('data', () => { if (!done) { done = true; idleReport(before); } });
  }, () => {}, () => {});
}

// The careful node programmer: messages are copied into one 64 KiB
// Buffer, each full Buffer is one socket.write, and when write() says the
// socket's queue is full the loop waits for 'drain' (bounded memory).
function throughputBatched() {
  const n = Number(kv.n);
  const SIZE = 64 * 1024;
  let done = false;
  open(kv.addr, (sock) => {
    const before = process.memoryUsage().rss;
    stamp('start');
    let i = 0, buf = Buffer.allocUnsafe(SIZE), off = 0;
    const pump = () => {
      while (i < n) {
        MSG.copy(buf, off); off += MSG.length; i++;
        if (off + MSG.length > SIZE) {
          const ok = sock.write(off === SIZE ? buf : buf.subarray(0, off));
          buf = Buffer.allocUnsafe(SIZE); off = 0;
          if (!ok) { sock.once('drain', pump); return; }
        }
      }
      if (off > 0) { sock.write(buf.subarray(0, off)); off = 0; }
    };
    pump();
    sock.once('data', () => { if (!done) { done = true; idleReport(before); } });
  }, () => {}, () => {});
}

function pingpong() {
  const n = Number(kv.n);
  const lat = [];
  let t0 = 0n, got = 0, sent = 0, sockRef = null;
  open(kv.addr, (sock) => {
    sockRef = sock;
    t0 = process.hrtime.bigint(); sent = 1; sock.write(MSG);
  }, (d) => {
    got += d.length;
    while (got >= 64) {
      got -= 64;
      lat.push(Number(process.hrtime.bigint() - t0));
      if (sent < n) { sent++; t0 = process.hrtime.bigint(); sockRef.write(MSG); }
      else {
        lat.sort((a, b) => a - b);
        const p = (q) => lat[Math.min(lat.length - 1, Math.floor(lat.length * q))];
        process.stdout.write(`lat ${p(0.5)} ${p(0.99)} ${p(0.999)} ${lat[lat.length - 1]}\n`);
        stamp('end');
        process.exit(0);
      }
    }
  }, () => {});
}

// One fresh connection per repetition. connman: its own reconnection.
// net: hand-rolled floor (reconnect at once after a loss, every 10 ms after a
// failed attempt).
function recovery() {
  const reps = Number(kv.reps);
  let rep = 0;
  const next = () => {
    if (rep++ >= reps) { stamp('end'); process.exit(0); }
    let up = false, opens = 0, finished = false;
    const onOpen = (sock) => {
      up = true; opens++;
      stamp(opens > 1 ? 'connected' : 'up');
    };
    const onData = function (sock) {
      return () => {
        if (opens > 1 && !finished) {
          finished = true; stamp('data');
          const s = sock();
          if (cm) s.disconnect(); else { s.removeAllListeners('close'); s.destroy(); }
          setTimeout(next, 50);
        }
      };
    };
    if (cm) {
      let sockRef = null;
      open(kv.addr, (s) => { sockRef = s; onOpen(s); }, onData(() => sockRef), () => {
        if (finished) return;
        if (up) { up = false; stamp('reset'); } else stamp('fail');
      });
    } else {
      let cur = null;
      const dial = (delay) => setTimeout(() => {
        cur = open(kv.addr, onOpen, onData(() => cur), () => {
          if (finished) return;
          if (up) { up = false; stamp('reset'); dial(0); } else { stamp('fail'); dial(10); }
        });
      }, delay);
      dial(0);
    }
  };
  next();
}

function scale() {
  const addrs = kv.addrs.split(',');
  const n = Number(kv.n);
  let connects = 0, resets = 0, fails = 0, live = 0;
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('close', () => process.exit(0));
  rl.on('line', (line) => {
    line = line.trim();
    if (line === 'stats') process.stdout.write(`stats ${connects} ${resets} ${fails} ${live} 0\n`);
    if (line !== 'go') return;
    for (let i = 0; i < n; i++) {
      const [host, port] = hostPort(addrs[i % addrs.length]);
      let up = false;
      const onOpen = () => {
        up = true; connects++; live++;
        if (live === n) process.stdout.write(`all ${now()} ${resets}\n`);
      };
      const onClose = () => {
        if (up) { up = false; live--; resets++; } else fails++;
        return undefined;
      };
      if (cm) {
        // connman's Pool.addConnection(port, host, onOpen, onReset, onData)
        // hands its arguments on positionally as (onOpen, onData, onReset):
        // pass them in the order that works.
        const pool = cm.getPool('bench') || cm.createPool('bench');
        pool.addConnection(port, host, onOpen, () => {}, onClose);
      } else {
        const dial = () => {
          const s = net.connect(port, host, onOpen);
          s.on('data', () => {});
          s.on('error', () => {});
          s.on('close', () => { const was = up; onClose(); if (!was) setTimeout(dial, 10); });
        };
        dial();
      }
    }
  });
  process.stdout.write('ready\n');
}

if (peer === 'node-batched' && scenario === 'throughput') throughputBatched();
else ({ throughput, pingpong, recovery, scale })[scenario]();
