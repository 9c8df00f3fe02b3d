#!/bin/sh
":" //; exec node --initial-old-space-size=64 "$0" "$@"
// The coffre command: runs the compiled CLI (built by `npm ci` through the prepare script).
//
// The line above is read by sh and skipped by node (a string, then a comment): it starts node with a larger
// initial old generation. A server's buffers (blocks, socket reads, RPC frames) live outside V8's heap; with
// the default small heap, V8 counts them toward its limit and runs a full collection every few tens of MiB
// moved, which cost a third of the CPU of every transfer (docs/configuration.md, "Memory"). Running this file
// with `node bin/coffre.js` directly works too, without the flag.
//
// coffre runs on Node.js 20 and newer. The AWS SDK (crypt's S3 remotes, a [backend] node) would print a
// "NodeVersionSupportWarning … will require node >=22" on every run under Node.js 20: that is advice to coffre's
// maintainers, not to its users, so coffre turns it off with the SDK's own switch before the SDK is loaded.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
await import('../dist/src/cli/main.js');
