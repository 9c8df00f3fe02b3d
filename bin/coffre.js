#!/bin/sh
":" //; exec node --initial-old-space-size=64 "$0" "$@"
// The coffre command: runs the compiled CLI (built by `npm ci` through the prepare script).
//
// The line above is read by sh and skipped by node (a string, then a comment): it starts node with a larger
// initial old generation. A server's buffers (blocks, socket reads, RPC frames) live outside V8's heap; with
// the default small heap, V8 counts them toward its limit and runs a full collection every few tens of MiB
// moved, which cost a third of the CPU of every transfer (docs/configuration.md, "Memory"). Running this file
// with `node bin/coffre.js` directly works too, without the flag.
import '../dist/src/cli/main.js';
