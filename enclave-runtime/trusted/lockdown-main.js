'use strict';
// `node lockdown-main.js OWNER_JS [ARG]...`: applies the post-start lockdown (lockdown.js), then
// runs OWNER_JS as the main module with the remaining arguments, exactly as `node OWNER_JS [ARG]...`
// would. For owner.js versions without `--lockdown seccomp`: the invoker uses it only when its
// probe finds owner.js does not take that argument. A failed lockdown stops the process before
// owner.js starts.
//
// Not a `node -r` preload: preloads are per-process options that every Node environment the
// isolate addon creates would run again.
require('./lockdown').apply();
process.argv.splice(1, 1);
require('module').runMain();
