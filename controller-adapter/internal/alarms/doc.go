// Package alarms is the controller-adapter's built-in provider of OpenWhisk's alarms feed
// (/whisk.system/alarms/alarm, interval and once): it validates a feed's lifecycle requests
// (CREATE, READ, UPDATE, DELETE, and PAUSE/UNPAUSE) with the alarms package's parameters and
// texts, keeps each trigger's schedule in the store (store.Schedule), and fires the trigger, as
// the namespace of the key that registered it, each time the schedule is due.
//
// Where OpenWhisk runs a separate provider service (a CouchDB of registrations, a Node process of
// cron jobs, and feed actions that call it over HTTP), the controller serves the feed actions
// itself (internal/api intercepts their invocations) and runs one Scheduler. Firing:
//
//   - each due time is claimed in the store (a compare-and-set of the schedule's next due time,
//     committed durably) before the trigger fires, so a due time fires at most once: across
//     restarts, and across controllers sharing one store, where every controller runs a
//     scheduler and exactly one wins each claim;
//   - due times that passed while no controller ran coalesce into one fire at start (the provider
//     drops them; firing once keeps a once alarm that fell in the downtime), never more;
//   - a fire whose trigger or owner's key is gone disables the schedule, as the provider does
//     with a 4xx; other failures are logged and that fire is not repeated.
//
// Cron expressions have 5 fields (minute first) or 6 (seconds first), evaluated in UTC or the
// timezone parameter (github.com/robfig/cron/v3's parser). The strict option is always on: fires
// happen at the due second, with no per-trigger delay.
//
// It runs in the controller-adapter, on the untrusted host side of the trust boundary; it never
// sees a key (the store keeps the registering key's uuid only).
package alarms
