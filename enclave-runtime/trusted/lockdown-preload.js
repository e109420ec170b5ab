'use strict';
// `node -r lockdown-preload.js owner.js ...`: applies the post-start lockdown (lockdown.js) before
// owner.js runs, for owner.js versions without `--lockdown seccomp`. The invoker uses it only when
// its probe finds owner.js does not accept that argument; a failure stops the process before
// owner.js starts.
require('./lockdown').apply();
