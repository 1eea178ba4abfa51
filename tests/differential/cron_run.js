// The differential test of hylab's cron expressions against npm's cron-parser 5 (issue 20):
// N random (expression, zone, instant) triples, a fixed seed; for each, the next firing
// strictly after the instant, from cron-parser and from hylab (cron_driver), must be the same
// instant. cron-parser differs from cronie, whose rules hylab keeps, in two known places; a
// triple in either class is excluded, counted and printed, and nothing else is:
//
// - "star-step in a day field": a day-of-month or day-of-week field that begins with '*' but
//   is not '*' alone (*/2). cronie counts such a field as unrestricted when it decides between
//   AND and OR (entry.c: DOM_STAR/DOW_STAR), so `0 12 */2 * 1` is odd days that are Mondays;
//   cron-parser treats it as restricted and ORs (odd days, or Mondays).
// - "DST gap": a firing of a fixed job moved out of a spring-forward gap. cronie (and hylab)
//   fire it at the first instant after the gap (02:30 -> 03:00); cron-parser moves it by the
//   gap's length (02:30 -> 03:30), and skips the real times of the hour after the gap too.
//   Excluded when either side's firing is such a moved one, or hylab's is in that hour.
//
//   node cron_run.js DRIVER [N [SEED]]
'use strict';
const path = require('path');
const {spawnSync} = require('child_process');
const {CronExpressionParser} = require(path.join(__dirname, '../cron-oracle/node_modules/cron-parser'));
const {DateTime} = require(path.join(__dirname, '../cron-oracle/node_modules/luxon'));

const [driver, nArg, seedArg] = process.argv.slice(2);
const N = Number(nArg || 100000);
let seed = Number(seedArg || 20);
function rand() {  // mulberry32: the same cases on every run
  seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (a) => a[int(0, a.length - 1)];

const ZONES = ['UTC', 'Europe/Berlin', 'Europe/London', 'America/New_York', 'America/Los_Angeles',
  'America/Sao_Paulo', 'Australia/Sydney', 'Australia/Lord_Howe', 'Pacific/Chatham',
  'Asia/Kolkata', 'Asia/Tokyo', 'America/Santiago'];
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// (A list's two values differ: cron-parser refuses a repeated value, which cronie takes.)
function field(lo, hi, opts = {}) {
  const name = (n) => (opts.names && rand() < 0.3 ? opts.names[n - lo] : String(n));
  const v = () => name(int(lo, hi));
  switch (int(0, 6)) {
    case 0: case 1: return '*';
    case 2: return opts.noStep ? v() : `*/${int(1, Math.max(1, Math.floor((hi - lo) / 2)))}`;
    case 3: return v();
    case 4: { const a = int(lo, hi), b = int(a, hi); return `${a}-${b}`; }
    case 5: { const a = int(lo, hi), b = int(a, hi); return `${a}-${b}/${int(1, 5)}`; }
    default: {
      const a = int(lo, hi);
      let b = int(lo, hi - 1);
      if (b >= a) b++;
      return `${name(a)},${name(b)}`;
    }
  }
}

function expression() {
  const minute = field(0, 59), hour = field(0, 23);
  const dom = field(1, 28, {noStep: rand() < 0.7});
  const month = rand() < 0.6 ? '*' : field(1, 12, {names: MONTHS, noStep: true});
  const dow = rand() < 0.5 ? '*' : field(0, 6, {names: DAYS, noStep: rand() < 0.7});
  return `${minute} ${hour} ${dom} ${month} ${dow}`;
}

// Instants from 2020 to 2030, a third of them in the days around a DST change.
function instant(zone) {
  let t = Date.UTC(2020, 0, 1) + rand() * (Date.UTC(2030, 0, 1) - Date.UTC(2020, 0, 1));
  if (rand() < 0.33) {
    const year = int(2020, 2029);
    const month = pick([2, 3, 9, 10]);  // March, April, October, November (0-based)
    t = Date.UTC(year, month, int(1, 28), int(0, 23), int(0, 59));
  }
  return new Date(Math.floor(t / 60000) * 60000 + int(0, 59) * 1000).toISOString().replace('.000', '');
}

const cases = [];
for (let i = 0; i < N; i++) {
  const zone = pick(ZONES);
  cases.push({expr: expression(), zone, from: instant(zone)});
}
const out = spawnSync(driver, [], {
  input: cases.map((c) => `${c.expr}\t${c.zone}\t${c.from}`).join('\n') + '\n',
  maxBuffer: 1 << 28,
});
if (out.status !== 0) { console.error('driver failed', out.stderr.toString()); process.exit(1); }
const answers = out.stdout.toString().split('\n');

const starStep = (f) => f[0] === '*' && f !== '*';
function movedByCronParser(c, iso) {  // its firing's local time is one the fields do not name
  const e = CronExpressionParser.parse(c.expr, {tz: 'UTC'});
  const local = DateTime.fromISO(iso, {zone: c.zone});
  return !e.fields.hour.values.includes(local.hour) || !e.fields.minute.values.includes(local.minute);
}

// Within the hour after a spring-forward change: cron-parser also skips real times there
// (`* 3 * * *` on a day whose 02:00 jumps to 03:00 has no 03:xx firings in cron-parser).
function afterGap(c, iso) {
  if (!iso || iso.startsWith('error') || iso === 'none') return false;
  const t = DateTime.fromISO(iso, {zone: c.zone});
  return t.offset > t.minus({hours: 1}).offset;
}

const excluded = {'star-step in a day field': 0, 'DST gap': 0};
const mismatches = [];
let compared = 0;
cases.forEach((c, i) => {
  const f = c.expr.split(' ');
  if (starStep(f[2]) || starStep(f[4])) { excluded['star-step in a day field']++; return; }
  let theirs;
  try {
    theirs = CronExpressionParser.parse(c.expr, {currentDate: new Date(c.from), tz: c.zone})
      .next().toISOString().replace('.000', '');
  } catch (err) {
    theirs = 'error: ' + err.message;
  }
  let ours = answers[i];
  const moved = ours.startsWith('moved ');
  if (moved) ours = ours.slice(6);
  if (moved || afterGap(c, ours) || (!theirs.startsWith('error') && movedByCronParser(c, theirs))) {
    excluded['DST gap']++;
    return;
  }
  compared++;
  if (ours !== theirs) mismatches.push({i, ...c, hylab: ours, cron_parser: theirs});
});
console.log(`${N} cases: ${compared} compared, excluded ${JSON.stringify(excluded)}, ` +
            `${mismatches.length} mismatches`);
for (const m of mismatches.slice(0, 20)) console.log(JSON.stringify(m));
process.exit(mismatches.length ? 1 : 0);
