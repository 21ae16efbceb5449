// Run by tests/test_stacktraces_node.py. Prints one JSON line per scenario with the real err.stack
// (what OTel JS records as exception.stacktrace), util.inspect(err) (what console.log(err) prints) and
// the err.stack of every error in the cause chain.
// Lines marked "// @name" are looked up by the test to know the expected line numbers.
'use strict';
const util = require('util');
const fs = require('fs');

function emit(name, err) {
  const chain = [];
  for (let e = err; e instanceof Error; e = e.cause) chain.push(e.stack);
  process.stdout.write(JSON.stringify({ name, stack: err.stack, inspect: util.inspect(err), chain }) + '\n');
}

function readConfig() {
  throw new TypeError('config missing\nsecond line'); // @root
}
function loadSettings() {
  try {
    readConfig(); // @load-calls
  } catch (e) {
    throw new Error('settings failed', { cause: e }); // @mid
  }
}
function startApp() {
  try {
    loadSettings(); // @start-calls
  } catch (e) {
    throw new RangeError('startup failed', { cause: e }); // @top
  }
}

class Widget {
  constructor(size) {
    if (size < 0) throw new RangeError('negative size'); // @ctor
  }
  static build(size) {
    return new Widget(size); // @build
  }
}

async function fetchUser(id) {
  await null;
  throw new Error(`user ${id} not found`); // @async-inner
}
async function handler() {
  const user = await fetchUser(7); // @async-outer
  return user;
}

function viaLibrary() {
  const callLater = require('callback-lib');
  return callLater(function fromLibrary() {
    throw new SyntaxError('bad token'); // @lib-callback
  });
}

async function main() {
  try { startApp(); } catch (e) { emit('cause', e); }
  try { Widget.build(-1); } catch (e) { emit('constructor', e); }
  try { await handler(); } catch (e) { emit('async', e); }
  try { viaLibrary(); } catch (e) { emit('node_modules', e); }
  try { fs.readFileSync('/nonexistent/file'); } catch (e) { emit('internal', e); }
  try { [1].map((x) => x.a.b); } catch (e) { emit('anonymous', e); } // @arrow
  try { await import('./throw.mjs'); } catch (e) { emit('esm', e); }
}

main();
